"""MAML / FOMAML / Meta-SGD meta-gradients against closed forms on linear regression."""

import pytest
import torch
from torch import nn

from metarl.maml import MAML, MetaSGD, adapt_params, per_task


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _problem(seed=0, d=4, n=8):
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.randn(n, d, generator=g), torch.randn(n, 1, generator=g)
    xq, yq = torch.randn(n, d, generator=g), torch.randn(n, 1, generator=g)
    w = torch.randn(1, d, generator=g)
    return xs, ys, xq, yq, w


def mse(pred, y):
    return ((pred - y) ** 2).mean()


def closed_form(xs, ys, xq, yq, w, lr, first_order):
    """d/dw mse(xq w'(w), yq) with w' = w - lr * grad mse(xs w, ys)."""
    n = xs.shape[0]
    wc = w.reshape(-1, 1)
    grad_inner = 2.0 / n * xs.T @ (xs @ wc - ys)
    adapted = wc - lr * grad_inner
    grad_outer = 2.0 / xq.shape[0] * xq.T @ (xq @ adapted - yq)
    jac = torch.eye(wc.shape[0]) - (0.0 if first_order else lr * 2.0 / n * xs.T @ xs)
    return (jac.T @ grad_outer).reshape(1, -1), adapted, grad_inner, grad_outer


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_meta_gradient_matches_closed_form(first_order):
    xs, ys, xq, yq, w = _problem()
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w)
    maml = MAML(model, lr=0.3, first_order=first_order)
    learner = maml.clone()
    learner.adapt(mse(learner(xs), ys))
    mse(learner(xq), yq).backward()
    expected, *_ = closed_form(xs, ys, xq, yq, w, 0.3, first_order)
    torch.testing.assert_close(model.weight.grad, expected, rtol=1e-10, atol=1e-12)


def test_second_order_term_matters():
    xs, ys, xq, yq, w = _problem(1)
    so, *_ = closed_form(xs, ys, xq, yq, w, 0.3, False)
    fo, *_ = closed_form(xs, ys, xq, yq, w, 0.3, True)
    assert (so - fo).norm() > 1e-2


def test_first_order_meta_gradient_equals_post_adaptation_gradient():
    xs, ys, xq, yq, w = _problem(2)
    _, _, _, grad_outer = closed_form(xs, ys, xq, yq, w, 0.3, True)
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w)
    learner = MAML(model, lr=0.3, first_order=True).clone()
    learner.adapt(mse(learner(xs), ys))
    mse(learner(xq), yq).backward()
    torch.testing.assert_close(model.weight.grad, grad_outer.reshape(1, -1))


def test_per_task_batched_adaptation_matches_one_task_at_a_time():
    tasks = [_problem(s) for s in range(3)]
    w = tasks[0][4].reshape(-1)
    theta = {"w": w.clone().requires_grad_(True)}
    params = per_task(theta, 3)
    xs = torch.stack([t[0] for t in tasks])
    ys = torch.stack([t[1] for t in tasks])
    xq = torch.stack([t[2] for t in tasks])
    yq = torch.stack([t[3] for t in tasks])
    inner = sum(mse(xs[i] @ params["w"][i].unsqueeze(-1), ys[i]) for i in range(3))
    adapted = adapt_params(inner, params, lr=0.3)
    outer = sum(mse(xq[i] @ adapted["w"][i].unsqueeze(-1), yq[i]) for i in range(3))
    outer.backward()
    expected = sum(closed_form(*t[:4], w.reshape(1, -1), 0.3, False)[0] for t in tasks)
    torch.testing.assert_close(theta["w"].grad, expected.reshape(-1))


def test_meta_sgd_learning_rates_get_the_hand_computed_gradient():
    xs, ys, xq, yq, w = _problem(3)
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w)
    meta = MetaSGD(model, lr=0.2)
    learner = meta.clone()
    learner.adapt(mse(learner(xs), ys))
    mse(learner(xq), yq).backward()
    _, _adapted, grad_inner, grad_outer = closed_form(xs, ys, xq, yq, w, 0.2, True)
    # w' = w - lr * g  =>  dL/dlr = -g * dL/dw'
    expected = (-grad_inner * grad_outer).reshape(1, -1)
    torch.testing.assert_close(meta.lrs["weight"].grad, expected)
    # and the model gets (I - diag(lr) H)^T dL/dw'
    hess = 2.0 / xs.shape[0] * xs.T @ xs
    expected_w = (torch.eye(4) - 0.2 * hess).T @ grad_outer
    torch.testing.assert_close(model.weight.grad, expected_w.reshape(1, -1))


def test_bad_learning_rate_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        MAML(nn.Linear(2, 1), lr=0.0)
    with pytest.raises(ValueError, match="scalar"):
        adapt_params(
            torch.ones(2, requires_grad=True) * 2, {"w": torch.ones(2, requires_grad=True)}, 0.1
        )
