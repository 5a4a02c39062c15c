"""Batched HalfCheetah vector envs (on envs.batched) against the single env; the benchmark."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the task envs)
from envs.half_cheetah import (
    HalfCheetahDirVectorEnv,
    HalfCheetahTaskVectorEnv,
    HalfCheetahVelVectorEnv,
)
from metarl.policies import GaussianMLPPolicy
from metarl.samplers import MultiTaskSampler
from metarl.tasks import Task, make_task_vec

DIR_ID, VEL_ID = "metarl/HalfCheetahDir-v0", "metarl/HalfCheetahVel-v0"
REPO = Path(__file__).resolve().parents[1]


def _actions(steps, n, seed=0):
    return np.random.default_rng(seed).normal(size=(steps, n, 6)).astype(np.float32)


def _pair(env_id, n, **kwargs):
    """The batched vector env and Gymnasium's SyncVectorEnv of the single env, same tasks."""
    batched = make_task_vec(env_id, n, **kwargs)
    sync = make_task_vec(env_id, n, "sync", **kwargs)
    tasks = batched.unwrapped.sample_tasks(n, np.random.default_rng(1))
    batched.set_attr("task", tasks)
    sync.set_attr("task", tasks)
    return batched, sync


def _assert_same_step(a, b):
    """Bit for bit: observations, rewards, terminations, truncations, info and its masks."""
    for name, x, y in zip(("obs", "reward", "terminated", "truncated"), a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a[4].keys() == b[4].keys()
    for key in [k for k in b[4] if not k.startswith("_")]:
        np.testing.assert_array_equal(a[4][key], b[4][key], err_msg=key)
        np.testing.assert_array_equal(a[4][f"_{key}"], b[4][f"_{key}"], err_msg=f"_{key}")


@pytest.mark.parametrize("env_id", [DIR_ID, VEL_ID])
def test_batched_reproduces_the_single_env(env_id):
    n, steps = 4, 105  # past the 100-step time limit, through Gymnasium's next-step autoreset
    batched, sync = _pair(env_id, n)
    assert isinstance(batched.unwrapped, HalfCheetahTaskVectorEnv)
    assert batched.single_observation_space == sync.single_observation_space
    assert batched.single_action_space == sync.single_action_space
    obs, info = batched.reset(seed=5)
    sync_obs, sync_info = sync.reset(seed=5)
    _assert_same_step((obs, 0, 0, 0, info), (sync_obs, 0, 0, 0, sync_info))
    assert info.keys() == {"x_position", "_x_position"}
    truncations = 0
    for action in _actions(steps, n):
        a, b = batched.step(action), sync.step(action)
        _assert_same_step(a, b)
        truncations += int(a[3].sum())
    assert truncations == n
    batched.close()
    sync.close()


def test_per_env_tasks_are_applied():
    vec = make_task_vec(DIR_ID, 2)
    vec.set_attr("task", [Task(direction=1.0), Task(direction=-1.0)])
    vec.reset(seed=[3, 3])  # the same initial state in both envs
    for action in _actions(10, 1):
        obs, reward, _, _, info = vec.step(np.repeat(action, 2, axis=0))
        np.testing.assert_array_equal(obs[0], obs[1])
        assert info["reward_forward"][0] == -info["reward_forward"][1]
        forward = reward - info["reward_ctrl"]
        assert forward[0] == pytest.approx(-forward[1], abs=1e-12)
    assert info["reward_forward"][0] != 0
    vel = make_task_vec(VEL_ID, 3)
    targets = np.array([0.0, 1.0, 2.0])
    vel.set_attr("task", [Task(velocity=v) for v in targets])
    assert vel.get_attr("task") == tuple(Task(velocity=v) for v in targets)
    vel.reset(seed=0)
    _, _, _, _, info = vel.step(_actions(1, 3)[0])
    np.testing.assert_allclose(info["reward_forward"], -np.abs(info["x_velocity"] - targets))


def test_set_attr_validates_tasks():
    vec = make_task_vec(VEL_ID, 2)
    with pytest.raises(ValueError, match="velocity_range"):
        vec.set_attr("task", [Task(velocity=1.0), Task(velocity=5.0)])
    with pytest.raises(ValueError, match="one per env"):
        vec.set_attr("task", [Task(velocity=1.0)] * 3)
    wide = make_task_vec(VEL_ID, 2, velocity_range=(0.0, 3.0))
    wide.set_attr("task", Task(velocity=2.5))
    assert wide.get_attr("task") == (Task(velocity=2.5),) * 2


def test_determinism_under_a_seed_and_thread_count():
    actions = _actions(20, 3)

    def run(seed, num_threads):
        vec = HalfCheetahDirVectorEnv(3, max_episode_steps=100, num_threads=num_threads)
        trajectory = [vec.reset(seed=seed)[0]]
        trajectory += [vec.step(a)[0] for a in actions]
        vec.close()
        return np.array(trajectory)

    first = run(seed=11, num_threads=2)
    np.testing.assert_array_equal(first, run(seed=11, num_threads=2))
    np.testing.assert_array_equal(first, run(seed=11, num_threads=1))
    assert not np.array_equal(first, run(seed=12, num_threads=2))


def test_reset_of_a_subset_matches_single_env_resets():
    # The sampler never resets mid-batch, but Gymnasium's autoreset resets the envs that ended.
    n = 4
    batched, sync = _pair(DIR_ID, n)
    batched.reset(seed=0)
    sync.reset(seed=0)
    actions = _actions(6, n)
    for action in actions[:3]:
        batched.step(action)
        sync.step(action)
    which = np.array([True, False, True, False])
    obs = batched.unwrapped._reset_envs(which)
    expected = [sync.envs[i].reset()[0] for i in np.flatnonzero(which)]
    np.testing.assert_array_equal(obs, np.array(expected))
    for action in actions[3:]:
        _assert_same_step(batched.step(action), sync.step(action))


def test_sampler_gives_the_same_episodes_with_either_vector_env():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(17, 6)
    episodes = {}
    for mode in ("vector_entry_point", "sync"):
        sampler = MultiTaskSampler(VEL_ID, 2, 2, horizon=10, vectorization_mode=mode, seed=3)
        tasks = sampler.sample_tasks(2, np.random.default_rng(0))
        episodes[mode] = sampler.sample(policy, tasks)
        sampler.close()
    a, b = episodes["vector_entry_point"], episodes["sync"]
    torch.testing.assert_close(a.observations, b.observations, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a.rewards, b.rewards, rtol=1e-6, atol=1e-6)
    assert torch.equal(a.truncated, b.truncated) and torch.equal(a.terminated, b.terminated)
    assert a.truncated[:, :, -1].all()


def test_default_vectorization_is_batched():
    vec = gym.make_vec(DIR_ID, 2)
    assert isinstance(vec.unwrapped, HalfCheetahDirVectorEnv)
    assert vec.unwrapped.max_episode_steps == 100
    assert vec.unwrapped.num_threads >= 1
    assert isinstance(make_task_vec(VEL_ID, 2).unwrapped, HalfCheetahVelVectorEnv)
    sync = make_task_vec(DIR_ID, 2, vectorization_mode="sync")
    assert isinstance(sync, gym.vector.SyncVectorEnv)


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="num_threads"):
        HalfCheetahDirVectorEnv(2, num_threads=0)
    with pytest.raises(ValueError, match="vectorization_mode='sync'"):
        HalfCheetahDirVectorEnv(2, render_mode="rgb_array")
    with pytest.raises(ValueError, match="num_envs"):
        HalfCheetahDirVectorEnv(0)
    vec = HalfCheetahDirVectorEnv(2)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must be shaped \(2, 6\)"):
        vec.step(np.zeros((2, 5)))


def test_benchmark_script_runs():
    command = [
        sys.executable,
        "scripts/bench_sampler.py",
        "--num-tasks",
        "2",
        "--episodes-per-task",
        "2",
        "--horizon",
        "5",
        "--repeats",
        "1",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for line in ("1. SyncVectorEnv", "2. batched vector env", "3. mujoco.rollout", "ratio 2/3"):
        assert line in result.stdout
