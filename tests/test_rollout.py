"""The multi-task sampler: shapes, masks, per-env tasks, per-task parameters."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from metarl.maml import per_task
from metarl.policies import GaussianMLPPolicy, Policy
from metarl.samplers import MultiTaskSampler
from metarl.tasks import Task

ENV = "metarl/Particles2D-v0"


class GoToGoal(Policy):
    """Deterministic test policy: full speed towards each task's goal (zero for 'idle' tasks)."""

    def __init__(self, goals, idle=()):
        super().__init__(2, 2, (1,))
        self.goals = torch.as_tensor(goals, dtype=torch.float32)
        self.idle = list(idle)

    def sample(self, obs, params=None, generator=None):
        actions = (self.goals[:, None, :] - obs).clamp(-0.1, 0.1)
        actions[self.idle] = 0.0
        return actions, torch.zeros(obs.shape[:-1])


def test_shapes_and_masks_after_termination():
    tasks = [Task(goal=(0.3, 0.0)), Task(goal=(0.0, -0.45)), Task(goal=(0.2, 0.2))]
    sampler = MultiTaskSampler(ENV, 3, 2, horizon=20, seed=0)
    ep = sampler.sample(GoToGoal([t["goal"] for t in tasks], idle=[2]), tasks)
    assert ep.observations.shape == (3, 2, 20, 2)
    assert ep.actions.shape == (3, 2, 20, 2)
    assert ep.rewards.shape == ep.mask.shape == ep.terminated.shape == (3, 2, 20)
    # task 0 reaches its goal after 3 steps, task 1 after 5; task 2 idles until the horizon
    assert ep.lengths.tolist() == [[3, 3], [5, 5], [20, 20]]
    assert ep.terminated[0, :, 2].all() and ep.terminated[1, :, 4].all()
    assert not ep.truncated[:2].any()
    assert ep.truncated[2, :, 19].all() and not ep.terminated[2].any()
    assert (ep.rewards[ep.mask == 0] == 0).all() and (ep.log_probs[ep.mask == 0] == 0).all()
    assert ep.num_steps == 2 * (3 + 5 + 20)


def test_each_env_receives_its_own_task():
    rng = np.random.default_rng(0)
    sampler = MultiTaskSampler(ENV, 4, 3, horizon=5, seed=0)
    tasks = sampler.sample_tasks(4, rng)
    ep = sampler.sample(GoToGoal(np.zeros((4, 2)), idle=range(4)), tasks)
    # standing still at the origin: reward is minus the distance from the origin to the task goal
    expected = -torch.tensor([np.hypot(*t["goal"]) for t in tasks], dtype=torch.float32)
    torch.testing.assert_close(ep.rewards[:, :, 0], expected[:, None].expand(4, 3))


def test_per_task_parameters_are_used_per_task():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(8,))
    params = {k: v.detach().clone() for k, v in per_task(policy.params(), 2).items()}
    params["log_std"][0] = -10.0  # task 0 nearly deterministic, task 1 noisy
    sampler = MultiTaskSampler(ENV, 2, 3, horizon=10, seed=0)
    tasks = [Task(goal=(0.5, 0.5)), Task(goal=(-0.5, -0.5))]
    ep = sampler.sample(policy, tasks, params)
    for t in range(2):
        own = {k: v[t] for k, v in params.items()}
        mean, _ = policy.mean_std(ep.observations[t], own)
        residual = (ep.actions[t] - mean)[ep.mask[t] > 0]
        assert (residual.abs().max() < 1e-3) == (t == 0)
        expected_logp = policy(ep.observations[t], own).log_prob(ep.actions[t]) * ep.mask[t]
        torch.testing.assert_close(ep.log_probs[t], expected_logp, rtol=1e-4, atol=1e-3)


def test_same_seed_same_episodes():
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(8,))
    tasks = [Task(goal=(0.1, 0.2))]
    a = MultiTaskSampler(ENV, 1, 2, horizon=10, seed=5).sample(policy, tasks)
    b = MultiTaskSampler(ENV, 1, 2, horizon=10, seed=5).sample(policy, tasks)
    c = MultiTaskSampler(ENV, 1, 2, horizon=10, seed=6).sample(policy, tasks)
    assert torch.equal(a.actions, b.actions) and not torch.equal(a.actions, c.actions)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="num_tasks"):
        MultiTaskSampler(ENV, 0, 2)
    sampler = MultiTaskSampler(ENV, 2, 2, horizon=3)
    with pytest.raises(ValueError, match="2 tasks"):
        sampler.sample(GaussianMLPPolicy(2, 2), [Task(goal=(0.0, 0.0))])


def test_module_colon_env_id_imports_the_module_that_registers_it(tmp_path, monkeypatch):
    (tmp_path / "my_task_envs.py").write_text(
        "import gymnasium\n"
        "gymnasium.register(id='mine/Particles-v0', "
        "entry_point='envs.particles:Particles2DEnv', max_episode_steps=7)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sampler = MultiTaskSampler("my_task_envs:mine/Particles-v0", 1, 1, seed=0)
    assert sampler.env_id == "mine/Particles-v0" and sampler.horizon == 7
    with pytest.raises(gym.error.UnregisteredEnv, match="--imports your_module"):
        MultiTaskSampler("mine/Nope-v0", 1, 1)
    with pytest.raises(gym.error.UnregisteredEnv, match="cannot import 'no_such_module'"):
        MultiTaskSampler("no_such_module:mine/Nope-v0", 1, 1)
