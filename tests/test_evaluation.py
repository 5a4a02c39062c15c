"""Held-out evaluation: the paper's learning-rate schedule, one task rule, evaluate.py's flags."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scripts_helpers import run_script

import envs  # noqa: F401
from agents import make_agent
from metarl.evaluation import (
    adaptation_lrs,
    confidence_interval,
    evaluate_adaptation,
    held_out_tasks,
)
from metarl.samplers import MultiTaskSampler

SMALL = ["--meta-batch-size", "3", "--episodes-per-task", "3", "--horizon", "15"]


def test_later_steps_take_half_the_first_rate():
    assert adaptation_lrs(0.1, 3) == [0.1, 0.05, 0.05]
    assert adaptation_lrs(0.1, 2, later_scale=1.0) == [0.1, 0.1]
    assert adaptation_lrs(0.1, 0) == []
    rates = adaptation_lrs({"w": torch.tensor([0.2, 0.4])}, 2)
    torch.testing.assert_close(rates[1]["w"], torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="scale must be positive"):
        adaptation_lrs(0.1, 2, later_scale=0.0)


def test_confidence_interval_is_the_normal_95_percent_half_width():
    values = np.array([1.0, 2.0, 4.0, 7.0])
    expected = 1.96 * np.std(values, ddof=1) / 2.0
    assert confidence_interval(values) == pytest.approx(expected)
    assert confidence_interval(np.array([3.0])) == 0.0


class RecordingAgent:
    """Records the learning rate of every adaptation call."""

    def __init__(self, agent):
        self.agent, self.policy, self.lrs = agent, agent.policy, []

    def adapt(self, episodes, params=None, lr=None):
        self.lrs.append(lr)
        return self.agent.adapt(episodes, params, lr)


def test_each_step_samples_fresh_episodes_with_the_adapted_policy():
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 2, 3, horizon=10, seed=0)
    agent = make_agent("maml-trpo", sampler, {"hidden_sizes": (8,)}, seed=0)
    recorder = RecordingAgent(agent)
    tasks = held_out_tasks(sampler, 2, seed=0)
    result = evaluate_adaptation(recorder, sampler, tasks, adaptation_lrs(0.1, 2))
    assert recorder.lrs == [0.1, 0.05]
    assert result.per_task_returns.shape == (3, 2)
    assert len({tuple(r) for r in result.per_task_returns}) == 3  # new episodes every step
    assert [r["step"] for r in result.rows()] == [0, 1, 2]
    assert result.to_json()["lrs"] == [0.1, 0.05]
    # Particles2D reports no success and its tasks no family: nothing new in the results
    assert result.per_task_successes is None and result.families is None
    assert list(result.rows()[0]) == ["step", "mean_return", "ci95"]
    assert list(result.to_json()) == [
        "tasks",
        "episodes_per_task",
        "lrs",
        "steps",
        "per_task_returns",
    ]
    # Meta-SGD: the learned rates, detached, scaled for later steps
    agent = make_agent("maml-trpo", sampler, {"hidden_sizes": (8,), "meta_sgd": True}, seed=0)
    result = agent.evaluate(sampler, tasks, 2)
    assert result.to_json()["lrs"] == ["learned", "learned"]


def test_held_out_tasks_differ_from_training_and_depend_only_on_the_seed():
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 2, 1, horizon=5, seed=0)
    a, b = held_out_tasks(sampler, 5, seed=3), held_out_tasks(sampler, 5, seed=3)
    assert a == b and held_out_tasks(sampler, 5, seed=4) != a
    train = sampler.sample_tasks(5, np.random.default_rng([3, 1]))
    assert train != a


def test_evaluate_script_uses_the_runs_tasks_and_the_later_lr_scale_without_lr(tmp_path):
    proc = run_script(
        "train", *SMALL, "--iterations", "1", "--eval-tasks", "3", "--eval-adapt-steps", "2",
        "--eval-episodes", "2", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    in_training = json.loads((run_dir / "eval.json").read_text())
    assert in_training["lrs"] == [0.1, 0.05]
    proc = run_script(
        "evaluate", str(run_dir), "--tasks", "3", "--episodes", "2", "--adapt-steps", "3",
        "--later-lr-scale", "0.25", "--out", str(tmp_path / "eval"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert result["lrs"] == [0.1, 0.025, 0.025]
    # the same held-out tasks as the run's own evaluation
    assert json.loads((tmp_path / "eval" / "tasks.json").read_text()) == json.loads(
        (run_dir / "test_tasks.json").read_text()
    )
    # and, at the same lrs, steps 0..2 reproduce the run's own evaluation figures
    proc = run_script(
        "evaluate", str(run_dir), "--tasks", "3", "--episodes", "2", "--adapt-steps", "2",
        "--out", str(tmp_path / "same"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    same = json.loads((tmp_path / "same" / "results.json").read_text())
    np.testing.assert_allclose(same["per_task_returns"], in_training["per_task_returns"])


def test_summarize_pools_the_runs_of_an_experiment(tmp_path):
    for seed in ("0", "1"):
        proc = run_script(
            "train", *SMALL, "--iterations", "1", "--eval-tasks", "3", "--eval-adapt-steps", "1",
            "--eval-episodes", "2", "--seed", seed, "--out", str(tmp_path),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    runs = sorted(str(p) for p in tmp_path.iterdir())
    results = [json.loads((Path(r) / "eval.json").read_text()) for r in runs]
    pooled = np.concatenate([np.array(r["per_task_returns"]) for r in results], axis=1)
    proc = run_script("summarize", *runs)
    assert proc.returncode == 0, proc.stderr
    assert "2 runs (seeds 0,1), 6 task evaluations" in proc.stdout
    assert f"{pooled[1].mean():.1f} ± {confidence_interval(pooled[1]):.1f}" in proc.stdout
    proc = run_script("summarize", *runs, "--markdown")
    assert proc.stdout.startswith(f"| {pooled[0].mean():.1f} ± ") and "| 0,1 | 1 |" in proc.stdout
    proc = run_script("summarize", str(tmp_path))
    assert proc.returncode == 2 and "not a run folder" in proc.stderr
    proc = run_script("summarize", *runs, "--eval", "last-seed0")
    assert proc.returncode == 2 and "run scripts/evaluate.py on it" in proc.stderr
    for run in runs:  # held-out seed 0 (evaluate.py's default) for every run
        args = ["--tasks", "3", "--episodes", "2", "--adapt-steps", "1"]
        assert run_script("evaluate", run, *args).returncode == 0
    proc = run_script("summarize", *runs, "--eval", "last-seed0")
    assert proc.returncode == 0 and "2 runs (seeds 0,1), 6 task evaluations" in proc.stdout
    # for the seed-0 run these are the same tasks and settings as its own evaluation
    own = run_script("summarize", runs[0]).stdout.splitlines()[1:3]
    assert run_script("summarize", runs[0], "--eval", "last-seed0").stdout.splitlines()[1:3] == own


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON"),
        ('[{"goal": [0.1, 0.2]}, {"goal": [3.0, 0.0]}]', "is outside"),
        ('[{"velocity": 1.0}]', "a Particles2D task is Task(goal=(x, y))"),
    ],
)
def test_a_bad_tasks_file_is_one_line_naming_the_file(tmp_path, content, message):
    proc = run_script(
        "train", *SMALL, "--iterations", "1", "--eval-tasks", "0", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    bad = tmp_path / "tasks.json"
    bad.write_text(content)
    proc = run_script("evaluate", str(run_dir), "--tasks-file", str(bad), "--adapt-steps", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"--tasks-file {bad}" in proc.stderr and message in proc.stderr


def test_the_held_out_sampler_is_reused_from_the_same_start():
    """Every evaluation of a run sees what a freshly made held-out sampler would."""
    from metarl.evaluation import HeldOut, held_out_sampler, held_out_tasks
    from metarl.policies import make_policy

    sampler = MultiTaskSampler("metarl/HalfCheetahDir-v0", 2, 2, horizon=6, seed=1)
    policy = make_policy(sampler.observation_space, sampler.action_space, (8,))
    held_out = HeldOut(sampler, 3, 2, seed=4)
    tasks, first = held_out.fresh()
    a = first.sample(policy, tasks)
    tasks_again, second = held_out.fresh()
    b = second.sample(policy, tasks_again)
    new = held_out_sampler(sampler, 3, 2, seed=4)
    c = new.sample(policy, held_out_tasks(sampler, 3, seed=4))
    assert second is first and tasks_again == tasks
    for name in a.tensor_fields():
        assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert torch.equal(getattr(a, name), getattr(c, name)), name
    held_out.close()
    new.close()
    sampler.close()
