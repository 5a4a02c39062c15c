"""MAML-TRPO's curvature: the Fisher through the adaptation, at the exact adapted policies."""

import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents.maml_trpo import MAMLTRPO, MAMLTRPOConfig
from metarl.maml import detach_params
from metarl.records import InnerStep
from metarl.samplers import MultiTaskSampler


def _agent(fisher_episodes, meta_sgd=False):
    torch.manual_seed(0)
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 4, 3, horizon=10, seed=0)
    config = MAMLTRPOConfig(
        hidden_sizes=(6,), fisher_episodes=fisher_episodes, cg_damping=0.0, meta_sgd=meta_sgd
    )
    config.init_std = 0.5
    agent = MAMLTRPO(sampler, config, seed=0)
    return agent, sampler.sample_tasks(4, np.random.default_rng(0))


def _explicit_kl_hessian(agent, batches, post, old, episodes):
    """The Hessian of the mean KL on each task's first ``episodes`` post-adaptation episodes, with
    respect to the flat outer parameters (policy, then Meta-SGD rates), through the adaptation of
    every task on all its inner episodes."""
    named = [*agent.policy.named_parameters(), *((f"lr:{k}", v) for k, v in agent.lrs.items())]
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    policy_names = {n for n, _ in agent.policy.named_parameters()}
    post = post.first_episodes(episodes)

    def kl(flat):
        params, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = flat[i : i + shape.numel()].reshape(shape)
            i += shape.numel()
        theta = {k: v for k, v in params.items() if k in policy_names}
        rates = {k: v for k, v in params.items() if k not in policy_names}
        try:
            if rates:
                agent.inner_lr = lambda: {k[3:].replace("__", "."): v for k, v in rates.items()}
            adapted = agent.readapt(theta, batches, create_graph=True)
        finally:
            vars(agent).pop("inner_lr", None)  # the class's method again
        return agent._kl(old, adapted, post)

    flat = torch.cat([p.detach().reshape(-1) for _, p in named])
    return kl(flat.clone().requires_grad_()), torch.autograd.functional.hessian(kl, flat)


def _to_double(batch):
    return [InnerStep(_double(s.episodes), s.targets.double()) for s in batch.steps], _double(
        batch.post
    )


def _double(episodes):
    for name in ("observations", "actions", "log_probs", "rewards", "mask", "last_observations"):
        setattr(episodes, name, getattr(episodes, name).double())
    return episodes


@pytest.mark.parametrize(
    ("fisher_episodes", "kept", "meta_sgd"), [(1.0, 3, False), (0.34, 1, False), (0.5, 2, True)]
)
def test_fisher_vector_products_are_the_kl_hessian_through_every_tasks_adaptation(
    fisher_episodes, kept, meta_sgd
):
    agent, tasks = _agent(fisher_episodes, meta_sgd)
    batch = agent.collect(tasks)
    agent.policy.double()  # float64 for a tight comparison
    agent.lrs.double()
    batches, post = _to_double(batch)
    adapted = agent.readapt(agent.policy.params(), batches, create_graph=True)
    old = detach_params(adapted)
    fvp = agent._fisher(adapted, post, old)
    value, hessian = _explicit_kl_hessian(agent, batches, post, old, kept)
    # the curvature is taken where the adapted policies are the ones that sampled: KL = 0
    assert abs(value.item()) < 1e-12
    assert hessian.shape[0] == len(torch.cat([p.reshape(-1) for p in agent.outer_parameters()]))
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
