"""The learners of the second family: MAML-DiCE, ProMP, Meta-SGD and first-order variants."""

import math

import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents import AGENTS, make_agent
from metarl.rollout import MultiTaskSampler

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
