"""AntDir / AntGoal: Ant-v5 physics, rewards, tasks, registration, and the batched env."""

import json
import pickle

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the task envs)
from envs.ant import AntDirEnv, AntDirVectorEnv, AntGoalEnv, AntGoalVectorEnv
from metarl.policies import GaussianMLPPolicy
from metarl.samplers import MultiTaskSampler
from metarl.tasks import Task, load_tasks, make_task_env, make_task_vec, save_tasks

DIR_ID, GOAL_ID = "metarl/AntDir-v0", "metarl/AntGoal-v0"
TERMS = ["reward_contact", "reward_ctrl", "reward_survive"]


def _actions(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(*shape, 8))


def _assert_same_step(a, b):
    """Bit-identical observations, rewards, terminations, truncations and info."""
    for name, x, y in zip(("obs", "reward", "terminated", "truncated"), a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a[4].keys() == b[4].keys()
    for key in b[4]:
        np.testing.assert_array_equal(a[4][key], b[4][key], err_msg=key)


@pytest.mark.filterwarnings("ignore:.*Box observation space m:UserWarning")
@pytest.mark.parametrize(("env_id", "obs_dim"), [(DIR_ID, 105), (GOAL_ID, 107)])
def test_check_env_and_registration(env_id, obs_dim):
    spec = gym.spec(env_id)
    assert spec.max_episode_steps == 200
    assert spec.vector_entry_point.startswith("envs.ant:")
    env = make_task_env(env_id)
    check_env(env.unwrapped, skip_render_check=True)  # rendering is Ant-v5's own
    assert env.observation_space.shape == (obs_dim,)
    env.close()


def test_physics_observation_and_reward_are_ant_v5():
    # Forward (direction +1) AntDir is Ant-v5, reward included (float64 actions: Ant-v5 squares
    # float32 ones in float32).
    ours, reference = AntDirEnv(), gym.make("Ant-v5").unwrapped
    obs, info = ours.reset(seed=3)
    ref_obs, ref_info = reference.reset(seed=3)
    np.testing.assert_array_equal(obs, ref_obs)
    assert info == ref_info
    for action in _actions((150,)):
        step, ref_step = ours.step(action), reference.step(action)
        np.testing.assert_array_equal(step[0], ref_step[0])
        assert step[1:4] == ref_step[1:4]
        assert step[4] == ref_step[4]
        if step[2]:
            break
    goal = AntGoalEnv()
    goal_obs, _ = goal.reset(seed=3)
    np.testing.assert_array_equal(goal_obs[:2], goal.data.qpos[:2])  # AntGoal sees x and y
    np.testing.assert_array_equal(goal_obs[2:], ref_obs)


@pytest.mark.parametrize("env_class", [AntDirEnv, AntGoalEnv])
def test_reward_is_the_sum_of_its_terms_in_info(env_class):
    env = env_class(task=env_class().sample_tasks(1, np.random.default_rng(2))[0])
    env.reset(seed=0)
    contact = False
    for action in _actions((60,)):
        _, reward, terminated, _, info = env.step(action)
        terms = sorted(k for k in info if k.startswith("reward_"))
        assert terms == sorted([*TERMS, env.task_term])
        assert reward == pytest.approx(sum(info[k] for k in terms), abs=1e-12)
        expected_ctrl = -0.5 * np.sum(np.square(action))
        assert info["reward_ctrl"] == pytest.approx(expected_ctrl, rel=1e-12)
        contact |= info["reward_contact"] != 0
        if terminated:
            break
    assert contact  # the contact forces were computed and cost something


def test_task_terms():
    actions = _actions((20,))
    forward = {}
    for direction in (1.0, -1.0):
        env = AntDirEnv(task=Task(direction=direction))
        env.reset(seed=1)
        infos = [env.step(action)[4] for action in actions]
        forward[direction] = np.array([i["reward_forward"] for i in infos])
        velocity = np.array([i["x_velocity"] for i in infos])
        np.testing.assert_array_equal(forward[direction], direction * velocity)
    np.testing.assert_array_equal(forward[1.0], -forward[-1.0])
    env = AntGoalEnv(task=Task(goal=(1.0, -2.0)), forward_reward_weight=2.0)
    env.reset(seed=1)
    for action in actions:
        _, _, _, _, info = env.step(action)
        xy = env.data.xpos[env.main_body_id, :2]
        assert info["reward_goal"] == pytest.approx(-2.0 * np.hypot(*(xy - [1.0, -2.0])))


@pytest.mark.parametrize("env_id", [DIR_ID, GOAL_ID])
def test_batched_reproduces_the_single_env(env_id):
    # A short time limit and random actions: episodes end by truncation and by termination (the
    # ant leaves Ant-v5's healthy height), and Gymnasium's next-step autoreset restarts them.
    # (AntGoal does not terminate by default; switch it on to cover the termination path.)
    n, steps = 4, 100
    kwargs = {"terminate_when_unhealthy": True}
    batched = make_task_vec(
        env_id, n, max_episode_steps=40, vector_kwargs={"num_threads": 2}, **kwargs
    )
    sync = make_task_vec(env_id, n, "sync", max_episode_steps=40, **kwargs)
    assert isinstance(batched.unwrapped, (AntDirVectorEnv, AntGoalVectorEnv))
    assert batched.unwrapped.computes_contact_forces
    assert batched.single_observation_space == sync.single_observation_space
    tasks = batched.unwrapped.sample_tasks(n, np.random.default_rng(1))
    batched.set_attr("task", tasks)
    sync.set_attr("task", tasks)
    obs, info = batched.reset(seed=5)
    sync_obs, sync_info = sync.reset(seed=5)
    _assert_same_step((obs, 0, 0, 0, info), (sync_obs, 0, 0, 0, sync_info))
    assert info.keys() == {"x_position", "y_position", "distance_from_origin"} | {
        "_x_position",
        "_y_position",
        "_distance_from_origin",
    }
    terminations = truncations = 0
    for action in _actions((steps, n)):
        step = batched.step(action)
        _assert_same_step(step, sync.step(action))
        reward_terms = sum(v for k, v in step[4].items() if k.startswith("reward_"))
        np.testing.assert_allclose(step[1], reward_terms, rtol=0, atol=1e-12)
        terminations += int(step[2].sum())
        truncations += int((step[3] & ~step[2]).sum())
    assert terminations > 0 and truncations > 0
    batched.close()
    sync.close()


def test_without_contact_forces_or_termination():
    kwargs = dict(include_cfrc_ext_in_observation=False, contact_cost_weight=0.0)
    vec = AntDirVectorEnv(3, max_episode_steps=200, num_threads=1, **kwargs)
    assert not vec.computes_contact_forces
    assert vec.single_observation_space.shape == (27,)
    sync = make_task_vec(DIR_ID, 3, "sync", **kwargs)
    np.testing.assert_array_equal(vec.reset(seed=0)[0], sync.reset(seed=0)[0])
    for action in _actions((30, 3)):
        _assert_same_step(vec.step(action), sync.step(action))
    endless = AntGoalVectorEnv(2, terminate_when_unhealthy=False, healthy_z_range=(0.6, 1.0))
    endless.reset(seed=0)
    unhealthy_steps = 0
    for action in _actions((30, 2)):
        _, _, terminated, _, info = endless.step(action)
        assert not terminated.any()
        unhealthy_steps += int((info["reward_survive"] == 0).sum())
    assert unhealthy_steps > 0  # the torso fell below 0.6, and the episodes went on


def test_sample_tasks():
    rng = np.random.default_rng(0)
    directions = [t["direction"] for t in AntDirEnv().sample_tasks(200, rng)]
    assert set(directions) == {-1.0, 1.0}
    assert 60 < directions.count(1.0) < 140
    env = AntGoalEnv()
    goals = np.array([t["goal"] for t in env.sample_tasks(500, rng)])
    radii = np.hypot(goals[:, 0], goals[:, 1])
    assert radii.max() <= 3.0 and radii.max() > 2.8
    assert 0.4 < np.mean(radii < 3.0 / np.sqrt(2)) < 0.6  # uniform over the area: half inside
    assert (goals < 0).any(axis=0).all() and (goals > 0).any(axis=0).all()
    first = env.sample_tasks(5, np.random.default_rng(7))
    assert first == env.sample_tasks(5, np.random.default_rng(7))
    wide = AntGoalEnv(goal_radius=5.0).sample_tasks(200, rng)
    assert max(np.hypot(*t["goal"]) for t in wide) > 3.0


@pytest.mark.parametrize(
    ("env_class", "task", "message"),
    [
        (AntDirEnv, {"goal": (1.0, 1.0)}, r"Task\(direction=<number>\); got keys"),
        (AntDirEnv, {"direction": 0.5}, r"-1\.0 \(backward\) or 1\.0 \(forward\)"),
        (AntDirEnv, {"direction": "left"}, r"must be a number"),
        (AntGoalEnv, {"direction": 1.0}, r"Task\(goal=\(<x>, <y>\)\); got keys"),
        (AntGoalEnv, {"goal": 1.0}, r"two numbers; got goal=1\.0"),
        (AntGoalEnv, {"goal": (1.0, 2.0, 3.0)}, r"two numbers"),
        (AntGoalEnv, {"goal": (3.0, 3.0)}, r"outside the disc of radius 3\.0.*goal_radius="),
        (AntGoalEnv, {"goal": (float("inf"), 0.0)}, r"finite"),
        (AntGoalEnv, [1.0, 2.0], r"a task is a mapping"),
    ],
)
def test_set_task_rejects_malformed_tasks(env_class, task, message):
    env = env_class()
    before = env.get_task()
    with pytest.raises(ValueError, match=message):
        env.set_task(task)
    assert env.get_task() == before


def test_tasks_round_trip_through_json(tmp_path):
    for env_id in (DIR_ID, GOAL_ID):
        env = make_task_env(env_id)
        tasks = env.unwrapped.sample_tasks(4, np.random.default_rng(0))
        assert [Task.from_json(json.loads(json.dumps(t.to_json()))) for t in tasks] == tasks
        path = tmp_path / "tasks.json"
        save_tasks(str(path), tasks)
        loaded = load_tasks(str(path))
        assert loaded == tasks
        env.reset(seed=0, options={"task": loaded[1]})
        assert env.unwrapped.task == tasks[1]
        vec = make_task_vec(env_id, 4)
        vec.set_attr("task", loaded)
        assert vec.get_attr("task") == tuple(tasks)


def test_constructor_arguments():
    with pytest.raises(ValueError, match="goal_radius"):
        AntGoalEnv(goal_radius=0.0)
    with pytest.raises(ValueError, match="goal_radius"):
        make_task_env(GOAL_ID, task=Task(goal=(4.0, 0.0)))
    assert AntGoalEnv(goal_radius=5.0, task=Task(goal=(4.0, 0.0))).task == Task(goal=(4.0, 0.0))
    assert AntGoalEnv(exclude_current_positions_from_observation=True).observation_space.shape == (
        105,
    )
    env = AntGoalEnv(goal_radius=4.0, ctrl_cost_weight=0.1, task=Task(goal=(1.0, 1.0)))
    copy = pickle.loads(pickle.dumps(env))
    assert copy.goal_radius == 4.0 and copy._ctrl_cost_weight == 0.1
    assert copy.task == Task(goal=(1.0, 1.0))


def _sample_batched_and_sync(env_id, episodes_per_task, horizon, inspect=lambda vec: None):
    """Episodes of 2 tasks from the batched and the sync vector env (same seeds), and what
    ``inspect`` returns for the batched env after its call."""
    episodes = {}
    for mode in ("vector_entry_point", "sync"):
        torch.manual_seed(0)
        sampler = MultiTaskSampler(
            env_id, 2, episodes_per_task, horizon=horizon, vectorization_mode=mode, seed=3
        )
        policy = GaussianMLPPolicy(sampler.observation_space.shape[0], 8, hidden_sizes=(16,))
        tasks = sampler.sample_tasks(2, np.random.default_rng(0))
        episodes[mode] = sampler.sample(policy, tasks)
        if mode == "vector_entry_point":
            seen = inspect(sampler.vec.unwrapped)
        sampler.close()
    return episodes["vector_entry_point"], episodes["sync"], seen


@pytest.mark.parametrize(("env_id", "obs_dim"), [(DIR_ID, 105), (GOAL_ID, 107)])
def test_sampler_runs_the_batched_env(env_id, obs_dim):
    a, b, _ = _sample_batched_and_sync(env_id, 2, 3)
    assert a.observations.shape == (2, 2, 3, obs_dim)
    assert torch.equal(a.observations, b.observations) and torch.equal(a.rewards, b.rewards)
    assert a.truncated[:, :, -1].all()


def test_ant_goal_does_not_end_episodes_on_falling_by_default():
    # With termination, ending the episode beats walking far from the goal (learning to fall).
    assert not AntGoalEnv().terminate_when_unhealthy
    assert AntDirEnv().terminate_when_unhealthy  # Ant-v5's default, as for forward running


def test_paused_envs_keep_their_state_and_the_others_step_as_before():
    n = 4
    kwargs = {"max_episode_steps": 30, "vector_kwargs": {"num_threads": 2}}
    paused, plain = make_task_vec(DIR_ID, n, **kwargs), make_task_vec(DIR_ID, n, **kwargs)
    tasks = paused.unwrapped.sample_tasks(n, np.random.default_rng(1))
    for vec in (paused, plain):
        vec.set_attr("task", tasks)
        vec.reset(seed=5)
    actions = _actions((40, n))
    for action in actions[:10]:
        _assert_same_step(paused.step(action), plain.step(action))
    which = np.array([False, True, False, False])
    paused.pause_envs(which)
    frozen = plain.step(actions[10])[0][1]  # env 1's observation when paused (after step 10)
    paused.step(actions[10])  # (this step's env 1 observation is the one before it)
    for action in actions[11:]:
        obs, reward, terminated, truncated, info = paused.step(action)
        other = plain.step(action)
        # The others: bit-identical through their terminations, truncations and autoresets.
        keep = ~which
        for x, y in zip((obs, reward, terminated, truncated), other[:4], strict=True):
            np.testing.assert_array_equal(x[keep], y[keep])
        # The paused env: its state does not move, and it reports nothing.
        assert not np.array_equal(obs[1], frozen)  # env 1 was paused before step 10 ran
        assert reward[1] == 0 and not terminated[1] and not truncated[1]
        assert not any(mask[1] for key, mask in info.items() if key.startswith("_"))
    observed = [paused.step(a)[0][1] for a in actions[:3]]
    np.testing.assert_array_equal(observed[0], observed[2])
    # A reset ends the pause: env 1 steps again, as its unpaused twin does.
    for vec in (paused, plain):
        vec.reset(seed=6)
    for action in actions[:5]:
        _assert_same_step(paused.step(action), plain.step(action))
    with pytest.raises(ValueError, match="boolean mask of 4 envs"):
        paused.pause_envs(np.array([1, 0, 0, 0]))
    paused.close()
    plain.close()


def test_sampler_pauses_ended_episodes_without_changing_them():
    # AntDir's ant falls (terminates) under a random policy well before step 100; the batched
    # env's ended slots are paused (no physics), the sync env's keep stepping, and the episodes
    # are the same.
    def simulated_time(vec):
        data = mujoco.MjData(vec._model)
        return [vec._batch.get_data(i, data).time for i in range(vec.num_envs)]

    a, b, sims = _sample_batched_and_sync(DIR_ID, 4, 100, simulated_time)
    for name in ("observations", "actions", "log_probs", "rewards", "mask", "terminated"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.last_observations, b.last_observations)
    lengths = a.mask.sum(-1).flatten().numpy()
    assert a.terminated.any() and lengths.min() < lengths.max() < 100
    # Each simulation stopped where its episode ended (the longest one's slot ends the call).
    dt = AntDirEnv().dt
    np.testing.assert_allclose(np.array(sims) / dt, lengths, atol=1e-6)
