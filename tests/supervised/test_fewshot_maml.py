"""MAML / FOMAML / Meta-SGD classification meta-gradients against the closed form (linear model).

For logits ``W x`` and the mean cross-entropy, ``grad L(W) = mean_i (p_i - e_{y_i}) x_i^T`` and the
Hessian acts as ``H[V] = mean_i (diag(p_i) - p_i p_i^T) (V x_i) x_i^T``. One inner step
``W' = W - a * grad L_S(W)`` gives the meta-gradient ``g - H_S[a * g]`` with ``g = grad L_Q(W')``;
FOMAML keeps ``g``; Meta-SGD's rates get ``-grad L_S(W) * g``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarl.maml import MAML, MetaSGD
from metarl.supervised import maml_episode, split_episode

WAYS, DIM = 3, 4


def grad_ce(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(x @ w.T, dim=1)
    return (p - nn.functional.one_hot(y, WAYS).double()).T @ x / x.shape[0]


def hessian_ce(w: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(x @ w.T, dim=1)
    out = torch.zeros_like(w)
    for pi, xi in zip(p, x, strict=True):
        out += torch.outer((torch.diag(pi) - torch.outer(pi, pi)) @ (v @ xi), xi)
    return out / x.shape[0]


@pytest.fixture
def episode() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(WAYS * 3, DIM, generator=gen, dtype=torch.float64)
    y = torch.arange(WAYS).repeat_interleave(3)
    return split_episode(x, y, shots=1)


def linear() -> nn.Linear:
    torch.manual_seed(1)
    return nn.Linear(DIM, WAYS, bias=False).double()


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_meta_gradient_closed_form(episode: tuple, first_order: bool) -> None:
    sx, sy, qx, qy = episode
    model, alpha = linear(), 0.7
    maml = MAML(model, lr=alpha, first_order=first_order)
    loss, _ = maml_episode(maml, sx, sy, qx, qy, steps=1)
    loss.backward()
    w = model.weight.detach()
    adapted = w - alpha * grad_ce(w, sx, sy)
    g = grad_ce(adapted, qx, qy)
    expected = g if first_order else g - hessian_ce(w, sx, alpha * g)
    torch.testing.assert_close(model.weight.grad, expected, rtol=1e-10, atol=1e-12)


def test_meta_sgd_gradients_closed_form(episode: tuple) -> None:
    sx, sy, qx, qy = episode
    model = linear()
    meta = MetaSGD(model, lr=0.5)
    with torch.no_grad():  # unequal rates, so the test sees them entry by entry
        meta.lrs["weight"].copy_(torch.linspace(0.1, 0.9, WAYS * DIM).view(WAYS, DIM))
    loss, _ = maml_episode(meta, sx, sy, qx, qy, steps=1)
    loss.backward()
    w, a = model.weight.detach(), meta.lrs["weight"].detach()
    gs = grad_ce(w, sx, sy)
    g = grad_ce(w - a * gs, qx, qy)
    torch.testing.assert_close(
        model.weight.grad, g - hessian_ce(w, sx, a * g), rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(meta.lrs["weight"].grad, -gs * g, rtol=1e-10, atol=1e-12)


def test_zero_steps_is_the_plain_query_loss(episode: tuple) -> None:
    sx, sy, qx, qy = episode
    model = linear()
    loss, acc = maml_episode(MAML(model, lr=0.1), sx, sy, qx, qy, steps=0)
    torch.testing.assert_close(loss, nn.functional.cross_entropy(model(qx), qy))
    assert 0.0 <= acc.item() <= 1.0
    with pytest.raises(ValueError, match="steps"):
        maml_episode(MAML(model, lr=0.1), sx, sy, qx, qy, steps=-1)


def test_more_inner_steps_fit_the_support_set(episode: tuple) -> None:
    sx, sy, *_ = episode
    maml = MAML(linear(), lr=1.0)
    losses = [maml_episode(maml, sx, sy, sx, sy, steps=s)[0].item() for s in (0, 1, 5)]
    assert losses[0] > losses[1] > losses[2]
