"""Glyphs (built from local fonts), Omniglot and mini-ImageNet folder loaders, RotatedClasses."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from metarl.supervised import (
    Glyphs,
    MetaDataset,
    MiniImageNet,
    Omniglot,
    RotatedClasses,
    load_benchmark,
)
from metarl.supervised.glyphs import find_fonts


@pytest.fixture(scope="module")
def glyph_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("glyphs")


def test_glyphs_are_built_deterministically_and_cached(glyph_root: Path, tmp_path: Path) -> None:
    data = Glyphs(glyph_root, num_classes=12, samples_per_class=4, seed=3)
    assert len(data) == 48 and data.images.dtype == torch.uint8
    assert data.targets == [c for c in range(12) for _ in range(4)]
    assert len(set(data.characters)) == 12
    x, y = data[5]
    assert x.shape == (1, 28, 28) and y == 1 and 0.0 <= x.min() and x.max() <= 1.0
    assert x.max() > 0.5  # something is drawn
    stamp = data.path.stat().st_mtime_ns
    again = Glyphs(glyph_root, num_classes=12, samples_per_class=4, seed=3)
    assert again.path.stat().st_mtime_ns == stamp  # loaded, not rebuilt
    elsewhere = Glyphs(tmp_path, num_classes=12, samples_per_class=4, seed=3)
    assert torch.equal(elsewhere.images, data.images)  # same seed, same bytes
    other = Glyphs(glyph_root, num_classes=12, samples_per_class=4, seed=4)
    assert other.path != data.path and not torch.equal(other.images, data.images)
    # Drawings of one class differ from each other.
    assert not torch.equal(data.images[0], data.images[1])


def test_glyph_errors_name_the_fix(glyph_root: Path) -> None:
    with pytest.raises(ValueError, match="at most"):
        Glyphs(glyph_root, num_classes=100_000, samples_per_class=1)
    with pytest.raises(ValueError, match="not found"):
        Glyphs(glyph_root, num_classes=5, fonts=["/no/such/font.ttf"])


def test_glyphs_fall_back_to_pils_font(tmp_path: Path) -> None:
    data = Glyphs(tmp_path, num_classes=10, samples_per_class=2, fonts=[])
    assert len(data) == 20 and data.images.float().mean() > 0


def test_glyph_benchmark_splits_classes(glyph_root: Path) -> None:
    bench = load_benchmark("glyphs", root=glyph_root, glyph_classes=20, glyph_samples=4)
    parts = [set(bench.train.labels), set(bench.validation.labels), set(bench.test.labels)]
    assert [len(p) for p in parts] == [12, 3, 5]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert bench.channels == 1 and bench.image_size == 28
    with pytest.raises(ValueError, match="choose from"):
        load_benchmark("cifar")


def test_rotated_classes() -> None:
    image = torch.arange(4.0).view(1, 2, 2)
    data = RotatedClasses(
        TensorDataset(image.unsqueeze(0).repeat(2, 1, 1, 1), torch.tensor([0, 1]))
    )
    meta = MetaDataset(data)
    assert len(data) == 8 and meta.labels == list(range(8))
    x, y = data[2]  # item 0 rotated by 90 degrees: class 0 * 4 + 1
    assert y == 1 and torch.equal(x, torch.rot90(image, 1, dims=(-2, -1)))
    assert data[7][1] == 7
    with pytest.raises(ValueError, match="multiples of 90"):
        RotatedClasses(data, angles=(0, 45))


def test_omniglot_reads_the_official_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="images_background"):
        Omniglot(tmp_path)
    for alphabet, character in (
        ("Greek", "character01"),
        ("Greek", "character02"),
        ("Runic", "c1"),
    ):
        folder = tmp_path / "omniglot-py" / "images_background" / alphabet / character
        folder.mkdir(parents=True)
        for k in range(3):
            pixels = np.full((105, 105), 255, dtype=np.uint8)
            pixels[10 * k : 10 * k + 20, 30:50] = 0  # a black stroke on white
            Image.fromarray(pixels).save(folder / f"{k}.png")
    data = Omniglot(tmp_path, "background")
    assert data.class_names == ["Greek/character01", "Greek/character02", "Runic/c1"]
    assert data.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    x, y = data[4]
    assert x.shape == (1, 28, 28) and y == 1
    assert x.max() > 0.9 and x.min() < 0.1  # strokes bright, background dark
    assert torch.equal(data[4][0], x)  # cached bytes give the same image


def _cache_file(path: Path, images: np.ndarray, class_dict: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump({"image_data": images, "class_dict": class_dict}, f)


def test_mini_imagenet_cache_and_csv_layouts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"mini-imagenet-cache-test\.pkl"):
        MiniImageNet(tmp_path, "test")
    images = np.random.default_rng(0).integers(0, 255, size=(4, 84, 84, 3), dtype=np.uint8)
    _cache_file(tmp_path / "mini-imagenet-cache-test.pkl", images, {"n02": [1, 3], "n01": [0, 2]})
    data = MiniImageNet(tmp_path, "test")
    assert data.class_names == ["n01", "n02"] and data.targets == [0, 1, 0, 1]
    x, _ = data[1]
    assert x.shape == (3, 84, 84)
    assert torch.allclose(x, torch.from_numpy(images[1]).permute(2, 0, 1).float() / 255)

    (tmp_path / "images").mkdir()
    with open(tmp_path / "val.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "label"])
        for i, label in enumerate(["n9", "n8"]):
            Image.fromarray(images[i]).save(tmp_path / "images" / f"{i}.jpg")
            writer.writerow([f"{i}.jpg", label])
    val = MiniImageNet(tmp_path, "validation")
    assert val.targets == [1, 0] and val[0][0].shape == (3, 84, 84)


def test_mini_imagenet_refuses_pickled_code(tmp_path: Path) -> None:
    _cache_file(tmp_path / "mini-imagenet-cache-train.pkl", np.zeros(1), {"x": [Path("/")]})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        MiniImageNet(tmp_path, "train")


def test_fonts_are_listed_sorted() -> None:
    fonts = find_fonts()
    assert fonts == sorted(fonts)
