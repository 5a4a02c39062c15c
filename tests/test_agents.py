"""The learners of the second family: MAML-DiCE, ProMP, Meta-SGD and first-order variants."""

import math

import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents import AGENTS, make_agent
from metarl.samplers import MultiTaskSampler

SMALL = {"hidden_sizes": (16, 16)}


def _sampler(seed=0):
    return MultiTaskSampler("metarl/Particles2D-v0", 3, 4, horizon=20, seed=seed)


@pytest.mark.parametrize("name", sorted(AGENTS))
@pytest.mark.parametrize("variant", [{}, {"first_order": True}, {"meta_sgd": True}])
def test_every_agent_steps_and_changes_its_parameters(name, variant):
    sampler = _sampler()
    agent = make_agent(name, sampler, {**SMALL, **variant}, seed=0)
    before = [p.detach().clone() for p in agent.outer_parameters()]
    metrics = agent.step(sampler.sample_tasks(3, np.random.default_rng(0)))
    assert metrics.step_accepted
    assert math.isfinite(metrics.return_before) and math.isfinite(metrics.return_after)
    after = agent.outer_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    if variant.get("meta_sgd"):
        lrs = list(agent.lrs.values())
        assert lrs and any(not torch.allclose(lr, torch.full_like(lr, 0.1)) for lr in lrs)


def test_meta_sgd_rates_get_gradients_through_the_dice_outer_loss():
    sampler = _sampler()
    agent = make_agent("maml-dice", sampler, {**SMALL, "meta_sgd": True}, seed=0)
    batch = agent.collect(sampler.sample_tasks(3, np.random.default_rng(0)))
    logp = agent.log_probs(batch.post, batch.adapted)
    loss = -(logp * batch.post_advantages * batch.post.mask).sum()
    grads = torch.autograd.grad(loss, list(agent.lrs.values()))
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_second_order_terms_change_the_meta_gradient():
    grads = {}
    for first_order in (False, True):
        sampler = _sampler(seed=1)
        agent = make_agent("maml-dice", sampler, {**SMALL, "first_order": first_order}, seed=0)
        batch = agent.collect(sampler.sample_tasks(3, np.random.default_rng(1)))
        logp = agent.log_probs(batch.post, batch.adapted)
        loss = -(logp * batch.post_advantages * batch.post.mask).sum()
        grads[first_order] = torch.cat(
            [g.reshape(-1) for g in torch.autograd.grad(loss, list(agent.policy.parameters()))]
        )
    assert (grads[False] - grads[True]).norm() > 1e-6 * grads[True].norm()


@pytest.mark.parametrize("name", ["maml-dice", "promp"])
def test_adam_agents_resume_their_optimizer(name):
    sampler = _sampler()
    agent = make_agent(name, sampler, SMALL, seed=0)
    agent.step(sampler.sample_tasks(3, np.random.default_rng(0)))
    state = agent.state_dict()
    assert state["optimizer"]["state"], "Adam moments must be saved"
    other = make_agent(name, _sampler(), SMALL, seed=5)
    other.load_state_dict(state)
    for a, b in zip(agent.outer_parameters(), other.outer_parameters(), strict=True):
        assert torch.equal(a, b)


def _double(episodes):
    for name in ("observations", "actions", "log_probs", "rewards", "mask", "last_observations"):
        setattr(episodes, name, getattr(episodes, name).double())
    return episodes


# MAML-DiCE is left out on purpose: the derivatives of a DiCE objective estimate those of the
# *expected* return (its magic boxes stand for the sampling distribution), not those of its value
# on fixed samples, which does not change with theta at all. Its ground truth is the exact
# enumeration in tests/test_dice.py.
@pytest.mark.parametrize("name", ["maml-trpo", "promp"])
def test_meta_gradient_through_each_agents_inner_loss_matches_finite_differences(name):
    """d/dtheta of an outer objective of theta's adapted policies, by autograd through the
    agent's own inner loss (REINFORCE or LVC), against central differences that re-adapt at
    theta +- eps*v on the same episodes: the second-order terms must be exact."""
    sampler = _sampler(seed=2)
    agent = make_agent(name, sampler, {**SMALL, "activation": "tanh", "inner_lr": 0.5}, seed=0)
    batch = agent.collect(sampler.sample_tasks(3, np.random.default_rng(2)))
    agent.policy.double()
    steps = [type(s)(_double(s.episodes), s.targets.double()) for s in batch.steps]
    post, weights = _double(batch.post), batch.post_advantages.double()

    def objective(theta):
        adapted = agent.readapt(theta, steps, create_graph=True)
        return -(agent.log_probs(post, adapted) * weights * post.mask).sum() / post.mask.sum()

    theta = {k: v.detach().clone().requires_grad_(True) for k, v in agent.policy.params().items()}
    grads = torch.autograd.grad(objective(theta), list(theta.values()))
    gen = torch.Generator().manual_seed(0)
    direction = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in theta.items()}
    analytic = sum((g * direction[k]).sum() for g, k in zip(grads, theta, strict=True)).item()
    eps = 1e-5
    plus = {k: (v + eps * direction[k]).detach().requires_grad_(True) for k, v in theta.items()}
    minus = {k: (v - eps * direction[k]).detach().requires_grad_(True) for k, v in theta.items()}
    numeric = ((objective(plus) - objective(minus)) / (2 * eps)).item()
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    # and the inner step matters: without it (first order), the derivative differs
    agent.config.first_order = True
    first = torch.autograd.grad(objective(theta), list(theta.values()))
    first_dot = sum((g * direction[k]).sum() for g, k in zip(first, theta, strict=True)).item()
    assert abs(first_dot - numeric) > 1e-4 * abs(numeric)
