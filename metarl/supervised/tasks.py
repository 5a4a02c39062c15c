"""N-way K-shot task sampling: TaskDataset and its composable transforms.

A *task description* is a tuple of :class:`TaskItem` ``(index, label)`` pairs: which samples of the
meta-dataset form the task, and the label each one carries in the task. Transforms map a
description to a new one, drawing randomness only from the Generator they are given:

* :class:`NWays` keeps ``n`` classes drawn at random;
* :class:`KShots` keeps ``k`` samples of every class (with or without replacement);
* :class:`FilterLabels` keeps the classes of a given set;
* :class:`RemapLabels` renames the classes ``0 .. n-1``;
* :class:`ConsecutiveLabels` orders the items by label, so each class is contiguous;
* :class:`LoadData` asks the :class:`TaskDataset` to return the samples ``(x, y)`` rather than the
  description. Samples are loaded lazily, once the description is complete, whatever the position
  of ``LoadData`` in the list.

The first transform receives ``None``, meaning "the whole meta-dataset", so that drawing five
classes out of thousands never lists every index.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from metarl.supervised.datasets import MetaDataset
from metarl.supervised.transforms import (
    ConsecutiveLabels,
    FilterLabels,
    KShots,
    LoadData,
    NWays,
    RemapLabels,
    TaskDescription,
    TaskItem,
    TaskTransform,
    all_items,
)
    >>> data = MetaDataset(TensorDataset(torch.randn(40, 3), torch.arange(40) % 8))
    >>> tasks = TaskDataset(
    ...     data,
    ...     [NWays(5), KShots(2), LoadData(), RemapLabels(), ConsecutiveLabels()],
    ...     num_tasks=100,
    ...     seed=0,
    ... )
    >>> x, y = tasks[3]
    >>> y.tolist()
    [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    >>> support, query = support_query_split(y, shots=1)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info

from metarl.supervised.datasets import MetaDataset
from metarl.supervised.transforms import (
    ConsecutiveLabels,
    FilterLabels,
    KShots,
    LoadData,
    NWays,
    RemapLabels,
    TaskDescription,
    TaskItem,
    TaskTransform,
    all_items,
)

__all__ = [
    "ConsecutiveLabels",
    "FilterLabels",
    "KShots",
    "LoadData",
    "NWays",
    "RemapLabels",
    "TaskDataset",
    "TaskDescription",
    "TaskItem",
    "TaskTransform",
    "load_task",
    "support_query_split",
]


def load_task(dataset: MetaDataset, description: TaskDescription) -> tuple[Any, Any]:
    """Load a task's samples: ``(x, y)`` as described in :class:`LoadData`.

    Args:
        dataset: the meta-dataset the description indexes.
        description: the task.

    Returns:
        ``(x, y)``; tensors when the samples are tensors and the labels integers.
    """
    samples = [dataset[item.index][0] for item in description]
    labels = [item.label for item in description]
    x: Any = torch.stack(samples) if samples and isinstance(samples[0], Tensor) else samples
    y: Any = labels
    if all(isinstance(label, int) for label in labels):
        y = torch.tensor(labels, dtype=torch.long)
    return x, y


class TaskDataset(Dataset):
    """Few-shot tasks drawn from a meta-dataset through a list of transforms.

    With ``num_tasks > 0`` the dataset holds that many fixed tasks: task ``i`` is drawn from a
    Generator seeded by ``(seed, i)`` the first time it is asked for and cached, so it is the same
    in every process and DataLoader worker (reproducible evaluation sets). With ``num_tasks=-1``
    every access draws a fresh task from the dataset's own stream; inside a DataLoader worker that
    stream is re-seeded from ``seed`` and the worker's torch seed, so workers draw different tasks
    and a DataLoader given a seeded ``generator`` draws the same ones again.

    Args:
        dataset: a :class:`MetaDataset` (or a map-style dataset, wrapped first).
        transforms: the task transforms, applied in order (see the module docstring).
        num_tasks: number of fixed tasks, or -1 for fresh tasks every time.
        seed: an int seed or a ``numpy.random.Generator``; all randomness comes from it.
        epoch_length: ``len()`` of the dataset when ``num_tasks=-1`` (how many tasks one pass of a
            DataLoader draws).

    Raises:
        ValueError: on ``num_tasks`` of 0 or below -1, or ``epoch_length < 1``.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> loader = DataLoader(tasks, batch_size=None, num_workers=2)  # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: Dataset,
        transforms: Sequence[TaskTransform],
        num_tasks: int = -1,
        seed: int | np.random.Generator = 0,
        epoch_length: int = 1000,
    ) -> None:
        if num_tasks == 0 or num_tasks < -1:
            raise ValueError(f"num_tasks must be -1 (fresh tasks) or positive, got {num_tasks}")
        if epoch_length < 1:
            raise ValueError(f"epoch_length must be >= 1, got {epoch_length}")
        self.dataset = dataset if isinstance(dataset, MetaDataset) else MetaDataset(dataset)
        self.transforms = list(transforms)
        self.num_tasks = num_tasks
        self.epoch_length = epoch_length
        if isinstance(seed, np.random.Generator):
            self._seed = int(seed.integers(2**63))
            self._rng: np.random.Generator = seed
        else:
            self._seed = int(seed)
            self._rng = np.random.default_rng([self._seed, 1])
        self._rng_key: int | None = None
        self._cache: dict[int, TaskDescription] = {}
        self.loads_data = any(isinstance(t, LoadData) for t in self.transforms)

    def __len__(self) -> int:
        return self.num_tasks if self.num_tasks > 0 else self.epoch_length

    def __repr__(self) -> str:
        return (
            f"TaskDataset({self.dataset!r}, {self.transforms}, num_tasks={self.num_tasks}, "
            f"seed={self._seed})"
        )

    def draw(self, rng: np.random.Generator) -> TaskDescription:
        """Run the transforms once with ``rng`` and return the description."""
        description: TaskDescription | None = None
        for transform in self.transforms:
            description = transform(description, self.dataset, rng)
        if description is None:
            description = all_items(self.dataset, self.dataset.labels)
        return description

    def _stream(self) -> np.random.Generator:
        info = get_worker_info()
        key = None if info is None else int(info.seed)
        if key != self._rng_key:  # first use inside this worker: its own stream
            self._rng = np.random.default_rng([self._seed, 2, key])
            self._rng_key = key
        return self._rng

    def description(self, index: int) -> TaskDescription:
        """Task ``index``'s description: fixed and cached, or fresh when ``num_tasks=-1``.

        Raises:
            IndexError: for an index outside ``0 .. num_tasks - 1`` with fixed tasks.
        """
        if self.num_tasks < 0:
            return self.draw(self._stream())
        if not -self.num_tasks <= index < self.num_tasks:
            raise IndexError(f"task index {index} out of range for {self.num_tasks} tasks")
        index %= self.num_tasks
        if index not in self._cache:
            self._cache[index] = self.draw(np.random.default_rng([self._seed, 0, index]))
        return self._cache[index]

    def __getitem__(self, index: int) -> Any:
        description = self.description(index)
        return load_task(self.dataset, description) if self.loads_data else description

    def sample(self) -> Any:
        """A task: fresh with ``num_tasks=-1``, else one of the fixed tasks drawn at random."""
        if self.num_tasks < 0:
            return self[0]
        return self[int(self._stream().integers(self.num_tasks))]


def support_query_split(labels: Tensor | Sequence[Hashable], shots: int) -> tuple[Tensor, Tensor]:
    """Split a task's positions into support (first ``shots`` of each class) and query (the rest).

    Args:
        labels: the task labels, shape ``[n]``.
        shots: support samples per class.

    Returns:
        ``(support, query)`` index tensors (``long``, ascending) into the task.

    Raises:
        ValueError: if ``labels`` is not 1-D, ``shots < 1``, or a class has fewer than ``shots``
            samples.
    """
    if isinstance(labels, Tensor):
        if labels.dim() != 1:
            raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
        values = labels.tolist()
    else:
        values = list(labels)
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    seen: dict[Hashable, int] = {}
    support, query = [], []
    for position, label in enumerate(values):
        count = seen.get(label, 0)
        (support if count < shots else query).append(position)
        seen[label] = count + 1
    short = {label: n for label, n in seen.items() if n < shots}
    if short:
        raise ValueError(
            f"classes {sorted(map(repr, short))[:5]} have fewer than {shots} samples; "
            "sample the task with KShots(shots + queries)"
        )
    return torch.tensor(support, dtype=torch.long), torch.tensor(query, dtype=torch.long)
