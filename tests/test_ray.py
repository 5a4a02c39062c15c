"""The Ray sampler: the local sampler's episodes, bit for bit, from actors that may die."""

import os
import signal
import sys

import numpy as np
import pytest
import torch
from scripts_helpers import load_script, run_script

import envs  # noqa: F401  (registers the task envs)
from metarl.policies import make_policy
from metarl.samplers import MultiTaskSampler, make_sampler

ray = pytest.importorskip("ray")

TRAIN = load_script("train")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def per_task_params(policy, num_tasks):
    gen = torch.Generator().manual_seed(3)
    return {
        k: v.detach().expand(num_tasks, *v.shape)
        + 0.1 * torch.randn(num_tasks, *v.shape, generator=gen)
        for k, v in policy.params().items()
    }


def assert_same(a, b):
    assert a.tensor_fields() == b.tensor_fields()
    for name in a.tensor_fields():
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.tasks == b.tasks


def pair(env_id, horizon, num_tasks=3, seed=5):
    local = MultiTaskSampler(env_id, num_tasks, 2, horizon=horizon, seed=seed)
    remote = make_sampler("ray", env_id, num_tasks, 2, horizon=horizon, seed=seed, workers=2)
    torch.manual_seed(0)
    policy = make_policy(local.observation_space, local.action_space, (16,))
    tasks = local.sample_tasks(num_tasks, np.random.default_rng(1))
    return local, remote, policy, tasks


try:
    import metaworld
except ImportError:
    metaworld = None


@pytest.mark.parametrize(
    "env_id, horizon",
    [
        ("metarl/Particles2D-v0", 20),
        ("metarl/HalfCheetahDir-v0", 8),
        # tasks of three families, success flags, and no worker processes inside the actors
        pytest.param(
            "metarl/ML10-v0",
            6,
            marks=pytest.mark.skipif(metaworld is None, reason="Meta-World is optional"),
        ),
    ],
)
def test_same_episodes_as_the_local_sampler(env_id, horizon):
    local, remote, policy, tasks = pair(env_id, horizon)
    try:
        params = per_task_params(policy, 3)
        for p in (params, None, params):  # several calls: the RNG streams advance alike
            assert_same(local.sample(policy, tasks, p), remote.sample(policy, tasks, p))
        assert remote.total_steps == local.total_steps
        state = local.state_dict()
        resumed = remote.resized(3, 2, seed=99)
        resumed.load_state_dict(state)
        assert_same(local.sample(policy, tasks, params), resumed.sample(policy, tasks, params))
        resumed.close()
    finally:
        remote.close()


def test_a_killed_actor_is_replaced_and_its_slice_rerun():
    local, remote, policy, tasks = pair("metarl/Particles2D-v0", 10)
    try:
        assert_same(local.sample(policy, tasks), remote.sample(policy, tasks))
        os.kill(remote.actor_pids()[0], signal.SIGKILL)
        ray.kill(remote._actors[1])
        assert_same(local.sample(policy, tasks), remote.sample(policy, tasks))
    finally:
        remote.close()


def test_user_env_from_a_module_on_the_learners_path(tmp_path, monkeypatch):
    # the env class lives in the module itself, so the actors must import it from tmp_path
    (tmp_path / "user_ray_envs.py").write_text(
        "import gymnasium\n"
        "from envs.particles import Particles2DEnv\n\n"
        "class MyParticles(Particles2DEnv):\n"
        "    pass\n\n"
        "gymnasium.register(id='mine/RayParticles-v0', "
        "entry_point='user_ray_envs:MyParticles', max_episode_steps=6)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env_id = "user_ray_envs:mine/RayParticles-v0"
    remote = make_sampler("ray", env_id, 2, 1, seed=0, workers=2)
    try:
        local = MultiTaskSampler(env_id, 2, 1, seed=0)
        policy = make_policy(local.observation_space, local.action_space, (8,))
        tasks = local.sample_tasks(2, np.random.default_rng(0))
        assert remote.horizon == 6
        assert_same(local.sample(policy, tasks), remote.sample(policy, tasks))
    finally:
        remote.close()
        sys.modules.pop("user_ray_envs", None)


def test_missing_ray_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        make_sampler("ray", "metarl/Particles2D-v0", 1, 1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ray-address", "127.0.0.1:1"], "ray start --head"),
        (["--workers", "0"], "workers must be a positive integer"),
    ],
)
def test_bad_ray_setup_is_one_line_naming_the_fix(tmp_path, args, message):
    argv = ["--iterations", "1", "--out", str(tmp_path), "--sampler", "ray", *args]
    with pytest.raises(SystemExit) as exit_info:
        TRAIN.main(argv)
    assert str(exit_info.value).startswith("error: ") and message in str(exit_info.value)
    assert "\n" not in str(exit_info.value)


def test_train_script_with_the_ray_sampler(tmp_path):
    proc = run_script(
        "train",
        *("--sampler", "ray", "--workers", "2", "--iterations", "2", "--meta-batch-size", "2"),
        *("--episodes-per-task", "2", "--horizon", "10", "--eval-tasks", "2"),
        *("--eval-episodes", "2", "--eval-adapt-steps", "1", "--out", str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "iter    2/2" in proc.stdout
