"""Actions as users expect: clipped to the action space before stepping, optionally normalized."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from metarl.episodes import env_actions
from metarl.policies import Policy
from metarl.samplers import MultiTaskSampler
from metarl.tasks import Task


class Constant(Policy):
    """Acts ``value`` in every dimension; its log-probability is that of a unit Gaussian at 0."""

    def __init__(self, obs_dim, act_dim, value):
        super().__init__(obs_dim, act_dim, (1,))
        self.value, self.act_dim = value, act_dim

    def sample(self, obs, params=None, generator=None):
        actions = torch.full((*obs.shape[:-1], self.act_dim), self.value)
        logp = torch.distributions.Normal(0.0, 1.0).log_prob(actions).sum(-1)
        return actions, logp


def test_env_actions_clip_and_map_to_the_bounds():
    box = gym.spaces.Box(-0.1, 0.1, shape=(2,), dtype=np.float32)
    a = np.array([[-1.0, 1.0], [0.5, 3.0]])
    np.testing.assert_allclose(env_actions(box, a), [[-0.1, 0.1], [0.1, 0.1]])
    np.testing.assert_allclose(env_actions(box, a, normalized=True), [[-0.1, 0.1], [0.05, 0.1]])
    asymmetric = gym.spaces.Box(
        np.array([0.0, -2.0], np.float32), np.array([1.0, 2.0], np.float32), dtype=np.float32
    )
    np.testing.assert_allclose(
        env_actions(asymmetric, np.array([[-1.0, 0.0], [0.0, 0.5]]), normalized=True),
        [[0.0, 0.0], [0.5, 1.0]],
    )
    unbounded = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
    np.testing.assert_allclose(env_actions(unbounded, np.array([[5.0]]), normalized=True), [[5.0]])
    assert env_actions(gym.spaces.Discrete(3), np.array([2]), normalized=True).tolist() == [2]


@pytest.mark.parametrize("mode", ["vector_entry_point", "sync"])
def test_half_cheetah_control_cost_is_charged_on_the_clipped_action(mode):
    """The episodes keep the policy's sample (and its log-prob); the env sees the clipped one."""
    sampler = MultiTaskSampler(
        "metarl/HalfCheetahDir-v0", 1, 2, horizon=5, seed=0, vectorization_mode=mode
    )
    policy = Constant(17, 6, 3.0)
    ep = sampler.sample(policy, [Task(direction=1.0)])
    assert (ep.actions == 3.0).all()
    expected_logp = torch.distributions.Normal(0.0, 1.0).log_prob(torch.tensor(3.0)) * 6
    torch.testing.assert_close(ep.log_probs, expected_logp.expand(1, 2, 5))
    # Step a single env with the clipped action: the same rewards (ctrl cost 0.05 * 6 * 1**2).
    env = gym.make("metarl/HalfCheetahDir-v0", task=Task(direction=1.0))
    reset_seed = MultiTaskSampler("metarl/HalfCheetahDir-v0", 1, 2, seed=0).rng.integers(2**31 - 1)
    env.reset(seed=int(reset_seed))
    rewards = []
    for _ in range(5):
        _, r, _, _, info = env.step(np.ones(6, dtype=np.float32))
        rewards.append(r)
        assert info["reward_ctrl"] == pytest.approx(-0.3)
    np.testing.assert_allclose(ep.rewards[0, 0].numpy(), rewards, rtol=1e-5, atol=1e-5)
    sampler.close()


def test_batched_and_sync_agree_on_clipped_actions():
    episodes = []
    for mode in ("vector_entry_point", "sync"):
        sampler = MultiTaskSampler(
            "metarl/HalfCheetahVel-v0", 2, 2, horizon=8, seed=3, vectorization_mode=mode
        )
        policy = Constant(17, 6, -2.5)
        episodes.append(sampler.sample(policy, [Task(velocity=0.5), Task(velocity=1.5)]))
        sampler.close()
    torch.testing.assert_close(episodes[0].rewards, episodes[1].rewards, rtol=1e-5, atol=1e-5)


def test_normalized_actions_scale_particles_moves():
    """A policy acting +0.5 in normalized units moves the particle 0.05 per step."""
    sampler = MultiTaskSampler(
        "metarl/Particles2D-v0", 1, 1, horizon=3, seed=0, normalize_actions=True
    )
    ep = sampler.sample(Constant(2, 2, 0.5), [Task(goal=(0.5, 0.5))])
    np.testing.assert_allclose(ep.observations[0, 0, :, 0].numpy(), [0.0, 0.05, 0.1], atol=1e-6)
    assert (ep.actions == 0.5).all()
    raw = MultiTaskSampler("metarl/Particles2D-v0", 1, 1, horizon=3, seed=0)
    ep = raw.sample(Constant(2, 2, 0.5), [Task(goal=(0.5, 0.5))])
    np.testing.assert_allclose(ep.observations[0, 0, :, 0].numpy(), [0.0, 0.1, 0.2], atol=1e-6)
