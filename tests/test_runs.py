"""Runs that survive: resume, signals, corrupt checkpoints, non-finite steps; evaluate and plot."""

import json
import math
import signal

import numpy as np
import pytest
import torch
from scripts_helpers import interrupt_training, load_script, metrics, run_script

import agents.maml_trpo
import envs  # noqa: F401
from agents.maml_trpo import MAMLTRPO, MAMLTRPOConfig
from metarl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metarl.records import Rejection
from metarl.samplers import MultiTaskSampler

SMALL = [
    "--meta-batch-size",
    "3",
    "--episodes-per-task",
    "3",
    "--horizon",
    "15",
    "--eval-tasks",
    "0",
    "--checkpoint-every",
    "1",
    # The default thread count follows the machine's load (metarl.threads) and float sums depend
    # on it; these tests compare runs bit for bit, which holds for the same thread counts.
    "--threads",
    "1",
]


@pytest.mark.parametrize("agent", ["maml-trpo", "promp"])
def test_two_plus_resume_two_equals_four_straight(tmp_path, agent):
    straight, split = tmp_path / "straight", tmp_path / "split"
    proc = run_script(
        "train", *SMALL, "--agent", agent, "--iterations", "4", "--out", str(straight)
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_script("train", *SMALL, "--agent", agent, "--iterations", "2", "--out", str(split))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = split.iterdir()
    proc = run_script("train", "--resume", str(run_dir), "--iterations", "4")
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout
    expected = metrics(next(straight.iterdir()))
    assert len(expected) == 4
    assert metrics(run_dir) == expected


def test_sigint_saves_and_the_run_resumes(tmp_path):
    args = [*SMALL, "--iterations", "400", "--out", str(tmp_path)]
    code, err = interrupt_training(args, "iter    2/")
    assert code == 130, err
    assert "interrupted: saved" in err and "--resume" in err
    (run_dir,) = tmp_path.iterdir()
    done = load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"]
    assert done >= 2
    resumed = run_script("train", "--resume", str(run_dir), "--iterations", str(done + 1))
    assert resumed.returncode == 0, resumed.stderr
    assert [r["iteration"] for r in metrics(run_dir)] == list(range(done + 1))


def test_sigterm_also_saves(tmp_path):
    args = [*SMALL, "--iterations", "400", "--out", str(tmp_path)]
    code, err = interrupt_training(args, "iter    1/", signal.SIGTERM)
    assert code == 130 and "interrupted: saved" in err


def test_a_signal_during_the_run_files_writes_waits_for_them(tmp_path, monkeypatch, capsys):
    # A SIGTERM that lands while an iteration's row is written, and a Ctrl-C during every
    # checkpoint save (the one on the way out included): the writes finish, the run stops with
    # the iteration whose row it wrote, saved. Before, the signal raised inside the write (the
    # saved iteration fell behind the rows; a save could hang on a writer's lock).
    from metarl.runlog import RunDir

    log_metrics, save = RunDir.log_metrics, RunDir.save

    def log_then_signal(self, row):
        log_metrics(self, row)
        signal.raise_signal(signal.SIGTERM)  # handled before log_metrics returns, unless held

    def save_with_ctrl_c(self, *args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(RunDir, "log_metrics", log_then_signal)
    monkeypatch.setattr(RunDir, "save", save_with_ctrl_c)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    train = load_script("train")
    assert train.main([*SMALL, "--iterations", "5", "--out", str(tmp_path)]) == 130
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    (run_dir,) = tmp_path.iterdir()
    assert len(metrics(run_dir)) == 1
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 1
    assert "interrupted: saved" in capsys.readouterr().err


def test_an_evaluation_cut_short_runs_again_when_the_run_resumes(tmp_path, monkeypatch):
    # Ctrl-C during the held-out evaluation after iteration 2 (its checkpoint is written): the
    # resumed run evaluates iteration 2 before going on; an evaluation row logged after the
    # checkpoint it resumes from (a crash between the two) is dropped, as metric rows are.
    evaluate, calls = MAMLTRPO.evaluate, []

    def interrupted_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(MAMLTRPO, "evaluate", interrupted_once)
    train = load_script("train")
    evals = ["--eval-tasks", "2", "--eval-episodes", "2", "--eval-every", "2"]
    args = [*SMALL, *evals, "--eval-adapt-steps", "1", "--iterations", "4", "--out", str(tmp_path)]
    assert train.main(args) == 130
    (run_dir,) = tmp_path.iterdir()
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 2
    history = run_dir / "eval_history.jsonl"
    assert not history.exists()
    history.write_text(json.dumps({"iteration": 3}) + "\n")  # as if written, then a crash
    assert train.main(["--resume", str(run_dir)]) == 0
    rows = [json.loads(line) for line in history.read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [2, 4]
    assert len(calls) == 3


def test_corrupt_checkpoint_names_the_file_and_the_last_good_one(tmp_path):
    good = save_checkpoint(tmp_path / "iter_000001.pt", {"agent": {"x": torch.ones(2)}})
    bad = tmp_path / "last.pt"
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(
        CheckpointError, match=r"last\.pt is corrupt.*last good checkpoint is .*iter_000001\.pt"
    ):
        load_checkpoint(bad)
    assert load_checkpoint(good)["agent"]["x"].sum() == 2


def test_resume_from_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    assert run_script("train", *SMALL, "--iterations", "1", "--out", str(tmp_path)).returncode == 0
    (run_dir,) = tmp_path.iterdir()
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    proc = run_script("train", "--resume", str(run_dir), "--iterations", "2")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "last.pt is corrupt" in proc.stderr and "iter_000001.pt" in proc.stderr


def test_checkpoint_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"agent": Evil()}, path)
    with pytest.raises(CheckpointError, match="corrupt or not a metarl checkpoint"):
        load_checkpoint(path)


def test_resume_and_evaluate_reject_what_is_not_a_run(tmp_path):
    proc = run_script("train", "--resume", str(tmp_path / "nope"))
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    proc = run_script("evaluate", str(tmp_path))
    assert proc.returncode != 0 and "not a run folder" in proc.stderr


def test_non_finite_loss_never_reaches_the_parameters(monkeypatch):
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 2, 2, horizon=10, seed=0)
    agent = MAMLTRPO(sampler, MAMLTRPOConfig(hidden_sizes=(8,)), seed=0)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    real = agents.maml_trpo.surrogate_loss
    monkeypatch.setattr(agents.maml_trpo, "surrogate_loss", lambda *a: real(*a) * float("nan"))
    metrics = agent.step(sampler.sample_tasks(2, np.random.default_rng(0)))
    assert not metrics.step_accepted and metrics.rejected is Rejection.NON_FINITE
    for k, v in agent.policy.state_dict().items():
        assert torch.equal(v, before[k])


def test_repeated_non_finite_steps_stop_the_run_with_a_clear_message(tmp_path):
    args = ["--inner-lr", "1e38", "--max-rejected", "2", "--iterations", "5"]
    proc = run_script("train", *SMALL, *args, "--out", str(tmp_path))
    assert proc.returncode == 1
    assert (
        "2 iterations in a row had non-finite values" in proc.stderr and "--resume" in proc.stderr
    )
    (run_dir,) = tmp_path.iterdir()
    rows = metrics(run_dir)
    assert len(rows) == 2 and all(r["rejected_reason"] for r in rows)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 2


EVAL_SMALL = ["--tasks", "3", "--episodes", "2"]


def test_evaluate_and_plot_scripts(tmp_path):
    proc = run_script("train", *SMALL, "--iterations", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    proc = run_script(
        "evaluate",
        str(run_dir),
        *EVAL_SMALL,
        "--adapt-steps",
        "2",
        "--video",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    out = run_dir / "eval" / "last-seed0"
    result = json.loads((out / "results.json").read_text())
    assert [s["step"] for s in result["steps"]] == [0, 1, 2]
    assert all(math.isfinite(s["mean_return"]) for s in result["steps"])
    assert (out / "results.csv").read_text().startswith("step,mean_return,ci95")
    assert (out / "tasks.json").is_file() and (out / "task0.gif").is_file()
    # the same tasks can be reused, e.g. by another learner
    again = run_script(
        "evaluate",
        str(run_dir),
        *EVAL_SMALL,
        "--adapt-steps",
        "0",
        "--tasks-file",
        str(out / "tasks.json"),
        "--out",
        str(tmp_path / "again"),
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again" / "tasks.json").read_text()) == json.loads(
        (out / "tasks.json").read_text()
    )
    proc = run_script("plot", str(run_dir), "--out", str(tmp_path / "curves.png"))
    if "matplotlib" in proc.stderr:
        pytest.skip("matplotlib not installed")
    assert proc.returncode == 0 and (tmp_path / "curves.png").stat().st_size > 1000


def test_resuming_a_run_saved_with_a_removed_setting_names_it_and_goes_on(tmp_path, capsys):
    train = load_script("train")
    assert train.main([*SMALL, "--iterations", "1", "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    config["agent_config"]["fisher_subsample"] = 0.2  # a setting of an earlier version
    (run_dir / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--iterations", "2"]) == 0
    err = capsys.readouterr().err
    assert "no longer has; ignoring fisher_subsample=0.2" in err
    assert len(metrics(run_dir)) == 2
