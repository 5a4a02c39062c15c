"""Conjugate gradient, Fisher-vector products, line search, and the cherry pieces we (don't) use."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence
from torch.nn.utils import parameters_to_vector

from metarl._cherry import cherry, policy_loss
from metarl.policies import GaussianMLPPolicy
from metarl.records import Rejection
from metarl.trpo import conjugate_gradient, fisher_vector_product, line_search


def _spd(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n))
    return a @ a.T + n * np.eye(n), rng.normal(size=n)


@pytest.mark.parametrize("seed", range(5))
def test_conjugate_gradient_matches_direct_solve(seed):
    a, b = _spd(30, seed)
    at, bt = torch.tensor(a), torch.tensor(b)
    b_copy = bt.clone()
    x = conjugate_gradient(lambda v: at @ v, bt, iterations=60, residual_tol=1e-24)
    expected = np.linalg.solve(a, b)
    assert np.linalg.norm(x.numpy() - expected) / np.linalg.norm(expected) < 1e-6
    assert torch.equal(bt, b_copy), "conjugate_gradient must not modify b"


def test_cherry_conjugate_gradient_is_wrong_which_is_why_we_have_our_own():
    a, b = _spd(30, 0)
    at, bt = torch.tensor(a), torch.tensor(b)
    b_copy = bt.clone()
    x = cherry.algorithms.trpo.conjugate_gradient(lambda v: at @ v, bt, num_iterations=60)
    expected = np.linalg.solve(a, b)
    overwritten = not torch.equal(bt, b_copy)
    wrong = np.linalg.norm(x.numpy() - expected) / np.linalg.norm(expected) > 1e-3
    assert overwritten or wrong


def test_cherry_policy_loss_matches_formula():
    g = torch.Generator().manual_seed(0)
    new, old, adv = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(3))
    expected = -(torch.exp(new - old) * adv).mean()
    torch.testing.assert_close(policy_loss(new, old, adv), expected)


def test_fisher_vector_product_matches_explicit_fisher():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(3, 2, hidden_sizes=(4,)).double()
    obs = torch.randn(16, 3, dtype=torch.float64)
    names = [n for n, _ in policy.named_parameters()]
    shapes = [p.shape for p in policy.parameters()]
    theta0 = parameters_to_vector(policy.parameters()).detach()

    def unflatten(vec):
        out, i = {}, 0
        for n, s in zip(names, shapes, strict=False):
            k = math.prod(s)
            out[n] = vec[i : i + k].reshape(s)
            i += k
        return out

    def mean_logstd(vec):
        p = unflatten(vec)
        mean, std = policy.mean_std(obs, p)
        return torch.cat([mean, std.log().expand_as(mean)], dim=-1)  # [N, 4]

    jac = torch.autograd.functional.jacobian(mean_logstd, theta0)  # [N, 4, P]
    std = policy.log_std.detach().exp()
    weight = torch.cat([1.0 / std**2, 2.0 * torch.ones(2, dtype=torch.float64)])
    fisher = torch.einsum("nip,i,niq->pq", jac, weight, jac) / obs.shape[0]

    old = {k: v.detach() for k, v in policy.named_parameters()}
    kl = kl_divergence(policy(obs, old), policy(obs)).mean()
    damping = 1e-3
    fvp = fisher_vector_product(kl, list(policy.parameters()), damping)
    v = torch.randn(theta0.shape[0], dtype=torch.float64)
    torch.testing.assert_close(fvp(v), fisher @ v + damping * v, rtol=1e-8, atol=1e-10)


class _Quadratic:
    """Loss (x - 1)^2 summed, 'KL' = 0.5 * |x - x0|^2."""

    def __init__(self):
        self.x = torch.zeros(3, requires_grad=True)
        self.x0 = self.x.detach().clone()

    def evaluate(self):
        with torch.no_grad():
            return float(((self.x - 1) ** 2).sum()), float(0.5 * ((self.x - self.x0) ** 2).sum())


def test_line_search_never_accepts_kl_above_max_kl():
    q = _Quadratic()
    seen = []

    def evaluate():
        loss, kl = q.evaluate()
        seen.append(kl)
        return loss, kl

    result = line_search([q.x], torch.ones(3), evaluate, loss_before=3.0, max_kl=0.05)
    assert result.accepted
    assert result.kl <= 0.05
    assert 0.5 * float(((q.x.detach() - q.x0) ** 2).sum()) <= 0.05
    assert any(k > 0.05 for k in seen), "the test must exercise a rejected candidate"


def test_line_search_restores_parameters_when_it_gives_up():
    q = _Quadratic()
    before = q.x.detach().clone()
    result = line_search([q.x], -torch.ones(3), q.evaluate, loss_before=3.0, max_kl=1.0)
    assert not result.accepted and result.reason is Rejection.NO_IMPROVEMENT
    assert torch.equal(q.x.detach(), before)


def test_line_search_rejects_non_finite_step():
    q = _Quadratic()
    result = line_search([q.x], torch.tensor([1.0, float("nan"), 0.0]), q.evaluate, 3.0, 1.0)
    assert not result.accepted and result.reason is Rejection.NON_FINITE
    assert torch.equal(q.x.detach(), torch.zeros(3))
