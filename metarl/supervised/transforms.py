"""Task-description transforms: the composable steps of N-way K-shot task sampling.

A *task description* is a tuple of :class:`TaskItem` ``(index, label)`` pairs. Each transform maps
a description (``None`` for the whole meta-dataset) to a new one, drawing randomness only from the
Generator it is given; :class:`~metarl.supervised.tasks.TaskDataset` applies a list of them. See
:mod:`metarl.supervised.tasks` for the list and an example.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import NamedTuple, Protocol

import numpy as np

from metarl.supervised.datasets import MetaDataset

__all__ = [
    "ConsecutiveLabels",
    "FilterLabels",
    "KShots",
    "LoadData",
    "NWays",
    "RemapLabels",
    "TaskDescription",
    "TaskItem",
    "TaskTransform",
    "all_items",
    "labels_in",
]


class TaskItem(NamedTuple):
    """One sample of a task: its index in the meta-dataset and its label within the task."""

    index: int
    label: Hashable


TaskDescription = tuple[TaskItem, ...]


class TaskTransform(Protocol):
    """A step of task sampling: ``(description or None, meta-dataset, rng) -> description``."""

    def __call__(
        self,
        description: TaskDescription | None,
        dataset: MetaDataset,
        rng: np.random.Generator,
    ) -> TaskDescription: ...


def all_items(dataset: MetaDataset, labels: Iterable[Hashable]) -> TaskDescription:
    return tuple(TaskItem(i, label) for label in labels for i in dataset.labels_to_indices[label])


def labels_in(description: TaskDescription) -> list[Hashable]:
    """Distinct labels in order of first appearance."""
    return list(dict.fromkeys(item.label for item in description))


class NWays:
    """Keep ``n`` classes drawn uniformly without replacement.

    Args:
        n: number of classes (ways), >= 1.

    Raises:
        ValueError: on a bad ``n``, or (when called) if fewer than ``n`` classes are available.
    """

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"NWays needs n >= 1, got {n}")
        self.n = n

    def __call__(
        self, description: TaskDescription | None, dataset: MetaDataset, rng: np.random.Generator
    ) -> TaskDescription:
        pool = dataset.labels if description is None else labels_in(description)
        if self.n > len(pool):
            raise ValueError(
                f"NWays({self.n}) needs {self.n} classes but only {len(pool)} are available; "
                "lower the number of ways or give the task dataset more classes"
            )
        chosen = [pool[j] for j in rng.choice(len(pool), size=self.n, replace=False)]
        if description is None:
            return all_items(dataset, chosen)
        keep = set(chosen)
        return tuple(item for item in description if item.label in keep)

    def __repr__(self) -> str:
        return f"NWays({self.n})"


class KShots:
    """Keep ``k`` samples of every class present.

    The kept samples come in random order, so taking the first ``s`` of each class as support and
    the rest as query (:func:`support_query_split`) splits at random.

    Args:
        k: samples per class, >= 1 (for support and query together: shots + queries).
        replacement: draw with replacement (allows classes with fewer than ``k`` samples).

    Raises:
        ValueError: on a bad ``k``, or (when called) if a class has fewer than ``k`` samples and
            ``replacement`` is off.
    """

    def __init__(self, k: int, replacement: bool = False) -> None:
        if k < 1:
            raise ValueError(f"KShots needs k >= 1, got {k}")
        self.k = k
        self.replacement = replacement

    def __call__(
        self, description: TaskDescription | None, dataset: MetaDataset, rng: np.random.Generator
    ) -> TaskDescription:
        if description is None:
            groups = {label: list(all_items(dataset, [label])) for label in dataset.labels}
        else:
            groups = {}
            for item in description:
                groups.setdefault(item.label, []).append(item)
        out: list[TaskItem] = []
        for label, items in groups.items():
            if not self.replacement and len(items) < self.k:
                raise ValueError(
                    f"KShots({self.k}) needs {self.k} samples of class {label!r} but it has "
                    f"{len(items)}; lower shots + queries or use KShots(k, replacement=True)"
                )
            picks = rng.choice(len(items), size=self.k, replace=self.replacement)
            out.extend(items[j] for j in picks)
        return tuple(out)

    def __repr__(self) -> str:
        return f"KShots({self.k}, replacement={self.replacement})"


class FilterLabels:
    """Keep only the samples whose label is in ``labels``.

    Args:
        labels: the labels to keep (non-empty).

    Raises:
        ValueError: if ``labels`` is empty, or (when called on the whole dataset) names a label the
            dataset does not have.
    """

    def __init__(self, labels: Iterable[Hashable]) -> None:
        self.labels = frozenset(labels)
        if not self.labels:
            raise ValueError("FilterLabels needs at least one label")

    def __call__(
        self, description: TaskDescription | None, dataset: MetaDataset, rng: np.random.Generator
    ) -> TaskDescription:
        if description is None:
            unknown = self.labels.difference(dataset.labels_to_indices)
            if unknown:
                raise ValueError(
                    f"FilterLabels: labels {sorted(map(repr, unknown))[:5]} are not in the "
                    f"dataset; its labels include {dataset.labels[:10]}"
                )
            return all_items(dataset, [lb for lb in dataset.labels if lb in self.labels])
        return tuple(item for item in description if item.label in self.labels)

    def __repr__(self) -> str:
        return f"FilterLabels({len(self.labels)} labels)"


class RemapLabels:
    """Rename the task's classes ``0 .. n-1``.

    Args:
        shuffle: assign the new labels in random order; otherwise in order of first appearance
            (which after :class:`NWays` is already a random order of the original classes).
    """

    def __init__(self, shuffle: bool = False) -> None:
        self.shuffle = shuffle

    def __call__(
        self, description: TaskDescription | None, dataset: MetaDataset, rng: np.random.Generator
    ) -> TaskDescription:
        if description is None:
            description = all_items(dataset, dataset.labels)
        labels = labels_in(description)
        new = rng.permutation(len(labels)).tolist() if self.shuffle else range(len(labels))
        mapping = dict(zip(labels, new, strict=True))
        return tuple(TaskItem(item.index, mapping[item.label]) for item in description)

    def __repr__(self) -> str:
        return f"RemapLabels(shuffle={self.shuffle})"


class ConsecutiveLabels:
    """Order the items by label (stable), so each class forms one contiguous block."""

    def __call__(
        self, description: TaskDescription | None, dataset: MetaDataset, rng: np.random.Generator
    ) -> TaskDescription:
        if description is None:
            return all_items(dataset, dataset.labels)
        rank = {label: r for r, label in enumerate(_sorted(labels_in(description)))}
        return tuple(sorted(description, key=lambda item: rank[item.label]))

    def __repr__(self) -> str:
        return "ConsecutiveLabels()"


def _sorted(labels: list[Hashable]) -> list[Hashable]:
    try:
        return sorted(labels)  # type: ignore[type-var]
    except TypeError:
        return labels


class LoadData:
    """Make the :class:`TaskDataset` return the task's samples ``(x, y)``.

    ``x`` stacks the first element of every ``dataset[index]`` (a tensor if they are tensors, else
    a list); ``y`` holds the task labels from the description (a ``long`` tensor for integer
    labels). Without ``LoadData`` in the transforms, a task dataset returns descriptions.
    """

    def __call__(
        self, description: TaskDescription | None, dataset: MetaDataset, rng: np.random.Generator
    ) -> TaskDescription:
        return all_items(dataset, dataset.labels) if description is None else description

    def __repr__(self) -> str:
        return "LoadData()"
