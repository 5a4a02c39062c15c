"""MetaDataset, UnionMetaDataset, FilteredMetaDataset and split_labels."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from metarl.supervised import FilteredMetaDataset, MetaDataset, UnionMetaDataset, split_labels
from metarl.supervised.datasets import dataset_labels


class CountingDataset(Dataset):
    """Counts how often a sample is loaded; optionally exposes ``targets``."""

    def __init__(self, labels: list[int], expose_targets: bool) -> None:
        self._labels = labels
        if expose_targets:
            self.targets = list(labels)
        self.loads = 0

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.loads += 1
        return torch.full((2,), float(i)), self._labels[i]


def test_labels_index_both_ways() -> None:
    labels = torch.tensor([2, 0, 2, 1, 0, 2])
    meta = MetaDataset(TensorDataset(torch.randn(6, 3), labels))
    assert meta.labels == [0, 1, 2]
    assert meta.labels_to_indices == {0: (1, 4), 1: (3,), 2: (0, 2, 5)}
    assert meta.indices_to_labels == (2, 0, 2, 1, 0, 2)
    assert len(meta) == 6
    x, y = meta[3]
    assert y.item() == 1 and x.shape == (3,)


def test_labels_read_without_loading_samples() -> None:
    data = CountingDataset([0, 1, 1, 0], expose_targets=True)
    meta = MetaDataset(data)
    assert data.loads == 0
    assert meta.labels_to_indices == {0: (0, 3), 1: (1, 2)}
    sub = MetaDataset(Subset(data, [1, 3]))
    assert data.loads == 0 and sub.indices_to_labels == (1, 0)


def test_labels_fall_back_to_loading_each_sample_once() -> None:
    data = CountingDataset([3, 1, 3], expose_targets=False)
    meta = MetaDataset(data)
    assert data.loads == 3
    assert meta.labels == [1, 3]


def test_explicit_labels_and_errors() -> None:
    data = CountingDataset([0, 0, 0], expose_targets=False)
    meta = MetaDataset(data, labels=["a", "b", "a"])
    assert data.loads == 0 and meta.labels_to_indices == {"a": (0, 2), "b": (1,)}
    with pytest.raises(ValueError, match="one label per index"):
        MetaDataset(data, labels=[0, 1])
    with pytest.raises(ValueError, match="empty"):
        MetaDataset(TensorDataset(torch.zeros(0, 2), torch.zeros(0)))


def test_union_keeps_classes_of_different_datasets_apart() -> None:
    a = MetaDataset(TensorDataset(torch.zeros(3, 1), torch.tensor([5, 7, 5])))
    b = TensorDataset(torch.ones(2, 1), torch.tensor([5, 9]))
    union = UnionMetaDataset([a, b])
    assert len(union) == 5
    assert union.labels == [0, 1, 2, 3]  # a: 5 -> 0, 7 -> 1; b: 5 -> 2, 9 -> 3
    assert union.indices_to_labels == (0, 1, 0, 2, 3)
    assert union.locate(3) == (1, 0)
    x, y = union[4]
    assert x.item() == 1.0 and y == 3
    assert dataset_labels(union) == [0, 1, 0, 2, 3]
    with pytest.raises(IndexError):
        union.locate(5)


def test_filtered_restricts_to_a_label_subset() -> None:
    meta = MetaDataset(TensorDataset(torch.arange(8.0), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])))
    kept = FilteredMetaDataset(meta, [1, 3])
    assert kept.labels == [1, 3]
    assert kept.source_indices == [1, 3, 5, 7]
    assert kept.labels_to_indices == {1: (0, 2), 3: (1, 3)}
    assert kept[2][0].item() == 5.0
    with pytest.raises(ValueError, match="not in the dataset"):
        FilteredMetaDataset(meta, [1, 42])


def test_split_labels_is_disjoint_and_deterministic() -> None:
    labels = list(range(20))
    train, val, test = split_labels(labels, (0.6, 0.15, 0.25), rng=3)
    assert (len(train), len(val), len(test)) == (12, 3, 5)
    assert sorted(train + val + test) == labels
    assert split_labels(labels, (0.6, 0.15, 0.25), rng=3) == [train, val, test]
    assert split_labels(labels, (0.6, 0.15, 0.25), rng=4) != [train, val, test]
    assert [len(g) for g in split_labels(labels, (4, 2), rng=0)] == [4, 2]
    with pytest.raises(ValueError, match="only 20"):
        split_labels(labels, (15, 10), rng=0)
