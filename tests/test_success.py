"""info["success"] through the samplers, the training metrics and the held-out evaluation."""

import contextlib
import dataclasses
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from scripts_helpers import load_script

import envs  # noqa: F401  (registers the task envs)
from agents import make_agent
from metarl.episodes import Episodes
from metarl.evaluation import adaptation_lrs, evaluate_adaptation, write_results
from metarl.policies import make_policy
from metarl.records import StepMetrics
from metarl.samplers import MultiTaskSampler, make_sampler
from metarl.samplers.slots import step_successes
from metarl.tasks import Task, TaskEnv
from metarl.training import format_row

ENV = "test/SuccessLine-v0"
FALL = -1.5  # below this the walker falls: the episode terminates


class SuccessLine(TaskEnv, gym.Env):
    """A 1D walk that reports Meta-World's ``info["success"]`` on every step.

    The position starts at 0 and moves by the clipped action; a step succeeds when it ends at or
    beyond the task's goal, and an episode terminates when the position falls below ``FALL``;
    the reward is minus the distance to the goal.
    A reset reports success too, as a trap: the autoreset step after an episode ended must never
    count. Task: ``Task(goal=g)``, optionally with a ``family`` name.
    """

    def __init__(self, task: Mapping[str, Any] | None = None) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.set_task(task if task is not None else Task(goal=1.0))
        self._position = 0.0

    def _sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return [Task(goal=g) for g in rng.uniform(0.5, 2.5, size=n)]

    def _validate_task(self, task: Mapping[str, Any]) -> Task:
        if set(task) - {"family"} != {"goal"} or not isinstance(task["goal"], float):
            raise ValueError(f"a SuccessLine task is Task(goal=g[, family=name]), got {task!r}")
        return Task(task)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed, options=options)
        self._position = 0.0
        return np.array([0.0], dtype=np.float32), {"success": 1.0}

    def step(self, action):
        self._position += float(np.clip(np.asarray(action, dtype=np.float64)[0], -1.0, 1.0))
        success = float(self._position >= self.task["goal"])
        terminated = self._position < FALL
        obs = np.array([self._position], dtype=np.float32)
        reward = -abs(self.task["goal"] - self._position)
        return obs, reward, terminated, False, {"success": success}


if ENV not in gym.registry:
    gym.register(id=ENV, entry_point=f"{__name__}:SuccessLine", max_episode_steps=8)


def hand_successes(episodes: Episodes) -> np.ndarray:
    """``[T, E]`` Meta-World successes recomputed from the episodes' actions and masks."""
    actions = np.clip(episodes.actions[..., 0].numpy().astype(np.float64), -1.0, 1.0)
    positions = np.cumsum(actions, axis=-1)  # sequential sums, as the env adds its steps
    goals = np.array([t["goal"] for t in episodes.tasks])[:, None, None]
    live = episodes.mask.numpy() > 0
    return ((positions >= goals) & live).any(-1).astype(np.float32)


def sample_once(num_tasks=3, episodes=4, horizon=8, seed=0):
    sampler = MultiTaskSampler(ENV, num_tasks, episodes, horizon=horizon, seed=seed)
    torch.manual_seed(0)
    policy = make_policy(sampler.observation_space, sampler.action_space, (8,))
    tasks = sampler.sample_tasks(num_tasks, np.random.default_rng(seed))
    return sampler, policy, tasks


def test_step_successes_reads_gymnasiums_vector_info_masks():
    info = {"success": np.array([1.0, 1.0, 0.0]), "_success": np.array([True, False, True])}
    assert step_successes(info, 3).tolist() == [True, False, False]
    assert step_successes({"success": np.array([True, False])}, 2).tolist() == [True, False]
    assert step_successes({"distance": np.zeros(3), "_distance": np.ones(3, bool)}, 3) is None


def test_sampler_successes_equal_the_hand_computation():
    sampler, policy, tasks = sample_once()
    episodes = sampler.sample(policy, tasks)
    expected = hand_successes(episodes)
    assert episodes.successes.dtype == torch.float32
    np.testing.assert_array_equal(episodes.successes.numpy(), expected)
    # the test can fail both ways: some episodes succeed, some fail, and an episode that fell
    # before succeeding would count as a success if the autoreset step after it were read
    assert 0 < expected.sum() < expected.size
    fell = episodes.terminated.any(-1).numpy()
    assert (fell & (expected == 0)).any()
    rates = expected.mean(1)
    np.testing.assert_allclose(episodes.task_success_rates().numpy(), rates)
    assert episodes.success_rate() == pytest.approx(rates.mean())


def test_one_env_agrees_with_a_single_env_stepped_by_hand():
    sampler, policy, tasks = sample_once(num_tasks=1, episodes=1, horizon=8, seed=3)
    episodes = sampler.sample(policy, tasks)
    env = gym.make(ENV)
    env.reset(seed=0, options={"task": tasks[0]})
    succeeded = False
    for t in range(int(episodes.lengths[0, 0])):
        _, _, _, _, info = env.step(episodes.actions[0, 0, t].numpy())
        succeeded |= info["success"] == 1.0
    assert episodes.successes.tolist() == [[float(succeeded)]]


def test_envs_without_success_have_none_and_rows_without_success_keys():
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 2, 2, horizon=5, seed=0)
    agent = make_agent("maml-trpo", sampler, {"hidden_sizes": (8,)}, seed=0)
    tasks = sampler.sample_tasks(2, np.random.default_rng(0))
    episodes = sampler.sample(agent.policy, tasks)
    assert episodes.successes is None and "successes" not in episodes.tensor_fields()
    assert episodes.success_rate() is None and episodes.task_success_rates() is None
    metrics = agent.step(tasks)
    assert metrics.success_rates is None and metrics.success_after is None
    row = metrics.to_row()
    assert not [k for k in row if k.startswith("success")]
    assert "success" not in format_row({"iteration": 0, **row}, 1)


def test_episodes_helpers_carry_successes():
    sampler, policy, tasks = sample_once()
    episodes = sampler.sample(policy, tasks)
    picked = episodes.select_tasks([2, 0])
    assert torch.equal(picked.successes, episodes.successes[[2, 0]])
    assert torch.equal(episodes.to("cpu").successes, episodes.successes)
    both = Episodes.concat([episodes.select_tasks([0]), episodes.select_tasks([1, 2])], "cpu")
    assert torch.equal(both.successes, episodes.successes)
    # a part whose env reported no success counts as none; no part with them: None
    none = dataclasses.replace(episodes.select_tasks([1]), successes=None)
    mixed = Episodes.concat([episodes.select_tasks([0]), none], "cpu")
    assert mixed.successes.tolist() == [episodes.successes[0].tolist(), [0.0] * 4]
    assert Episodes.concat([none, none], "cpu").successes is None


class RecordingSampler:
    """A sampler that keeps every batch it returns."""

    def __init__(self, sampler):
        self.sampler, self.batches = sampler, []
        for name in ("device", "observation_space", "action_space", "episodes_per_task"):
            setattr(self, name, getattr(sampler, name))

    @property
    def total_steps(self):
        return self.sampler.total_steps

    @property
    def total_time(self):
        return self.sampler.total_time

    def sample(self, policy, tasks, params=None):
        self.batches.append(self.sampler.sample(policy, tasks, params))
        return self.batches[-1]


def test_step_metrics_report_success_before_and_after_adaptation():
    sampler, _, tasks = sample_once()
    recording = RecordingSampler(sampler)
    agent = make_agent("maml-trpo", recording, {"hidden_sizes": (8,), "inner_steps": 2}, seed=0)
    metrics = agent.step(tasks)
    expected = [hand_successes(b).mean(1).mean() for b in recording.batches]
    assert len(expected) == 3
    np.testing.assert_allclose(metrics.success_rates, expected, rtol=1e-6)
    row = metrics.to_row()
    assert row["success_before"] == metrics.success_rates[0] == metrics.success_before
    assert row["success_after"] == metrics.success_rates[-1] == metrics.success_after
    line = format_row({"iteration": 0, **row}, 1)
    assert f"success {expected[-1]:.2f}" in line


def test_to_row_leaves_out_missing_success():
    base = StepMetrics(returns=[1.0, 2.0], loss_before=0.0)
    assert "success_before" not in base.to_row()
    row = StepMetrics(returns=[1.0, 2.0], loss_before=0.0, success_rates=[0.25, 0.75]).to_row()
    assert (row["success_before"], row["success_after"]) == (0.25, 0.75)


def run_script_in_process(name: str, *argv: str) -> str:
    """``scripts/<name>.py ARGV`` in this process (it knows the test env); its stdout."""
    threads = torch.get_num_threads()  # the scripts set torch's thread count
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = load_script(name).main(list(argv))
    finally:
        torch.set_num_threads(threads)
    assert code == 0, out.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def success_run(tmp_path_factory):
    """A two-iteration run on the test env, and its progress lines."""
    out = tmp_path_factory.mktemp("runs")
    stdout = run_script_in_process(
        "train",
        *("--env", ENV, "--iterations", "2", "--meta-batch-size", "2"),
        *("--episodes-per-task", "3", "--hidden-sizes", "8", "--eval-tasks", "2"),
        *("--eval-episodes", "2", "--eval-adapt-steps", "1", "--threads", "1"),
        *("--out", str(out)),
    )
    (run_dir,) = out.iterdir()
    return run_dir, stdout


def test_train_writes_success_to_metrics_and_the_held_out_evaluation(success_run):
    run_dir, stdout = success_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        for key in ("success_before", "success_after"):
            # the mean over 2 tasks of each task's fraction of 3 episodes: a multiple of 1/6
            sixths = row[key] * 6
            assert 0.0 <= row[key] <= 1.0 and math.isclose(sixths, round(sixths), abs_tol=1e-6)
    progress = [line for line in stdout.splitlines() if line.startswith("iter")]
    assert len(progress) == 2
    for row, line in zip(rows, progress, strict=True):
        assert f"success {row['success_after']:.2f}" in line
    evaluation = json.loads((run_dir / "eval.json").read_text())
    per_task = np.array(evaluation["per_task_successes"])
    assert per_task.shape == (2, 2)
    assert [s["success_rate"] for s in evaluation["steps"]] == pytest.approx(per_task.mean(1))
    history = json.loads((run_dir / "eval_history.jsonl").read_text())
    assert "success_rate" in history["steps"][0] and "per_task_successes" not in history


def test_evaluate_plot_and_summarize_scripts_show_success(success_run, tmp_path):
    run_dir, _ = success_run
    args = ("--tasks", "2", "--episodes", "2", "--adapt-steps", "1", "--out", str(tmp_path))
    stdout = run_script_in_process("evaluate", str(run_dir), *args)
    result = json.loads((tmp_path / "results.json").read_text())
    assert [s["success_rate"] for s in result["steps"]] == pytest.approx(
        np.mean(result["per_task_successes"], axis=1)
    )
    assert "success" in stdout.splitlines()[1]  # the table's header
    assert (
        (tmp_path / "results.csv")
        .read_text()
        .startswith("step,mean_return,ci95,success_rate,success_ci95\n")
    )
    assert (tmp_path / "returns.png").is_file()
    run_script_in_process("plot", str(run_dir), "--out", str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").is_file()
    stdout = run_script_in_process("summarize", str(run_dir))
    evaluation = json.loads((run_dir / "eval.json").read_text())
    rate = np.mean(evaluation["per_task_successes"][1])
    assert "step 1 success rate: " in stdout and f"{rate:.2f} ± " in stdout


def test_evaluation_reports_success_per_step_and_per_family(tmp_path):
    tasks = [Task(family="far", goal=2.5), Task(family="near", goal=0.5)]
    tasks.append(Task(family="near", goal=1.0))
    sampler = RecordingSampler(MultiTaskSampler(ENV, 3, 4, horizon=8, seed=1))
    agent = make_agent("maml-trpo", sampler, {"hidden_sizes": (8,)}, seed=0)
    result = evaluate_adaptation(agent, sampler, tasks, adaptation_lrs(0.1, 2))
    expected = np.stack([hand_successes(b).mean(1) for b in sampler.batches])
    np.testing.assert_array_equal(result.per_task_successes, expected)
    assert result.families == ["far", "near", "near"]
    rows = result.rows()
    assert [r["success_rate"] for r in rows] == pytest.approx(expected.mean(1))
    assert rows[0].keys() == {"step", "mean_return", "ci95", "success_rate", "success_ci95"}
    by_family = result.family_rows()
    assert list(by_family) == ["far", "near"]
    assert [r["success_rate"] for r in by_family["far"]] == pytest.approx(expected[:, 0])
    assert [r["success_rate"] for r in by_family["near"]] == pytest.approx(expected[:, 1:].mean(1))
    assert [r["mean_return"] for r in by_family["near"]] == pytest.approx(
        result.per_task_returns[:, 1:].mean(1)
    )
    summary = result.to_json()
    assert summary["families"]["near"]["tasks"] == 2
    assert summary["per_task_families"] == ["far", "near", "near"]
    assert "per family" in result.table() and "success" in result.table()
    write_results(result, tmp_path, {}, tasks)
    assert (
        (tmp_path / "results.csv")
        .read_text()
        .startswith("step,mean_return,ci95,success_rate,success_ci95")
    )
    lines = (tmp_path / "results_by_family.csv").read_text().splitlines()
    assert lines[0].startswith("family,step,") and len(lines) == 1 + 2 * 3


def test_ray_sampler_carries_the_same_successes():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        local, policy, tasks = sample_once()
        remote = make_sampler("ray", ENV, 3, 4, horizon=8, seed=0, workers=2)
        try:
            a, b = local.sample(policy, tasks), remote.sample(policy, tasks)
        finally:
            remote.close()
    finally:
        ray.shutdown()
    assert a.successes is not None and a.tensor_fields() == b.tensor_fields()
    assert torch.equal(a.successes, b.successes) and torch.equal(a.mask, b.mask)
    # Every field, padding included (padding is zeros whichever sampler ran the slots).
    for name in a.tensor_fields():
        assert torch.equal(getattr(a, name), getattr(b, name)), name
