"""MAML-TRPO's curvature: the Fisher through the adaptation, at the exact adapted policies."""

import copy

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

import envs  # noqa: F401
from agents.maml_trpo import MAMLTRPO, MAMLTRPOConfig
from metarl.maml import detach_params
from metarl.records import InnerStep
from metarl.samplers import MultiTaskSampler


def _agent(fisher_subsample):
    torch.manual_seed(0)
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 4, 3, horizon=10, seed=0)
    config = MAMLTRPOConfig(
        hidden_sizes=(6,), fisher_subsample=fisher_subsample, fisher_min_tasks=1, cg_damping=0.0
    )
    config.init_std = 0.5
    agent = MAMLTRPO(sampler, config, seed=0)
    return agent, sampler.sample_tasks(4, np.random.default_rng(0))


def _explicit_kl_hessian(agent, batches, post, old, tasks):
    """The Hessian of the mean KL over ``tasks`` with respect to the flat policy parameters."""
    names = [n for n, _ in agent.policy.named_parameters()]
    shapes = [p.shape for _, p in agent.policy.named_parameters()]
    sub = [InnerStep(s.episodes.select_tasks(tasks), s.targets[tasks]) for s in batches]
    old_sub = {k: v[tasks] for k, v in old.items()}

    def kl(flat):
        params, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = flat[i : i + shape.numel()].reshape(shape)
            i += shape.numel()
        adapted = agent.readapt(params, sub, create_graph=True)
        return agent._kl(old_sub, adapted, post.select_tasks(tasks))

    flat = parameters_to_vector(agent.policy.parameters()).detach()
    return kl(flat.clone().requires_grad_()), torch.autograd.functional.hessian(kl, flat)


def _to_double(batch):
    return [InnerStep(_double(s.episodes), s.targets.double()) for s in batch.steps], _double(
        batch.post
    )


def _double(episodes):
    for name in ("observations", "actions", "log_probs", "rewards", "mask", "last_observations"):
        setattr(episodes, name, getattr(episodes, name).double())
    return episodes


def test_fisher_vector_products_are_the_kl_hessian_of_the_kept_tasks_at_their_exact_adaptation():
    for subsample in (1.0, 0.5):
        agent, tasks = _agent(subsample)
        batch = agent.collect(tasks)
        agent.policy.double()  # float64 for a tight comparison
        batches, post = _to_double(batch)
        old = detach_params(agent.readapt(agent.policy.params(), batches, create_graph=False))
        rng_state = copy.deepcopy(agent.rng.bit_generator.state)
        fvp = agent._fisher(batches, post, old)
        agent.rng.bit_generator.state = rng_state
        keep = round(4 * subsample)
        kept = (
            sorted(agent.rng.choice(4, keep, replace=False).tolist()) if keep < 4 else [0, 1, 2, 3]
        )
        value, hessian = _explicit_kl_hessian(agent, batches, post, old, kept)
        # the curvature is taken where the adapted policies are the ones that sampled: KL = 0
        assert abs(value.item()) < 1e-12
        v = torch.randn(hessian.shape[0], generator=torch.Generator().manual_seed(1)).double()
        torch.testing.assert_close(fvp(v), hessian @ v, rtol=1e-6, atol=1e-9)


def test_surrogate_is_cherrys_policy_loss_per_task_averaged_over_tasks():
    from agents.maml_trpo import surrogate_loss
    from metarl._cherry import policy_loss

    g = torch.Generator().manual_seed(0)
    logp, old, adv = (torch.randn(3, 4, 5, generator=g) for _ in range(3))
    mask = (torch.rand(3, 4, 5, generator=g) > 0.3).float()
    expected = torch.stack(
        [
            policy_loss(logp[t][mask[t] > 0], old[t][mask[t] > 0], adv[t][mask[t] > 0])
            for t in range(3)
        ]
    ).mean()
    torch.testing.assert_close(surrogate_loss(logp, old, adv, mask), expected)
