"""Label-indexed views of map-style datasets: MetaDataset, UnionMetaDataset, FilteredMetaDataset.

A :class:`MetaDataset` wraps any map-style dataset (a torchvision dataset, a
:class:`~torch.utils.data.TensorDataset`, a user's own) and records which indices hold which label,
so that tasks can be drawn by class. Labels are read from the dataset's own label array when it has
one (``targets``, ``labels``, the label tensor of a ``TensorDataset``, a ``Subset`` of such a
dataset); only otherwise is every sample loaded once, to read its label. The samples themselves are
never copied: indexing a meta-dataset indexes the wrapped dataset.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(6, 2), torch.tensor([0, 1, 0, 2, 1, 0]))
    >>> meta = MetaDataset(data)
    >>> meta.labels
    [0, 1, 2]
    >>> meta.labels_to_indices[0]
    (0, 2, 5)
    >>> train, test = split_labels(meta.labels, (2, 1), rng=0)
    >>> len(FilteredMetaDataset(meta, train).labels)
    2
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

__all__ = [
    "FilteredMetaDataset",
    "MetaDataset",
    "UnionMetaDataset",
    "dataset_labels",
    "split_labels",
]


def _as_label(value: Any) -> Hashable:
    """A plain Python label from a tensor / numpy scalar / int / str."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"a label must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    if not isinstance(value, Hashable):
        raise ValueError(f"a label must be hashable (int, str, ...), got {type(value).__name__}")
    return value


def _label_array(values: Any) -> list[Hashable]:
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    elif isinstance(values, np.ndarray):
        values = values.tolist()
    return [_as_label(v) for v in values]


def dataset_labels(dataset: Dataset) -> list[Hashable]:
    """The label of every sample of ``dataset``, read without loading samples where possible.

    Looked up in order: a :class:`MetaDataset`'s index; a ``TensorDataset``'s second tensor; a
    ``targets`` or ``labels`` sequence (torchvision, many user datasets); a ``Subset`` or
    ``ConcatDataset`` of such datasets. Otherwise every ``dataset[i]`` is loaded once and its second
    element taken as the label.

    Args:
        dataset: a map-style dataset whose items are ``(sample, label, ...)``.

    Returns:
        One label per index, as plain Python values.

    Raises:
        ValueError: if a label is not a scalar / hashable, or the label array has the wrong length.
    """
    n = len(dataset)  # type: ignore[arg-type]
    labels: list[Hashable] | None = None
    if isinstance(dataset, MetaDataset):
        labels = list(dataset.indices_to_labels)
    elif isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        labels = _label_array(dataset.tensors[1])
    elif isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset)
        labels = [inner[int(i)] for i in dataset.indices]
    elif isinstance(dataset, ConcatDataset):
        labels = [label for part in dataset.datasets for label in dataset_labels(part)]
    else:
        for name in ("targets", "labels"):
            values = getattr(dataset, name, None)
            if isinstance(values, (list, tuple, np.ndarray, torch.Tensor)) and len(values) == n:
                labels = _label_array(values)
                break
    if labels is None:
        labels = [_as_label(dataset[i][1]) for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"the dataset has {n} samples but {len(labels)} labels")
    return labels


class MetaDataset(Dataset):
    """A map-style dataset indexed by label.

    Args:
        dataset: any map-style dataset whose items are ``(sample, label, ...)``.
        labels: the label of every index, when the dataset cannot say it cheaply (optional; by
            default read with :func:`dataset_labels`).

    Attributes:
        dataset: the wrapped dataset; ``meta[i]`` is ``dataset[i]``.
        labels: the distinct labels, sorted.
        labels_to_indices: label -> tuple of the indices holding it, ascending.
        indices_to_labels: index -> label (a tuple, one entry per index).

    Raises:
        ValueError: if ``labels`` has the wrong length or the dataset is empty.
    """

    def __init__(self, dataset: Dataset, labels: Sequence[Hashable] | None = None) -> None:
        self.dataset = dataset
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("cannot build a MetaDataset over an empty dataset")
        index_labels = dataset_labels(dataset) if labels is None else _label_array(labels)
        if len(index_labels) != n:
            raise ValueError(
                f"labels has {len(index_labels)} entries but the dataset has {n} samples; "
                "pass one label per index"
            )
        self.indices_to_labels: tuple[Hashable, ...] = tuple(index_labels)
        groups: dict[Hashable, list[int]] = {}
        for i, label in enumerate(index_labels):
            groups.setdefault(label, []).append(i)
        self.labels: list[Hashable] = _sorted_labels(groups)
        self.labels_to_indices: dict[Hashable, tuple[int, ...]] = {
            label: tuple(groups[label]) for label in self.labels
        }

    def __len__(self) -> int:
        return len(self.indices_to_labels)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} samples, {len(self.labels)} labels, "
            f"dataset={type(self.dataset).__name__})"
        )


def _sorted_labels(labels: Iterable[Hashable]) -> list[Hashable]:
    labels = list(labels)
    try:
        return sorted(labels)  # type: ignore[type-var]
    except TypeError:  # mixed, unorderable labels: keep first-appearance order
        return labels


class UnionMetaDataset(MetaDataset):
    """The union of several meta-datasets, with their classes kept apart.

    Index ``i`` runs through the first dataset, then the second, and so on. The classes of different
    datasets stay distinct even when their labels coincide: the ``j``-th label (in sorted order) of
    dataset ``d`` becomes ``offset_d + j``, where ``offset_d`` counts the classes of the datasets
    before it. The items returned carry these new integer labels.

    Args:
        datasets: the meta-datasets (or plain map-style datasets, wrapped first) to combine.

    Raises:
        ValueError: if no dataset is given.
    """

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        if len(datasets) == 0:
            raise ValueError("UnionMetaDataset needs at least one dataset")
        self.datasets: list[MetaDataset] = [
            d if isinstance(d, MetaDataset) else MetaDataset(d) for d in datasets
        ]
        self._label_maps: list[dict[Hashable, int]] = []
        starts, labels, offset = [], [], 0
        for meta in self.datasets:
            mapping = {label: offset + j for j, label in enumerate(meta.labels)}
            self._label_maps.append(mapping)
            starts.append(len(labels))
            labels.extend(mapping[label] for label in meta.indices_to_labels)
            offset += len(meta.labels)
        self._starts = np.asarray(starts, dtype=np.int64)
        super().__init__(ConcatDataset(self.datasets), labels=labels)

    def locate(self, index: int) -> tuple[int, int]:
        """``(dataset number, index inside that dataset)`` of a union index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        d = int(np.searchsorted(self._starts, index, side="right")) - 1
        return d, index - int(self._starts[d])

    def __getitem__(self, index: int) -> Any:
        d, inner = self.locate(index)
        item = self.datasets[d][inner]
        label = self.indices_to_labels[index]
        if isinstance(item, tuple) and len(item) >= 2:
            return (item[0], label, *item[2:])
        return item


class FilteredMetaDataset(MetaDataset):
    """A meta-dataset restricted to a subset of its labels (a class split).

    Indices are renumbered ``0 .. len - 1`` in the order of the wrapped dataset; labels keep their
    original values.

    Args:
        dataset: the meta-dataset (or plain map-style dataset, wrapped first) to filter.
        labels: the labels to keep.

    Raises:
        ValueError: if a label is not in ``dataset`` (the message lists some valid ones) or
            ``labels`` is empty.
    """

    def __init__(self, dataset: Dataset, labels: Iterable[Hashable]) -> None:
        meta = dataset if isinstance(dataset, MetaDataset) else MetaDataset(dataset)
        keep = {_as_label(label) for label in labels}
        if not keep:
            raise ValueError("FilteredMetaDataset needs at least one label to keep")
        unknown = keep.difference(meta.labels_to_indices)
        if unknown:
            raise ValueError(
                f"labels {sorted(map(repr, unknown))[:5]} are not in the dataset; "
                f"its labels include {meta.labels[:10]}"
            )
        self.source = meta
        self.source_indices: list[int] = [
            i for i, label in enumerate(meta.indices_to_labels) if label in keep
        ]
        super().__init__(
            Subset(meta, self.source_indices),
            labels=[meta.indices_to_labels[i] for i in self.source_indices],
        )


def split_labels(
    labels: Sequence[Hashable],
    sizes: Sequence[int | float],
    rng: np.random.Generator | int,
) -> list[list[Hashable]]:
    """Split a set of labels into disjoint groups (meta-train / meta-validation / meta-test).

    Args:
        labels: the labels to split.
        sizes: group sizes, either all counts (summing to at most ``len(labels)``) or all fractions
            (summing to at most 1; each group gets ``floor(fraction * len(labels))``, the last one
            the remainder when the fractions sum to 1).
        rng: the Generator (or seed) that shuffles the labels before splitting.

    Returns:
        One sorted list of labels per group.

    Raises:
        ValueError: if the sizes are negative or ask for more labels than there are.
    """
    labels = list(labels)
    n = len(labels)
    if any(s < 0 for s in sizes):
        raise ValueError(f"split sizes must be non-negative, got {list(sizes)}")
    if all(isinstance(s, int) for s in sizes):
        counts = [int(s) for s in sizes]
    else:
        total = float(sum(sizes))
        if total > 1 + 1e-9:
            raise ValueError(f"split fractions sum to {total} > 1")
        counts = [int(np.floor(float(s) * n)) for s in sizes]
        if abs(total - 1) < 1e-9 and counts:
            counts[-1] = n - sum(counts[:-1])
    if sum(counts) > n:
        raise ValueError(f"split sizes {counts} need {sum(counts)} labels but there are only {n}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    order = gen.permutation(n)
    groups, start = [], 0
    for count in counts:
        groups.append(_sorted_labels(labels[i] for i in order[start : start + count]))
        start += count
    return groups
