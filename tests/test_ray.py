"""The Ray sampler: the local sampler's episodes, bit for bit, from actors that may die."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from scripts_helpers import load_script, run_script

import envs  # noqa: F401  (registers the task envs)
from metarl.policies import make_policy
from metarl.samplers import MultiTaskSampler, make_sampler

ray = pytest.importorskip("ray")

TRAIN = load_script("train")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
        # success flags, and no worker processes inside the actors
        pytest.param(
            "metarl/ML1-reach-v0",
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


SLOW_ENV = (
    "import time\n"
    "import gymnasium\n"
    "from envs.particles import Particles2DEnv\n\n"
    "class SlowParticles(Particles2DEnv):\n"
    "    def step(self, action):\n"
    "        time.sleep(0.02)\n"
    "        return super().step(action)\n\n"
    "gymnasium.register(id='mine/SlowParticles-v0', "
    "entry_point='slow_ray_envs:SlowParticles', max_episode_steps=60)\n"
)


def test_an_actor_killed_mid_call_is_replaced_and_the_call_completes(tmp_path, monkeypatch):
    # each call takes 60 steps x 20 ms: the kill lands while the actors are stepping
    (tmp_path / "slow_ray_envs.py").write_text(SLOW_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    env_id = "slow_ray_envs:mine/SlowParticles-v0"
    local = MultiTaskSampler(env_id, 2, 1, seed=3)
    remote = make_sampler("ray", env_id, 2, 1, seed=3, workers=2)
    try:
        policy = make_policy(local.observation_space, local.action_space, (8,))
        tasks = local.sample_tasks(2, np.random.default_rng(0))
        pid = remote.actor_pids()[1]
        result = {}
        call = threading.Thread(target=lambda: result.update(eps=remote.sample(policy, tasks)))
        call.start()
        time.sleep(0.6)
        assert call.is_alive(), "the call ended before the kill: make the env slower"
        os.kill(pid, signal.SIGKILL)
        call.join(timeout=120)
        assert_same(local.sample(policy, tasks), result["eps"])
        assert pid not in remote.actor_pids()
    finally:
        remote.close()
        sys.modules.pop("slow_ray_envs", None)


def descendants(pid: int) -> set[int]:
    """The process ids under ``pid`` (children, their children, ...)."""
    ps = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in ps.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return not state.stdout.strip().startswith("Z")


def test_ctrl_c_saves_the_run_and_shuts_its_actors_down(tmp_path):
    cmd = [sys.executable, "scripts/train.py", "--sampler", "ray", "--workers", "2"]
    cmd += ["--iterations", "300", "--meta-batch-size", "2", "--episodes-per-task", "2"]
    cmd += ["--horizon", "10", "--eval-tasks", "0", "--out", str(tmp_path)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in proc.stdout:
        if line.startswith("iter    1/"):
            break
    ray_processes = descendants(proc.pid)  # its Ray: GCS, raylet, the actors' workers
    assert len(ray_processes) >= 3
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted: saved" in err, err
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "checkpoints" / "last.pt").exists()
    deadline = time.time() + 30
    while any(alive(p) for p in ray_processes) and time.time() < deadline:
        time.sleep(0.5)
    assert not [p for p in ray_processes if alive(p)]


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


def test_evaluate_a_local_run_on_ray_gives_the_local_figures(tmp_path):
    proc = run_script(
        "train",
        *("--iterations", "1", "--meta-batch-size", "2", "--episodes-per-task", "2"),
        *("--horizon", "10", "--eval-tasks", "0", "--threads", "1", "--out", str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    evaluate = load_script("evaluate")
    common = [str(run_dir), "--tasks", "3", "--episodes", "2", "--adapt-steps", "1"]
    assert evaluate.main([*common, "--out", str(tmp_path / "local")]) == 0
    on_ray = ["--sampler", "ray", "--workers", "2", "--out", str(tmp_path / "ray")]
    assert evaluate.main([*common, *on_ray]) == 0
    local, remote = (
        json.loads((tmp_path / name / "results.json").read_text()) for name in ("local", "ray")
    )
    assert local["per_task_returns"] == remote["per_task_returns"]
