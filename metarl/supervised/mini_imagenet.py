"""mini-ImageNet (Vinyals et al. 2016) with the class split of Ravi & Larochelle (2017).

100 ImageNet classes, 600 images each at 84 x 84: 64 classes for meta-training, 16 for
meta-validation, 20 for meta-testing. Two local layouts are read, in this order:

* the widely shared cache files ``mini-imagenet-cache-{train,validation,test}.pkl`` (a dict with
  ``image_data``, uint8 ``[N, 84, 84, 3]``, and ``class_dict``, class -> image indices); they are
  read with an unpickler that only rebuilds numpy arrays, never arbitrary objects;
* Ravi & Larochelle's ``{train,val,test}.csv`` (``filename,label``) next to an ``images/`` folder
  of the JPEG files.

Only the cache files can be downloaded, and only with ``download=True``.

References:
    Ravi, Larochelle. "Optimization as a Model for Few-Shot Learning." ICLR 2017.
"""

from __future__ import annotations

import csv
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from metarl.supervised import _files

__all__ = ["MINI_IMAGENET_SPLITS", "MiniImageNet"]

_CACHE_URL = "https://zenodo.org/record/7978538/files/mini-imagenet-cache-{split}.pkl"
#: The splits: name -> (cache-file name part, csv name, number of classes).
MINI_IMAGENET_SPLITS = {
    "train": ("train", "train.csv", 64),
    "validation": ("validation", "val.csv", 16),
    "test": ("test", "test.csv", 20),
}
_ARRAY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


class MiniImageNet(Dataset):
    """One split of mini-ImageNet: ``(image [3, 84, 84] in [0, 1], class)``.

    Args:
        root: the data folder.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        download: fetch the split's cache file into ``root`` when no layout is found.
        transform: applied to each image tensor when indexed.

    Attributes:
        targets: the class of every image (classes numbered in sorted order of their names).
        class_names: the ImageNet id of every class.

    Raises:
        ValueError: for an unknown split.
        FileNotFoundError: when the data is missing and ``download`` is off; the message says
            where to put it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        download: bool = False,
        transform: Callable[[Tensor], Any] | None = None,
    ) -> None:
        if split not in MINI_IMAGENET_SPLITS:
            raise ValueError(
                f"unknown mini-ImageNet split {split!r}; choose from {list(MINI_IMAGENET_SPLITS)}"
            )
        self.root = Path(root).expanduser()
        self.split = split
        self.transform = transform
        part, csv_name, _ = MINI_IMAGENET_SPLITS[split]
        cache = self.root / f"mini-imagenet-cache-{part}.pkl"
        table = self.root / csv_name
        if not cache.exists() and not table.exists() and download:
            _files.download(_CACHE_URL.format(split=part), cache)
        self._images: np.ndarray | None = None
        self._files: list[Path] = []
        if cache.exists():
            with open(cache, "rb") as f:
                data = _ArrayUnpickler(f).load()
            names = sorted(data["class_dict"])
            labels = np.empty(len(data["image_data"]), dtype=np.int64)
            for label, name in enumerate(names):
                labels[np.asarray(data["class_dict"][name], dtype=np.int64)] = label
            self._images = np.asarray(data["image_data"], dtype=np.uint8)
            self.targets: list[int] = labels.tolist()
        elif table.exists():
            with open(table, newline="") as f:
                rows = [(r["filename"], r["label"]) for r in csv.DictReader(f)]
            names = sorted({label for _, label in rows})
            index = {name: i for i, name in enumerate(names)}
            self._files = [self.root / "images" / filename for filename, _ in rows]
            self.targets = [index[label] for _, label in rows]
        else:
            raise FileNotFoundError(
                f"mini-ImageNet split {split!r} not found under {self.root}: put "
                f"mini-imagenet-cache-{part}.pkl there, or Ravi & Larochelle's {csv_name} with the "
                "images/ folder of JPEGs, or pass download=True (--download in "
                "scripts/fewshot.py) to fetch the cache file."
            )
        self.class_names: list[str] = names

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if self._images is not None:
            x = torch.from_numpy(self._images[index]).permute(2, 0, 1).float().div_(255.0)
        else:
            with Image.open(self._files[index]) as image:
                x = _files.image_to_tensor(image, 84, "RGB")
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[index]
