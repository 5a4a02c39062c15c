"""TaskDataset and its transforms: exact ways and shots, labels, caching, determinism, workers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from metarl.supervised import (
    ConsecutiveLabels,
    FilterLabels,
    KShots,
    LoadData,
    MetaDataset,
    NWays,
    RemapLabels,
    TaskDataset,
    support_query_split,
)

CLASSES, PER_CLASS = 12, 7


@pytest.fixture(scope="module")
def meta() -> MetaDataset:
    labels = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    # Each sample is its own index, so loaded data can be checked against descriptions.
    return MetaDataset(TensorDataset(torch.arange(len(labels)).float().unsqueeze(1), labels))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def standard(ways: int, k: int) -> list:
    return [NWays(ways), KShots(k), LoadData(), RemapLabels(), ConsecutiveLabels()]


def test_nways_keeps_exactly_n_whole_classes(meta: MetaDataset) -> None:
    task = NWays(4)(None, meta, rng())
    counts = Counter(item.label for item in task)
    assert len(counts) == 4 and set(counts.values()) == {PER_CLASS}
    for item in task:
        assert meta.indices_to_labels[item.index] == item.label
    narrowed = NWays(2)(task, meta, rng(1))
    assert len({item.label for item in narrowed}) == 2 and set(narrowed) <= set(task)
    with pytest.raises(ValueError, match="lower the number of ways"):
        NWays(CLASSES + 1)(None, meta, rng())


def test_kshots_keeps_exactly_k_distinct_samples_per_class(meta: MetaDataset) -> None:
    task = KShots(3)(NWays(5)(None, meta, rng()), meta, rng(1))
    counts = Counter(item.label for item in task)
    assert len(counts) == 5 and set(counts.values()) == {3}
    assert len({item.index for item in task}) == 15  # without replacement: no repeats
    everything = KShots(2)(None, meta, rng())
    assert Counter(item.label for item in everything) == dict.fromkeys(range(CLASSES), 2)
    with pytest.raises(ValueError, match="replacement=True"):
        KShots(PER_CLASS + 1)(None, meta, rng())
    many = KShots(PER_CLASS + 3, replacement=True)(NWays(2)(None, meta, rng()), meta, rng())
    assert set(Counter(item.label for item in many).values()) == {PER_CLASS + 3}


def test_filter_labels(meta: MetaDataset) -> None:
    task = FilterLabels([1, 4])(None, meta, rng())
    assert {item.label for item in task} == {1, 4} and len(task) == 2 * PER_CLASS
    after = FilterLabels([4])(task, meta, rng())
    assert {item.label for item in after} == {4}
    with pytest.raises(ValueError, match="not in the dataset"):
        FilterLabels([99])(None, meta, rng())


def test_remap_and_consecutive_labels(meta: MetaDataset) -> None:
    task = KShots(3)(NWays(5)(None, meta, rng(2)), meta, rng(3))
    remapped = RemapLabels()(task, meta, rng())
    assert sorted({item.label for item in remapped}) == [0, 1, 2, 3, 4]
    # The remapping is a bijection that keeps which samples share a class.
    pairs = {(meta.indices_to_labels[item.index], item.label) for item in remapped}
    assert len(pairs) == 5
    ordered = ConsecutiveLabels()(remapped, meta, rng())
    assert [item.label for item in ordered] == [c for c in range(5) for _ in range(3)]
    shuffled = RemapLabels(shuffle=True)(task, meta, rng(4))
    assert sorted({item.label for item in shuffled}) == [0, 1, 2, 3, 4]


def test_loaded_tasks_and_support_query_split(meta: MetaDataset) -> None:
    tasks = TaskDataset(meta, standard(5, 4), num_tasks=20, seed=0)
    for i in range(20):
        x, y = tasks[i]
        assert x.shape == (20, 1) and y.dtype == torch.long
        assert y.tolist() == [c for c in range(5) for _ in range(4)]
        description = tasks.description(i)
        assert x.squeeze(1).long().tolist() == [item.index for item in description]
        support, query = support_query_split(y, shots=1)
        assert Counter(y[support].tolist()) == dict.fromkeys(range(5), 1)
        assert Counter(y[query].tolist()) == dict.fromkeys(range(5), 3)
        support_ids, query_ids = (
            set(x[support].flatten().tolist()),
            set(x[query].flatten().tolist()),
        )
        assert len(support_ids) == 5 and len(query_ids) == 15
        assert not support_ids & query_ids
    with pytest.raises(ValueError, match="fewer than 5"):
        support_query_split(torch.tensor([0, 0, 1]), shots=5)


def test_without_load_data_descriptions_are_returned(meta: MetaDataset) -> None:
    tasks = TaskDataset(meta, [NWays(3), KShots(2)], num_tasks=2, seed=0)
    assert len(tasks[0]) == 6 and hasattr(tasks[0][0], "index")


def test_fixed_tasks_are_cached(meta: MetaDataset) -> None:
    tasks = TaskDataset(meta, standard(5, 2), num_tasks=7, seed=11)
    assert len(tasks) == 7
    first = [tasks.description(i) for i in range(7)]
    assert all(tasks.description(i) is first[i] for i in range(7))
    assert tasks.description(-1) is first[6]
    assert len(set(first)) == 7
    sampled = {tuple(tasks.sample()[0].flatten().tolist()) for _ in range(50)}
    assert sampled <= {tuple(tasks[i][0].flatten().tolist()) for i in range(7)}
    with pytest.raises(IndexError):
        tasks[7]
    # Task i depends on (seed, i) only, not on the order of access.
    other = TaskDataset(meta, standard(5, 2), num_tasks=7, seed=11)
    assert [other.description(i) for i in reversed(range(7))] == first[::-1]


def test_fresh_tasks_are_new_and_reproducible(meta: MetaDataset) -> None:
    a = TaskDataset(meta, standard(5, 2), seed=5)
    b = TaskDataset(meta, standard(5, 2), seed=5)
    c = TaskDataset(meta, standard(5, 2), seed=6)
    seq_a = [a.description(0) for _ in range(10)]
    assert len(set(seq_a)) == 10
    assert [b.description(0) for _ in range(10)] == seq_a
    assert [c.description(0) for _ in range(10)] != seq_a
    g1 = TaskDataset(meta, standard(5, 2), seed=np.random.default_rng(9))
    g2 = TaskDataset(meta, standard(5, 2), seed=np.random.default_rng(9))
    assert [g1.description(0) for _ in range(3)] == [g2.description(0) for _ in range(3)]


def test_bad_arguments() -> None:
    data = TensorDataset(torch.zeros(4, 1), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="num_tasks"):
        TaskDataset(data, [NWays(2)], num_tasks=0)
    with pytest.raises(ValueError):
        NWays(0)
    with pytest.raises(ValueError):
        KShots(0)


def test_dataloader_with_workers(meta: MetaDataset) -> None:
    fixed = TaskDataset(meta, standard(5, 2), num_tasks=6, seed=1)
    loader = DataLoader(fixed, batch_size=None, num_workers=2)
    for i, (x, y) in enumerate(loader):
        assert torch.equal(x, fixed[i][0]) and torch.equal(y, fixed[i][1])
    batched = next(iter(DataLoader(fixed, batch_size=3, num_workers=0)))
    assert batched[0].shape == (3, 10, 1) and batched[1].shape == (3, 10)

    fresh = TaskDataset(meta, standard(5, 2), seed=1, epoch_length=8)

    def draw() -> list[tuple]:
        gen = torch.Generator().manual_seed(0)
        loader = DataLoader(fresh, batch_size=None, num_workers=2, generator=gen)
        return [tuple(x.flatten().tolist()) for x, _ in loader]

    tasks = draw()
    assert len(tasks) == 8 and len(set(tasks)) == 8  # workers draw different tasks
    assert draw() == tasks  # and the same ones again under the same DataLoader seed
