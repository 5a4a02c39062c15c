"""The few-shot benchmarks as meta-train / meta-validation / meta-test class splits.

* ``glyphs``: :class:`~metarl.supervised.glyphs.Glyphs`, its classes split at random (from the
  data seed) into disjoint meta-train / meta-validation / meta-test sets;
* ``omniglot``: both official splits, the 1623 characters numbered in the order background then
  evaluation (sorted names), characters 0-1099 for meta-training, 1100-1199 for meta-validation,
  1200-1622 for meta-testing, each character's rotations by 90, 180, 270 degrees added as classes
  (so 4400 / 400 / 1692 classes);
* ``mini-imagenet``: Ravi & Larochelle's 64 / 16 / 20 classes.

Example:
    >>> data = load_benchmark("glyphs", root="/tmp/glyphs", glyph_classes=60)  # doctest: +SKIP
    >>> len(data.train.labels), len(data.test.labels)                          # doctest: +SKIP
    (36, 15)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from metarl.supervised.datasets import (
    FilteredMetaDataset,
    MetaDataset,
    UnionMetaDataset,
    split_labels,
)
from metarl.supervised.glyphs import Glyphs
from metarl.supervised.mini_imagenet import MiniImageNet
from metarl.supervised.omniglot import Omniglot, RotatedClasses

__all__ = ["BENCHMARKS", "Benchmark", "default_root", "load_benchmark"]

#: The benchmark names :func:`load_benchmark` knows.
BENCHMARKS = ("glyphs", "omniglot", "mini-imagenet")
_OMNIGLOT_SPLIT = (1100, 1200)  # first validation and first test character


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's class splits and image format.

    Attributes:
        name: the benchmark name.
        train: meta-training classes.
        validation: meta-validation classes.
        test: meta-testing classes (never seen in training).
        channels: image channels.
        image_size: side of the square images.
    """

    name: str
    train: MetaDataset
    validation: MetaDataset
    test: MetaDataset
    channels: int
    image_size: int


def default_root(name: str) -> Path:
    """``~/.cache/metarl/<name>``: where a benchmark's data lives unless told otherwise."""
    return Path("~/.cache/metarl").expanduser() / name


def load_benchmark(
    name: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    glyph_classes: int = 400,
    glyph_samples: int = 20,
    glyph_split: tuple[float, float, float] = (0.6, 0.15, 0.25),
    data_seed: int = 0,
) -> Benchmark:
    """Load a benchmark's meta-train / meta-validation / meta-test splits.

    Args:
        name: one of :data:`BENCHMARKS`.
        root: data folder (default :func:`default_root`).
        download: fetch missing real data (Omniglot, mini-ImageNet); glyphs are always built.
        glyph_classes: glyphs only: number of characters.
        glyph_samples: glyphs only: drawings per character.
        glyph_split: glyphs only: fractions of the characters for meta-train, -validation, -test.
        data_seed: glyphs only: seed of the build and of the class split.

    Returns:
        The :class:`Benchmark`.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
        FileNotFoundError: for missing real data without ``download`` (the message says where to
            put it).
    """
    folder = default_root(name) if root is None else Path(root).expanduser()
    if name == "glyphs":
        glyphs = Glyphs(folder, glyph_classes, glyph_samples, seed=data_seed)
        meta = MetaDataset(glyphs)
        parts = split_labels(meta.labels, glyph_split, rng=data_seed)
        train, validation, test = (FilteredMetaDataset(meta, p) for p in parts)
        return Benchmark(name, train, validation, test, 1, glyphs.images.shape[-1])
    if name == "omniglot":
        both = UnionMetaDataset(
            [Omniglot(folder, split, download=download) for split in ("background", "evaluation")]
        )
        rotated = MetaDataset(RotatedClasses(both))
        first_val, first_test = _OMNIGLOT_SPLIT
        ranges = (
            range(first_val),
            range(first_val, first_test),
            range(first_test, len(both.labels)),
        )
        train, validation, test = (
            FilteredMetaDataset(rotated, [lb for lb in rotated.labels if lb // 4 in r])  # type: ignore[operator]
            for r in ranges
        )
        return Benchmark(name, train, validation, test, 1, 28)
    if name == "mini-imagenet":
        train, validation, test = (
            MetaDataset(MiniImageNet(folder, split, download=download))
            for split in ("train", "validation", "test")
        )
        return Benchmark(name, train, validation, test, 3, 84)
    raise ValueError(f"unknown few-shot benchmark {name!r}; choose from {list(BENCHMARKS)}")
