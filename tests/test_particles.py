"""Particles2D: Gymnasium's checker, the task contract, and batched == single trajectories."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401
from envs.particles import Particles2DEnv
from metarl.tasks import (
    Task,
    TaskContractError,
    load_tasks,
    make_task_env,
    make_task_vec,
    save_tasks,
)

ENV = "metarl/Particles2D-v0"


def test_check_env_passes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite observation bounds are deliberate
        check_env(gym.make(ENV).unwrapped)


def test_registration():
    spec = gym.spec(ENV)
    assert spec.max_episode_steps == 100
    assert spec.vector_entry_point is not None


def test_tasks_come_only_from_the_given_generator():
    env = make_task_env(ENV)
    a = env.unwrapped.sample_tasks(5, np.random.default_rng(42))
    np.random.seed(0)  # noqa: NPY002  (global state must not matter)
    b = env.unwrapped.sample_tasks(5, np.random.default_rng(42))
    c = env.unwrapped.sample_tasks(5, np.random.default_rng(43))
    assert a == b and a != c
    goals = np.array([t["goal"] for t in a])
    assert goals.shape == (5, 2) and (np.abs(goals) <= 0.5).all()


def test_task_json_round_trip(tmp_path):
    tasks = make_task_env(ENV).unwrapped.sample_tasks(3, np.random.default_rng(0))
    save_tasks(str(tmp_path / "t.json"), tasks)
    assert load_tasks(str(tmp_path / "t.json")) == tasks
    assert hash(tasks[0]) == hash(Task(goal=list(tasks[0]["goal"])))


@pytest.mark.parametrize(
    "task, message",
    [
        ({"gaol": (0.1, 0.1)}, "keys"),
        ({"goal": (0.1, 0.1, 0.1)}, "2 finite numbers"),
        ({"goal": (0.9, 0.1)}, "outside"),
        ({"goal": "north"}, "number"),
    ],
)
def test_malformed_task_is_rejected_with_a_clear_message(task, message):
    env = Particles2DEnv()
    with pytest.raises(ValueError, match=message):
        env.set_task(task)


def test_reset_option_sets_the_task():
    env = make_task_env(ENV)
    env.reset(options={"task": Task(goal=(0.2, -0.3))})
    assert env.unwrapped.get_task() == Task(goal=(0.2, -0.3))
    _, reward, *_ = env.step(np.zeros(2, dtype=np.float32))
    assert reward == pytest.approx(-np.hypot(0.2, 0.3))


def test_unknown_env_id_lists_registered_ones():
    with pytest.raises(gym.error.UnregisteredEnv, match="Particles2D"):
        make_task_env("metarl/Nope-v0")


def test_env_breaking_the_contract_is_named():
    with pytest.raises(TaskContractError, match="sample_tasks, set_task, get_task, task"):
        make_task_env("CartPole-v1")


def test_termination_at_goal():
    env = Particles2DEnv(task=Task(goal=(0.05, 0.0)))
    env.reset()
    _, _, terminated, truncated, _ = env.step(np.array([0.05, 0.0], dtype=np.float32))
    assert terminated and not truncated


@pytest.mark.parametrize("mode", ["vector_entry_point", "sync"])
def test_batched_and_single_env_give_identical_trajectories(mode):
    n = 6
    rng = np.random.default_rng(0)
    tasks = Particles2DEnv().sample_tasks(n, rng)
    tasks[0] = Task(goal=(0.05, 0.05))  # terminates early: exercises the autoreset path
    vec = make_task_vec(ENV, n, mode)
    vec.set_attr("task", tasks)
    singles = [make_task_env(ENV) for _ in range(n)]
    obs_v, _ = vec.reset(seed=3)
    obs_s = [
        e.reset(seed=3 + i, options={"task": t})[0]
        for i, (e, t) in enumerate(zip(singles, tasks, strict=True))
    ]
    np.testing.assert_array_equal(obs_v, np.stack(obs_s))
    done = np.zeros(n, dtype=bool)
    terminated_seen = False
    for _ in range(30):
        actions = rng.uniform(-0.15, 0.15, size=(n, 2)).astype(np.float32)
        actions[0] = 0.05
        obs_v, r_v, term_v, trunc_v, _ = vec.step(actions)
        for i, env in enumerate(singles):
            if done[i]:
                continue  # the vector env autoresets this one; compare only live episodes
            o, r, te, tr, _ = env.step(actions[i])
            np.testing.assert_array_equal(obs_v[i], o)
            assert r_v[i] == pytest.approx(r, abs=1e-12)
            assert term_v[i] == te and trunc_v[i] == tr
            done[i] = te or tr
            terminated_seen |= te
    assert terminated_seen


def test_vector_env_rejects_bad_tasks():
    vec = make_task_vec(ENV, 2)
    with pytest.raises(ValueError, match="one per env"):
        vec.set_attr("task", [Task(goal=(0.0, 0.0))])
    with pytest.raises(ValueError, match="outside"):
        vec.set_attr("task", [Task(goal=(0.0, 0.0)), Task(goal=(2.0, 0.0))])


def test_paused_env_does_not_move_and_the_others_do():
    vec = make_task_vec(ENV, 3)
    vec.set_attr("task", [Task(goal=(0.4, 0.4))] * 3)
    vec.reset(seed=0)
    step = np.full((3, 2), 0.05, dtype=np.float32)
    vec.step(step)
    vec.pause_envs(np.array([False, True, False]))
    for _ in range(3):
        obs, reward, _, _, _ = vec.step(step)
    np.testing.assert_allclose(obs, [[0.2, 0.2], [0.05, 0.05], [0.2, 0.2]], atol=1e-7)
    assert reward[1] == 0 and reward[0] < 0
