"""Supervised few-shot learning, the sibling of the meta-RL parts.

* :mod:`~metarl.supervised.datasets`: :class:`MetaDataset` indexes any map-style dataset by label;
  :class:`UnionMetaDataset`, :class:`FilteredMetaDataset` and :func:`split_labels` combine
  datasets and make class splits.
* :mod:`~metarl.supervised.tasks`: :class:`TaskDataset` draws N-way K-shot tasks through the
  transforms :class:`NWays`, :class:`KShots`, :class:`LoadData`, :class:`RemapLabels`,
  :class:`ConsecutiveLabels`, :class:`FilterLabels`.
* :mod:`~metarl.supervised.protonets`: prototypical networks (pure functions and
  :class:`ProtoNet`); :mod:`~metarl.supervised.models`: the conv-4 backbone.
* :mod:`~metarl.supervised.episodes`: support/query splits and MAML / FOMAML / Meta-SGD
  classification episodes through :mod:`metarl.maml`.
* Data: :class:`Glyphs` (rendered from local fonts, no download), :class:`Omniglot`,
  :class:`MiniImageNet`, and :func:`load_benchmark` for their meta-train / -validation / -test
  class splits.

Example:
    >>> from metarl.maml import MAML
    >>> from metarl.supervised import (
    ...     ConvClassifier, KShots, LoadData, NWays, RemapLabels, ConsecutiveLabels, TaskDataset,
    ...     load_benchmark, maml_episode, split_episode,
    ... )
    >>> data = load_benchmark("glyphs")                                 # doctest: +SKIP
    >>> tasks = TaskDataset(data.train, [NWays(5), KShots(1 + 15), LoadData(), RemapLabels(),
    ...                                  ConsecutiveLabels()], seed=0)  # doctest: +SKIP
    >>> maml = MAML(ConvClassifier(1, 5, 28), lr=0.4)                  # doctest: +SKIP
    >>> episode = split_episode(*tasks.sample(), shots=1)              # doctest: +SKIP
    >>> loss, acc = maml_episode(maml, *episode, steps=1)              # doctest: +SKIP
"""

from metarl.supervised.benchmarks import BENCHMARKS, Benchmark, load_benchmark
from metarl.supervised.datasets import (
    FilteredMetaDataset,
    MetaDataset,
    UnionMetaDataset,
    split_labels,
)
from metarl.supervised.episodes import (
    maml_episode,
    mean_confidence_interval,
    split_episode,
)
from metarl.supervised.glyphs import Glyphs
from metarl.supervised.mini_imagenet import MiniImageNet
from metarl.supervised.models import ConvClassifier, ConvEmbedding
from metarl.supervised.omniglot import Omniglot, RotatedClasses
from metarl.supervised.protonets import (
    ProtoNet,
    accuracy,
    prototype_logits,
    prototypes,
    prototypical_loss,
)
from metarl.supervised.tasks import (
    ConsecutiveLabels,
    FilterLabels,
    KShots,
    LoadData,
    NWays,
    RemapLabels,
    TaskDataset,
    TaskItem,
    support_query_split,
)

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "ConsecutiveLabels",
    "ConvClassifier",
    "ConvEmbedding",
    "FilterLabels",
    "FilteredMetaDataset",
    "Glyphs",
    "KShots",
    "LoadData",
    "MetaDataset",
    "MiniImageNet",
    "NWays",
    "Omniglot",
    "ProtoNet",
    "RemapLabels",
    "RotatedClasses",
    "TaskDataset",
    "TaskItem",
    "UnionMetaDataset",
    "accuracy",
    "load_benchmark",
    "maml_episode",
    "mean_confidence_interval",
    "prototype_logits",
    "prototypes",
    "prototypical_loss",
    "split_episode",
    "split_labels",
    "support_query_split",
]
