"""HalfCheetahDir / HalfCheetahVel single envs: rewards, tasks, registration, Gymnasium API."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the task envs)
from envs.half_cheetah import HalfCheetahDirEnv, HalfCheetahVelEnv
from metarl.tasks import Task, make_task_env

DIR_ID, VEL_ID = "metarl/HalfCheetahDir-v0", "metarl/HalfCheetahVel-v0"


def _actions(n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 6)).astype(np.float32)


def _run(env, actions, seed=0):
    """Reset with ``seed``, step through ``actions``; return observations, rewards and infos."""
    obs, _ = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], []
    for action in actions:
        obs, reward, terminated, _, info = env.step(action)
        assert not terminated
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
    return np.array(observations), np.array(rewards), infos


@pytest.mark.filterwarnings("ignore:.*Box observation space m:UserWarning")
@pytest.mark.parametrize("env_id", [DIR_ID, VEL_ID])
def test_check_env_and_registration(env_id):
    spec = gym.spec(env_id)
    assert spec.max_episode_steps == 100
    assert spec.vector_entry_point.startswith("envs.half_cheetah:")
    env = make_task_env(env_id)
    check_env(env.unwrapped, skip_render_check=True)  # rendering is HalfCheetah-v5's own
    assert env.observation_space.shape == (17,)
    env.close()


@pytest.mark.parametrize("env_class", [HalfCheetahDirEnv, HalfCheetahVelEnv])
def test_physics_and_observation_are_half_cheetah_v5(env_class):
    actions = _actions(30)
    ours = env_class()
    reference = gym.make("HalfCheetah-v5").unwrapped
    obs, _, infos = _run(ours, actions, seed=3)
    ref_obs, _, ref_infos = _run(reference, actions, seed=3)
    np.testing.assert_array_equal(obs, ref_obs)
    for info, ref_info in zip(infos, ref_infos, strict=True):
        assert info["x_velocity"] == ref_info["x_velocity"]
        assert info["x_position"] == ref_info["x_position"]


@pytest.mark.parametrize("env_class", [HalfCheetahDirEnv, HalfCheetahVelEnv])
def test_reward_is_the_sum_of_its_terms_in_info(env_class):
    env = env_class()
    env.reset(seed=0)
    for action in _actions(20):
        _, reward, _, _, info = env.step(action)
        terms = [value for key, value in info.items() if key.startswith("reward_")]
        assert sorted(k for k in info if k.startswith("reward_")) == [
            "reward_ctrl",
            "reward_forward",
        ]
        assert reward == pytest.approx(sum(terms), abs=1e-12)
        squared = np.sum(np.square(action.astype(np.float64)))
        assert info["reward_ctrl"] == pytest.approx(-0.05 * squared, rel=1e-12)


def test_dir_forward_reward_is_direction_times_velocity():
    actions = _actions(20)
    rewards = {}
    for direction in (1.0, -1.0):
        env = HalfCheetahDirEnv(task=Task(direction=direction))
        _, _, infos = _run(env, actions, seed=1)
        forward = np.array([info["reward_forward"] for info in infos])
        velocity = np.array([info["x_velocity"] for info in infos])
        np.testing.assert_allclose(forward, direction * velocity, rtol=0, atol=1e-12)
        rewards[direction] = forward
    np.testing.assert_array_equal(rewards[1.0], -rewards[-1.0])
    assert np.abs(rewards[1.0]).max() > 0


def test_vel_forward_reward_is_minus_distance_to_target():
    env = HalfCheetahVelEnv(task=Task(velocity=1.5))
    _, _, infos = _run(env, _actions(20))
    for info in infos:
        assert info["reward_forward"] == pytest.approx(-abs(info["x_velocity"] - 1.5), abs=1e-12)


def test_reward_weights_are_keyword_arguments():
    actions = _actions(5)
    env = HalfCheetahDirEnv(forward_reward_weight=2.0, ctrl_cost_weight=0.5)
    _, _, infos = _run(env, actions)
    for action, info in zip(actions, infos, strict=True):
        assert info["reward_forward"] == pytest.approx(2.0 * info["x_velocity"], abs=1e-12)
        expected = -0.5 * np.sum(np.square(action.astype(np.float64)))
        assert info["reward_ctrl"] == pytest.approx(expected, rel=1e-12)
    wide = HalfCheetahVelEnv(exclude_current_positions_from_observation=False)
    assert wide.observation_space.shape == (18,)


def test_sample_tasks():
    rng = np.random.default_rng(0)
    directions = [t["direction"] for t in HalfCheetahDirEnv().sample_tasks(200, rng)]
    assert set(directions) == {-1.0, 1.0}
    assert 60 < directions.count(1.0) < 140
    velocities = [t["velocity"] for t in HalfCheetahVelEnv().sample_tasks(200, rng)]
    assert 0.0 <= min(velocities) and max(velocities) <= 2.0 and max(velocities) > 1.5
    wide = HalfCheetahVelEnv(velocity_range=(0.0, 3.0)).sample_tasks(200, rng)
    assert max(t["velocity"] for t in wide) > 2.0
    env = HalfCheetahVelEnv()
    first = env.sample_tasks(5, np.random.default_rng(7))
    assert first == env.sample_tasks(5, np.random.default_rng(7))


@pytest.mark.parametrize(
    ("env_class", "task", "message"),
    [
        (HalfCheetahDirEnv, {"velocity": 1.0}, r"Task\(direction=<number>\); got keys"),
        (HalfCheetahDirEnv, {"direction": 0.5}, r"-1\.0 \(backward\) or 1\.0 \(forward\)"),
        (
            HalfCheetahDirEnv,
            {"direction": (1.0, 1.0)},
            r"Task\(direction=<number>\): direction must be a number",
        ),
        (HalfCheetahDirEnv, {"direction": "left"}, r"must be a number"),
        (HalfCheetahDirEnv, 1.0, r"a task is a mapping"),
        (HalfCheetahVelEnv, {"velocity": 2.5}, r"outside \[0\.0, 2\.0\].*velocity_range"),
        (HalfCheetahVelEnv, {"velocity": float("nan")}, r"finite"),
        (HalfCheetahVelEnv, {"velocity": 1.0, "direction": 1.0}, r"got keys"),
    ],
)
def test_set_task_rejects_malformed_tasks(env_class, task, message):
    env = env_class()
    before = env.get_task()
    with pytest.raises(ValueError, match=message):
        env.set_task(task)
    assert env.get_task() == before


def test_tasks_through_reset_options_and_constructor():
    env = make_task_env(DIR_ID)
    env.reset(seed=0, options={"task": Task(direction=-1.0)})
    assert env.unwrapped.task == Task(direction=-1.0)
    env.unwrapped.task = {"direction": 1}
    assert env.unwrapped.get_task() == Task(direction=1.0)
    assert HalfCheetahVelEnv(velocity_range=(0.0, 3.0)).task == Task(velocity=1.5)
    with pytest.raises(ValueError, match="velocity_range"):
        HalfCheetahVelEnv(velocity_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="outside"):
        make_task_env(VEL_ID, task=Task(velocity=3.0))


def test_pickle_keeps_constructor_arguments():
    env = HalfCheetahVelEnv(velocity_range=(0.0, 3.0), ctrl_cost_weight=0.2)
    copy = pickle.loads(pickle.dumps(env))
    assert copy.velocity_range == (0.0, 3.0)
    assert copy._ctrl_cost_weight == 0.2
