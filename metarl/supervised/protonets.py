"""Prototypical networks: class prototypes and squared-Euclidean logits.

The maths is in pure functions (:func:`prototypes`, :func:`prototype_logits`,
:func:`prototypical_loss`, :func:`accuracy`); :class:`ProtoNet` only holds the embedding network.

References:
    Snell, Swersky, Zemel. "Prototypical Networks for Few-shot Learning." NeurIPS 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ProtoNet", "accuracy", "prototype_logits", "prototypes", "prototypical_loss"]


def _check_labels(labels: Tensor, n: int, ways: int, name: str) -> None:
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n}], got {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"{name} must be an integer tensor, got {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= ways):
        raise ValueError(
            f"{name} must lie in 0 .. {ways - 1} (remap them with RemapLabels), "
            f"got values in {int(labels.min())} .. {int(labels.max())}"
        )


def prototypes(embeddings: Tensor, labels: Tensor, ways: int) -> Tensor:
    """Class prototypes: the mean support embedding of each class.

    ``c_k = (1 / |S_k|) * sum_{(x_i, y_i) in S, y_i = k} f(x_i)`` (Snell et al. 2017, eq. 1).

    Args:
        embeddings: support embeddings ``f(x_i)``, shape ``[n, d]``.
        labels: support labels in ``0 .. ways-1``, shape ``[n]``.
        ways: number of classes.

    Returns:
        Prototypes, shape ``[ways, d]``; row ``k`` is class ``k``'s.

    Raises:
        ValueError: on bad shapes or labels, or a class without support samples.
    """
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must have shape [n, d], got {tuple(embeddings.shape)}")
    _check_labels(labels, embeddings.shape[0], ways, "labels")
    counts = torch.bincount(labels.long(), minlength=ways)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"classes {missing} have no support samples; every class needs one")
    sums = embeddings.new_zeros(ways, embeddings.shape[1]).index_add(0, labels.long(), embeddings)
    return sums / counts.unsqueeze(1).to(embeddings.dtype)


def prototype_logits(queries: Tensor, protos: Tensor) -> Tensor:
    """Logits of the queries: negative squared Euclidean distances to the prototypes.

    ``logit_k(x) = -||f(x) - c_k||^2``, so ``softmax`` gives ``p(y = k | x)`` (Snell et al. 2017,
    eq. 2).

    Args:
        queries: query embeddings, shape ``[m, d]``.
        protos: prototypes, shape ``[ways, d]``.

    Returns:
        Logits, shape ``[m, ways]``.

    Raises:
        ValueError: on shapes that do not match.
    """
    if queries.dim() != 2 or protos.dim() != 2 or queries.shape[1] != protos.shape[1]:
        raise ValueError(
            f"queries [m, d] and prototypes [ways, d] must share d, got {tuple(queries.shape)} "
            f"and {tuple(protos.shape)}"
        )
    diff = queries.unsqueeze(1) - protos.unsqueeze(0)
    return -(diff**2).sum(dim=-1)


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of rows of ``logits`` ``[m, c]`` whose arg-max equals ``labels`` ``[m]``."""
    if logits.dim() != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"logits [m, c] and labels [m] expected, got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    return (logits.argmax(dim=1) == labels).float().mean()


def prototypical_loss(
    support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor, ways: int
) -> tuple[Tensor, Tensor]:
    """One episode's loss and accuracy from support and query embeddings.

    ``J = -(1 / m) * sum_i log softmax(-||f(x_i) - c_k||^2)_{y_i}`` over the ``m`` queries
    (Snell et al. 2017, Algorithm 1).

    Args:
        support: support embeddings, shape ``[n, d]``.
        support_labels: support labels in ``0 .. ways-1``, shape ``[n]``.
        query: query embeddings, shape ``[m, d]``.
        query_labels: query labels in ``0 .. ways-1``, shape ``[m]``.
        ways: number of classes.

    Returns:
        ``(loss, accuracy)``, both scalars; the accuracy carries no gradient.

    Raises:
        ValueError: on bad shapes or labels.
    """
    _check_labels(query_labels, query.shape[0], ways, "query_labels")
    logits = prototype_logits(query, prototypes(support, support_labels, ways))
    return F.cross_entropy(logits, query_labels.long()), accuracy(logits.detach(), query_labels)


class ProtoNet(nn.Module):
    """A prototypical network: an embedding and the episode loss of :func:`prototypical_loss`.

    Args:
        embedding: maps a batch of inputs ``[b, ...]`` to embeddings (flattened to ``[b, d]``).

    Example:
        >>> net = ProtoNet(nn.Flatten())
        >>> xs, ys = torch.randn(4, 2), torch.tensor([0, 0, 1, 1])
        >>> loss, acc = net.episode(xs, ys, torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 1]), 2)
    """

    def __init__(self, embedding: nn.Module) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings of ``x``, shape ``[b, d]``."""
        return self.embedding(x).flatten(1)

    def logits(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        """Query logits ``[m, ways]`` against the prototypes of the support set."""
        embedded = self(torch.cat([support, query]))
        n = support.shape[0]
        return prototype_logits(embedded[n:], prototypes(embedded[:n], support_labels, ways))

    def episode(
        self,
        support: Tensor,
        support_labels: Tensor,
        query: Tensor,
        query_labels: Tensor,
        ways: int,
    ) -> tuple[Tensor, Tensor]:
        """``(loss, accuracy)`` of one episode; support and query are embedded in one batch."""
        embedded = self(torch.cat([support, query]))
        n = support.shape[0]
        return prototypical_loss(embedded[:n], support_labels, embedded[n:], query_labels, ways)
