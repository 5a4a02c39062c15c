"""The determinism and gradient tests again, on CUDA (skipped where there is no CUDA device)."""

import numpy as np
import pytest
import torch
from torch import nn

import envs  # noqa: F401
from agents import make_agent
from metarl.maml import MAML
from metarl.rollout import MultiTaskSampler

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_maml_meta_gradient_matches_closed_form_on_cuda():
    g = torch.Generator().manual_seed(0)
    xs, ys, xq, yq = (torch.randn(8, d, generator=g, dtype=torch.float64) for d in (4, 1, 4, 1))
    model = nn.Linear(4, 1, bias=False).double()
    w = model.weight.detach().clone().reshape(-1, 1)
    maml = MAML(model.cuda(), lr=0.3)
    learner = maml.clone()
    learner.adapt(((learner(xs.cuda()) - ys.cuda()) ** 2).mean())
    ((learner(xq.cuda()) - yq.cuda()) ** 2).mean().backward()
    hess = 2.0 / 8 * xs.T @ xs
    adapted = w - 0.3 * (hess @ w - 2.0 / 8 * xs.T @ ys)
    expected = (torch.eye(4, dtype=torch.float64) - 0.3 * hess) @ (
        2.0 / 8 * xq.T @ (xq @ adapted - yq)
    )
    torch.testing.assert_close(model.weight.grad.cpu(), expected.reshape(1, -1))


@pytest.mark.parametrize("name", ["maml-trpo", "maml-dice", "promp"])
def test_same_seed_same_metrics_on_cuda(name):
    runs = []
    for _ in range(2):
        sampler = MultiTaskSampler("metarl/Particles2D-v0", 3, 4, horizon=20, device="cuda", seed=0)
        agent = make_agent(name, sampler, {"hidden_sizes": (16, 16)}, seed=0)
        rng = np.random.default_rng(0)
        runs.append([agent.step(sampler.sample_tasks(3, rng)) for _ in range(2)])
        assert next(agent.policy.parameters()).is_cuda
    strip = [
        [{k: v for k, v in m.items() if not k.startswith("time") and "per_s" not in k} for m in run]
        for run in runs
    ]
    assert strip[0] == strip[1]


def test_episodes_live_on_the_policy_device():
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 2, 2, horizon=5, device="cuda", seed=0)
    agent = make_agent("maml-trpo", sampler, {"hidden_sizes": (8,)}, seed=0)
    episodes = sampler.sample(agent.policy, sampler.sample_tasks(2, np.random.default_rng(0)))
    assert episodes.observations.is_cuda and episodes.rewards.is_cuda
