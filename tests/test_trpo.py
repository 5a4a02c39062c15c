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
from metarl.trpo import (
    conjugate_gradient,
    conjugate_gradient_with_product,
    fisher_vector_product,
    fisher_vector_product_through,
    line_search,
)


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


def test_conjugate_gradient_with_product_returns_a_times_its_solution():
    a, b = _spd(30, 3)
    at, bt = torch.tensor(a), torch.tensor(b)
    for iterations in (1, 4, 60):  # stopped early, the product is still that of its own x
        x, ax = conjugate_gradient_with_product(lambda v, at=at: at @ v, bt, iterations)
        torch.testing.assert_close(ax, at @ x, rtol=1e-9, atol=1e-9)
        assert torch.equal(x, conjugate_gradient(lambda v, at=at: at @ v, bt, iterations))


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


def _adaptation_problem(first_order):
    """A tiny MAML problem: per-task Gaussian policies adapted by one inner step on per-task data,
    the outer parameters being a linear policy and a learned (Meta-SGD-like) rate."""
    g = torch.Generator().manual_seed(3)
    obs_in, obs_out = (torch.randn(2, 7, 3, generator=g, dtype=torch.float64) for _ in range(2))
    act, adv = (
        torch.randn(2, 7, 2, generator=g, dtype=torch.float64),
        torch.randn(2, 7, 1, generator=g, dtype=torch.float64),
    )
    w0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    log_std0 = torch.tensor([-0.3, 0.2], dtype=torch.float64)
    rate0 = torch.tensor(0.3, dtype=torch.float64)
    sizes = (6, 2, 1)

    def adapt(w, log_std, rate):
        per = {"w": w.expand(2, 2, 3), "log_std": log_std.expand(2, 2)}
        logp = torch.distributions.Normal(
            torch.einsum("tij,tnj->tni", per["w"], obs_in), per["log_std"].exp()[:, None]
        ).log_prob(act)
        loss = -(logp * adv).mean(dim=(1, 2)).sum()
        grads = torch.autograd.grad(loss, list(per.values()), create_graph=not first_order)
        return {k: v - rate * gr for (k, v), gr in zip(per.items(), grads, strict=True)}

    def dist(p):
        mean = torch.einsum("tij,tnj->tni", p["w"], obs_out)
        return torch.distributions.Normal(mean, p["log_std"].exp()[:, None])

    def split(flat):
        w, log_std, rate = torch.split(flat, sizes)
        return w.reshape(2, 3), log_std, rate.reshape(())

    flat0 = torch.cat([w0.reshape(-1), log_std0, rate0.reshape(1)])
    old = {k: v.detach() for k, v in adapt(*split(flat0.clone().requires_grad_())).items()}

    def kl(p):
        return kl_divergence(dist(old), dist(p)).mean()

    return adapt, split, flat0, kl


@pytest.mark.parametrize("first_order", [False, True])
def test_fisher_through_an_adaptation_is_the_kl_hessian_through_it(first_order):
    adapt, split, flat0, kl = _adaptation_problem(first_order)
    hessian = torch.autograd.functional.hessian(lambda f: kl(adapt(*split(f))), flat0)
    params = [t.clone().requires_grad_(True) for t in split(flat0)]
    damping = 1e-3
    fvp = fisher_vector_product_through(kl, adapt(*params), params, damping)
    through_graph = fisher_vector_product(kl(adapt(*params)), params, damping)
    for seed in range(3):
        v = torch.randn(flat0.shape[0], generator=torch.Generator().manual_seed(seed)).double()
        torch.testing.assert_close(fvp(v), hessian @ v + damping * v, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(fvp(v), through_graph(v), rtol=1e-8, atol=1e-10)


def test_fisher_through_an_adaptation_gives_zero_for_a_parameter_it_does_not_use():
    adapt, split, flat0, kl = _adaptation_problem(False)
    params = [t.clone().requires_grad_(True) for t in split(flat0)]
    unused = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    fvp = fisher_vector_product_through(kl, adapt(*params), [*params, unused], damping=0.0)
    v = torch.cat([torch.zeros(flat0.shape[0], dtype=torch.float64), torch.ones(4).double()])
    assert torch.equal(fvp(v), torch.zeros_like(v))
