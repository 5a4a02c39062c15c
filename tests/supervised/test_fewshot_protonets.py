"""Prototypes, logits, loss and accuracy of prototypical networks against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from metarl.supervised import (
    ConvEmbedding,
    ProtoNet,
    accuracy,
    prototype_logits,
    prototypes,
    prototypical_loss,
)

SUPPORT = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0], [5.0, 5.0]])
SUPPORT_Y = torch.tensor([0, 0, 1, 1, 2])


def test_prototypes_by_hand() -> None:
    protos = prototypes(SUPPORT, SUPPORT_Y, ways=3)
    assert torch.equal(protos, torch.tensor([[1.0, 0.0], [0.0, 3.0], [5.0, 5.0]]))
    shuffled = torch.tensor([4, 2, 0, 3, 1])
    assert torch.equal(prototypes(SUPPORT[shuffled], SUPPORT_Y[shuffled], 3), protos)


def test_logits_loss_and_accuracy_by_hand() -> None:
    query = torch.tensor([[1.0, 1.0], [0.0, 4.0]])
    protos = prototypes(SUPPORT, SUPPORT_Y, 3)
    logits = prototype_logits(query, protos)
    # Squared distances of (1, 1) to (1, 0), (0, 3), (5, 5): 1, 5, 32; of (0, 4): 17, 1, 26.
    assert torch.equal(logits, -torch.tensor([[1.0, 5.0, 32.0], [17.0, 1.0, 26.0]]))
    loss, acc = prototypical_loss(SUPPORT, SUPPORT_Y, query, torch.tensor([0, 0]), 3)
    # -log softmax of the true class 0: log(1 + e^-4 + e^-31) for the first query, and
    # 17 - 1 + log(1 + e^-16 + e^-25) for the second, whose nearest prototype is class 1's.
    first = math.log(1 + math.exp(-4) + math.exp(-31))
    second = 16 + math.log(1 + math.exp(-16) + math.exp(-25))
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)
    assert acc.item() == 0.5
    assert accuracy(logits, torch.tensor([0, 1])).item() == 1.0


def test_shape_and_label_checks() -> None:
    with pytest.raises(ValueError, match="no support samples"):
        prototypes(SUPPORT, SUPPORT_Y, ways=4)
    with pytest.raises(ValueError, match="RemapLabels"):
        prototypes(SUPPORT, SUPPORT_Y + 1, ways=3)
    with pytest.raises(ValueError, match="shape"):
        prototypes(SUPPORT[None], SUPPORT_Y, ways=3)
    with pytest.raises(ValueError, match="share d"):
        prototype_logits(torch.zeros(2, 3), torch.zeros(3, 2))


def test_protonet_module_trains_the_embedding() -> None:
    torch.manual_seed(0)
    net = ProtoNet(ConvEmbedding(1, hidden=8))
    support, query = torch.randn(6, 1, 28, 28), torch.randn(9, 1, 28, 28)
    sy, qy = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 2] * 3)
    assert net(support).shape == (6, 8)
    loss, acc = net.episode(support, sy, query, qy, 3)
    loss.backward()
    assert 0.0 <= acc.item() <= 1.0
    assert all(p.grad is not None for p in net.parameters())
    assert net.logits(support, sy, query, 3).shape == (9, 3)
    flat = ProtoNet(nn.Flatten())
    loss, _ = flat.episode(SUPPORT, SUPPORT_Y, torch.tensor([[1.0, 1.0]]), torch.tensor([0]), 3)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-4) + math.exp(-31)), rel=1e-5)
