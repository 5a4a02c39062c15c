"""Meta-World task distributions: the MuJoCo-4 shim, the contract, splits, conformance, the pool."""

from __future__ import annotations

import inspect
import os
import pickle
import signal
import subprocess
import sys

import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

metaworld = pytest.importorskip("metaworld", reason="Meta-World is an optional install (README)")

import envs  # noqa: E402
from envs import metaworld as mw  # noqa: E402
from envs.metaworld_pool import MetaWorldVectorEnv  # noqa: E402
from metarl.evaluation import held_out_tasks  # noqa: E402
from metarl.samplers import MultiTaskSampler  # noqa: E402
from metarl.tasks import Task, load_tasks, make_task_env, save_tasks, task_splits  # noqa: E402

ML1 = "metarl/ML1-reach-v0"
ML10 = "metarl/ML10-v0"


def rollout(env, task, actions):
    """Observations, rewards and success flags of one episode of ``task`` under ``actions``."""
    env.set_task(task) if hasattr(env, "get_task") else None
    obs, _ = env.reset()
    out = [np.asarray(obs)]
    rewards, successes = [], []
    for action in actions:
        obs, reward, _, _, info = env.step(action)
        out.append(np.asarray(obs))
        rewards.append(float(reward))
        successes.append(float(info["success"]))
    return np.array(out), np.array(rewards), np.array(successes)


def actions(n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 4)).astype(np.float32)


def test_shim_replaces_the_method_it_was_written_for():
    mw.import_metaworld()
    base = metaworld.sawyer_xyz_env.SawyerMocapBase
    assert base.reset_mocap_welds is mw._reset_mocap_welds
    # Upstream still assigns its 11 weld values: if this fails, Meta-World changed the method the
    # shim replaces (re-check it, and drop the shim if upstream now handles MuJoCo 4).
    assert mw._UPSTREAM_WELD in inspect.getsource(mw.REPLACED)
    assert mujoco.mjNEQDATA == 12, "MuJoCo's eq_data width changed: re-check the shim's padding"


def test_shim_writes_metaworlds_weld_and_the_hand_follows_the_mocap():
    env = mw.make_family_env("reach-v3")
    mw.apply_task(env, "reach-v3", mw.task_sets("ML1", "reach-v3", 0)["train"]["reach-v3"][0])
    env.reset()
    welds = env.model.eq_data[env.model.eq_type == mujoco.mjtEq.mjEQ_WELD]
    assert welds.shape[1] == 12 and np.array_equal(
        welds[:, :11], np.tile(mw._WELD, (len(welds), 1))
    )
    assert np.all(welds[:, 11] == 0)
    for _ in range(30):  # the weld pulls the hand onto the mocap body
        env.step(np.zeros(4, dtype=np.float32))
    assert np.linalg.norm(env.tcp_center - env.data.mocap_pos[0]) < 0.05
    env.close()


def test_family_ids_match_metaworld():
    names = [n.removesuffix("-v3") for n in metaworld.env_dict.ALL_V3_ENVIRONMENTS]
    assert envs.METAWORLD_FAMILIES == names


@pytest.mark.parametrize("env_id", [ML1, ML10])
def test_check_env_and_contract(env_id):
    env = make_task_env(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    assert task_splits(env) == ("train", "test")
    assert env.spec.max_episode_steps == 500
    env.close()


def test_ml10_and_ml45_families_hold_out_five_families():
    # ML45's goal sets take 30 s to build, so its families are checked without them
    for bench, train in (("ML10", 10), ("ML45", 45)):
        families = mw.benchmark_families(bench)
        assert len(families["train"]) == train and len(families["test"]) == 5
        assert not set(families["train"]) & set(families["test"])
    with pytest.raises(ValueError, match="the families are"):
        mw.benchmark_families("ML1", "reach-v9")
    with pytest.raises(ValueError, match="choose one of"):
        mw.benchmark_families("ML20")


def test_ml1_splits_are_metaworlds_train_and_test_goals():
    env = make_task_env(ML1).unwrapped
    upstream = metaworld.ML1("reach-v3", seed=0)
    goals = {
        split: {tuple(pickle.loads(t.data)["rand_vec"]) for t in tasks}
        for split, tasks in (("train", upstream.train_tasks), ("test", upstream.test_tasks))
    }
    assert not goals["train"] & goals["test"]
    for split in ("train", "test"):
        tasks = env.sample_tasks(30, np.random.default_rng(1), split=split)
        assert {t["rand_vec"] for t in tasks} <= goals[split]
        assert {t["family"] for t in tasks} == {"reach-v3"}


def test_ml10_test_split_is_the_held_out_families_and_tasks_spread_evenly():
    env = make_task_env(ML10).unwrapped
    train = env.sample_tasks(20, np.random.default_rng(0))
    test = env.sample_tasks(10, np.random.default_rng(0), split="test")
    train_families = [t["family"] for t in train]
    assert sorted(set(train_families)) == sorted(metaworld.env_dict.ML10_V3["train"])
    assert all(train_families.count(f) == 2 for f in set(train_families))
    assert sorted({t["family"] for t in test}) == sorted(metaworld.env_dict.ML10_V3["test"])
    # held-out evaluation draws from the test split where there is one
    sampler = MultiTaskSampler(ML10, 1, 1, horizon=2, vector_kwargs=dict(workers=0))
    held_out = held_out_tasks(sampler, 5, seed=0)
    assert {t["family"] for t in held_out} <= set(metaworld.env_dict.ML10_V3["test"])
    sampler.close()


@pytest.mark.parametrize("family, index", [("reach-v3", 3), ("pick-place-v3", 7)])
def test_same_observations_rewards_and_successes_as_metaworld(family, index):
    upstream_bench = metaworld.ML10(seed=0)
    task = [t for t in upstream_bench.train_tasks if t.env_name == family][index]
    upstream = upstream_bench.train_classes[family]()
    upstream.set_task(task)
    ours = make_task_env(ML10).unwrapped
    ours_task = Task(family=family, rand_vec=pickle.loads(task.data)["rand_vec"])
    acts = actions(120)
    expected = rollout(upstream, None, acts)
    got = rollout(ours, ours_task, acts)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)
    upstream.close()


def test_tasks_round_trip_through_json_with_the_same_trajectory(tmp_path):
    env = make_task_env(ML10).unwrapped
    tasks = env.sample_tasks(3, np.random.default_rng(4))
    save_tasks(str(tmp_path / "tasks.json"), tasks)
    loaded = load_tasks(str(tmp_path / "tasks.json"))
    assert loaded == tasks
    acts = actions(40, seed=2)
    for a, b in zip(rollout(env, tasks[2], acts), rollout(env, loaded[2], acts), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_tasks_are_rejected_with_the_fix():
    env = make_task_env(ML1).unwrapped
    with pytest.raises(ValueError, match="keys"):
        env.set_task({"family": "reach-v3"})
    with pytest.raises(ValueError, match="not a ML1 family"):
        env.set_task({"family": "push-v3", "rand_vec": (0.0,) * 6})
    with pytest.raises(ValueError, match="sample_tasks"):
        env.set_task({"family": "reach-v3", "rand_vec": (0.0,) * 6})
    with pytest.raises(ValueError, match="task splits"):
        make_task_env("metarl/Particles2D-v0").unwrapped.sample_tasks(
            2, np.random.default_rng(0), split="test"
        )


def test_missing_metaworld_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "metaworld", None)
    with pytest.raises(ImportError, match="--no-deps"):
        mw.import_metaworld()


@pytest.mark.parametrize("workers", [0, 2])
def test_vector_env_of_mixed_families_matches_single_envs(workers):
    single = make_task_env(ML10).unwrapped
    tasks = single.sample_tasks(4, np.random.default_rng(3))
    assert len({t["family"] for t in tasks}) == 4
    steps = 25
    acts = actions(steps * 4, seed=5).reshape(steps, 4, 4)
    vec = MetaWorldVectorEnv(4, "ML10", workers=workers, max_episode_steps=500)
    vec.set_attr("task", tasks)
    obs, _ = vec.reset(seed=0)
    observations, rewards, successes = [obs], [], []
    for t in range(steps):
        obs, reward, terminated, truncated, info = vec.step(acts[t])
        assert not terminated.any() and not truncated.any()
        observations.append(obs)
        rewards.append(reward)
        successes.append(info["success"])
    vec.close()
    for i, task in enumerate(tasks):
        o, r, s = rollout(single, task, acts[:, i])
        np.testing.assert_array_equal(np.array(observations)[:, i], o)
        np.testing.assert_array_equal(np.array(rewards)[:, i], r)
        np.testing.assert_array_equal(np.array(successes)[:, i], s)


def test_switching_families_reuses_the_envs_it_has():
    single = make_task_env(ML10).unwrapped
    families = single.families["train"]
    goals = mw.task_sets("ML10", None, 0)["train"]

    def tasks(names, k):
        return [Task(family=f, rand_vec=goals[f][k]) for f in names]

    vec = MetaWorldVectorEnv(4, "ML10", workers=0, max_episode_steps=500)
    first, second = families[:4], families[4:8]
    for names, k, built in [(first, 0, 4), (first, 1, 4), (second, 0, 8), (first[::-1], 2, 8)]:
        vec.set_attr("task", tasks(names, k))
        vec.reset(seed=0)
        vec.step(np.zeros((4, 4), dtype=np.float32))
        assert vec.envs_built == built, names
    vec.close()
    bounded = MetaWorldVectorEnv(2, "ML10", workers=0, max_idle=0, max_episode_steps=500)
    for names in (first[:2], first[2:4], first[:2]):
        bounded.set_attr("task", tasks(names, 0))
        bounded.reset(seed=0)
    assert bounded.envs_built == 6  # nothing kept idle: every switch builds
    bounded.close()


def test_a_worker_error_reaches_the_learner_with_its_traceback():
    vec = MetaWorldVectorEnv(2, "ML1", "reach-v3", workers=2, max_episode_steps=500)
    vec.reset(seed=0)
    with pytest.raises(RuntimeError, match="Meta-World worker failed"):
        vec.step(np.zeros((2, 3), dtype=np.float32))  # Meta-World wants 4 action values
    vec.close()


def test_ctrl_c_on_the_process_group_saves_without_worker_tracebacks(tmp_path):
    # a terminal's Ctrl-C reaches the workers too; only the learner may act on it
    cmd = [sys.executable, "scripts/train.py", "--env", ML1, "--iterations", "50"]
    cmd += ["--meta-batch-size", "2", "--episodes-per-task", "2", "--horizon", "20"]
    cmd += ["--eval-tasks", "0", "--threads", "1", "--out", str(tmp_path)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen(cmd, cwd=root, start_new_session=True, **pipes)
    for line in proc.stdout:
        if line.startswith("iter    1/"):
            break
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted: saved" in err, err
    assert "Traceback" not in err, err
