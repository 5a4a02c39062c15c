"""Omniglot from a local folder, and rotations of a dataset's images as extra classes.

Omniglot (Lake et al. 2015) holds 1623 handwritten characters from 50 alphabets, 20 drawings each,
in two splits: ``background`` (964 characters) and ``evaluation`` (659). The folder layout is the
one of the official archives, ``images_background/<alphabet>/<character>/*.png`` and
``images_evaluation/...``, directly under ``root`` or under ``root/omniglot-py`` (where torchvision
puts them). Nothing is downloaded unless ``download=True``.

Few-shot papers (Vinyals et al. 2016; Snell et al. 2017) add the rotations by 90, 180 and 270
degrees of every character as further classes: :class:`RotatedClasses`.

References:
    Lake, Salakhutdinov, Tenenbaum. "Human-level concept learning through probabilistic program
    induction." Science 2015.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from metarl.supervised._files import download, extract_zip, image_to_tensor
from metarl.supervised.datasets import dataset_labels

__all__ = ["OMNIGLOT_SPLITS", "Omniglot", "RotatedClasses"]

_BASE_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
#: The official splits and their folder names.
OMNIGLOT_SPLITS = {"background": "images_background", "evaluation": "images_evaluation"}


def _find_split(root: Path, folder: str) -> Path | None:
    for candidate in (root / folder, root / "omniglot-py" / folder):
        if candidate.is_dir():
            return candidate
    return None


class Omniglot(Dataset):
    """One split of Omniglot: ``(image [1, s, s] in [0, 1], class)``, strokes bright.

    Images are inverted (the files draw black strokes on white) and resized to ``image_size`` on
    first use, then kept in memory as bytes.

    Args:
        root: the data folder.
        split: ``"background"`` or ``"evaluation"``.
        image_size: side of the square images (28 in the literature).
        download: fetch and unpack the split's archive into ``root`` when it is missing.
        transform: applied to each image tensor when indexed.

    Attributes:
        targets: the class of every image; classes are numbered in the sorted order of
            ``alphabet/character``.
        class_names: ``"alphabet/character"`` of every class.

    Raises:
        ValueError: for an unknown split.
        FileNotFoundError: when the split is missing and ``download`` is off; the message says
            where to put it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "background",
        image_size: int = 28,
        download: bool = False,
        transform: Callable[[Tensor], Any] | None = None,
    ) -> None:
        if split not in OMNIGLOT_SPLITS:
            raise ValueError(
                f"unknown Omniglot split {split!r}; choose from {list(OMNIGLOT_SPLITS)}"
            )
        self.root = Path(root).expanduser()
        self.split = split
        self.image_size = image_size
        self.transform = transform
        folder = OMNIGLOT_SPLITS[split]
        found = _find_split(self.root, folder)
        if found is None and download:
            archive = _download_split(self.root, folder)
            extract_zip(archive, self.root)
            found = _find_split(self.root, folder)
        if found is None:
            raise FileNotFoundError(
                f"Omniglot split {split!r} not found under {self.root}: expected "
                f"{self.root / folder}/<alphabet>/<character>/*.png. Unzip {folder}.zip from the "
                "Omniglot repository (brendenlake/omniglot, folder python/) there, or pass "
                "download=True (--download in scripts/fewshot.py)."
            )
        characters = sorted(
            f"{a.name}/{c.name}"
            for a in found.iterdir()
            if a.is_dir()
            for c in a.iterdir()
            if c.is_dir()
        )
        self.folder = found
        self.class_names: list[str] = characters
        self.files: list[Path] = []
        self.targets: list[int] = []
        for label, name in enumerate(characters):
            for path in sorted((found / name).glob("*.png")):
                self.files.append(path)
                self.targets.append(label)
        if not self.files:
            raise FileNotFoundError(
                f"no Omniglot images (*.png) under {found}; is the unzip complete?"
            )
        self._cache = np.zeros((len(self.files), image_size, image_size), dtype=np.uint8)
        self._loaded = np.zeros(len(self.files), dtype=bool)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not self._loaded[index]:
            with Image.open(self.files[index]) as image:
                x = 1.0 - image_to_tensor(image, self.image_size, "L")
            self._cache[index] = (x[0].numpy() * 255.0).round().astype(np.uint8)
            self._loaded[index] = True
        x = torch.from_numpy(self._cache[index]).unsqueeze(0).float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[index]


def _download_split(root: Path, folder: str) -> Path:
    archive = root / f"{folder}.zip"
    if not archive.exists():
        download(_BASE_URL + f"{folder}.zip", archive)
    return archive


class RotatedClasses(Dataset):
    """A dataset plus its images rotated by multiples of 90 degrees, each rotation a new class.

    Index ``r * n + i`` is item ``i`` of the wrapped dataset (``n`` items) rotated by
    ``angles[r]``; its label is ``label_i * len(angles) + r``. Labels of the wrapped dataset must be
    non-negative integers.

    Args:
        dataset: a map-style dataset of ``(image [c, h, w], label)`` with square images.
        angles: rotations in degrees, multiples of 90 (the literature uses 0, 90, 180, 270).

    Attributes:
        targets: the label of every index.

    Raises:
        ValueError: for an angle that is not a multiple of 90 or a repeated angle, or labels that
            are not non-negative integers.
    """

    def __init__(self, dataset: Dataset, angles: Sequence[int] = (0, 90, 180, 270)) -> None:
        if (
            not angles
            or any(a % 90 for a in angles)
            or len({a % 360 for a in angles}) != len(angles)
        ):
            raise ValueError(f"angles must be distinct multiples of 90 degrees, got {list(angles)}")
        base = dataset_labels(dataset)
        if not all(isinstance(label, int) and label >= 0 for label in base):
            raise ValueError("RotatedClasses needs non-negative integer labels")
        self.dataset = dataset
        self.angles = [int(a) % 360 for a in angles]
        self._n = len(base)
        k = len(self.angles)
        self.targets: list[int] = [
            int(label) * k + r  # type: ignore[call-overload]
            for r in range(k)
            for label in base
        ]

    def __len__(self) -> int:
        return self._n * len(self.angles)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        r, i = divmod(index, self._n)
        item = self.dataset[i]
        x = torch.rot90(item[0], k=self.angles[r] // 90, dims=(-2, -1))
        return x, self.targets[index]
