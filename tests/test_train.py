"""MAML-TRPO end to end: trust region respected, determinism, and the script as users run it."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scripts_helpers import load_script, metrics, run_script

import envs  # noqa: F401
from agents.maml_trpo import MAMLTRPO, MAMLTRPOConfig, surrogate_loss
from metarl.maml import detach_params
from metarl.samplers import MultiTaskSampler

ROOT = Path(__file__).resolve().parents[1]
TRAIN = load_script("train")
TINY = [
    "--iterations",
    "2",
    "--meta-batch-size",
    "3",
    "--episodes-per-task",
    "4",
    "--horizon",
    "20",
    "--eval-tasks",
    "2",
    "--eval-episodes",
    "2",
    "--eval-adapt-steps",
    "1",
]


@pytest.mark.parametrize(
    "env_id", ["metarl/Particles2D-v0", "metarl/HalfCheetahDir-v0", "metarl/HalfCheetahVel-v0"]
)
def test_step_respects_the_trust_region_and_improves_the_surrogate(env_id):
    """The KL and the surrogate after an accepted step, recomputed outside the agent."""
    sampler = MultiTaskSampler(env_id, 4, 5, horizon=30, seed=0)
    # tanh: this test is about the trust region, and a tiny ReLU net's line search can (rarely)
    # find no improving step, which is a legitimate rejection
    config = MAMLTRPOConfig(hidden_sizes=(16, 16), activation="tanh")
    agent = MAMLTRPO(sampler, config, seed=0)
    batches = []
    collect = agent.collect
    agent.collect = lambda tasks: batches.append(collect(tasks)) or batches[-1]
    rng = np.random.default_rng(0)
    for _ in range(2):
        metrics = agent.step(sampler.sample_tasks(4, rng))
        assert metrics.step_accepted
        batch = batches[-1]
        new = agent.readapt(agent.policy.params(), batch.steps, create_graph=False)
        with torch.no_grad():
            kl = agent._kl(detach_params(batch.adapted), new, batch.post).item()
            old_logp = agent.log_probs(batch.post, batch.adapted)
            loss_after = surrogate_loss(
                agent.log_probs(batch.post, new), old_logp, batch.post_advantages, batch.post.mask
            ).item()
        assert 0 < kl <= config.max_kl
        assert kl == pytest.approx(metrics.kl, rel=1e-4)
        assert loss_after < metrics.loss_before
        assert loss_after == pytest.approx(metrics.loss_after, rel=1e-4)
        assert math.isfinite(metrics.return_before) and math.isfinite(metrics.return_after)


def test_bad_hyperparameter_is_rejected():
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 2, 2, horizon=5)
    with pytest.raises(ValueError, match="--max-kl"):
        MAMLTRPO(sampler, MAMLTRPOConfig(max_kl=0.0))


def _run(tmp_path, *extra):
    return run_script("train", *TINY, "--out", str(tmp_path), *extra)


def test_train_script_runs_as_in_the_readme_and_leaves_a_run_folder(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    assert "Particles2D" in run_dir.name and "maml-trpo" in run_dir.name
    for name in (
        "config.json",
        "metrics.jsonl",
        "train_tasks.jsonl",
        "eval.json",
        "test_tasks.json",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert len(metrics(run_dir)) == 2
    assert "iter    2/2" in proc.stdout and "held-out evaluation" in proc.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["agent_config"]["inner_lr"] == 0.1 and config["train"]["seed"] == 0
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert [s["step"] for s in evaluation["steps"]] == [0, 1]
    assert all(math.isfinite(s["mean_return"]) for s in evaluation["steps"])


def test_periodic_held_out_evaluation(tmp_path):
    assert _run(tmp_path, "--eval-every", "1").returncode == 0
    (run_dir,) = tmp_path.iterdir()
    lines = (run_dir / "eval_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2]
    assert json.loads((run_dir / "eval.json").read_text())["iteration"] == 2


def test_same_seed_same_metrics(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    # same seed, same run, for the same thread counts (the default follows the machine's load)
    assert _run(a, "--eval-tasks", "0", "--threads", "1").returncode == 0
    assert _run(b, "--eval-tasks", "0", "--threads", "1").returncode == 0
    ma, mb = metrics(next(a.iterdir())), metrics(next(b.iterdir()))
    assert ma == mb
    assert ma[0]["return_before"] != ma[1]["return_before"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "metarl/Nope-v0"], "unknown env id 'metarl/Nope-v0'; registered task envs:"),
        (["--agent", "reptile"], "unknown agent 'reptile'"),
        (["--meta-batch-size", "0"], "--meta-batch-size must be >= 1"),
        (["--inner-lr", "-1"], "--inner-lr must be positive"),
        (["--env", "CartPole-v1"], "is not a task env"),
        (["--sampler", "nope"], "unknown sampler 'nope'; choose one of: local"),
        (["--max-kl", "0"], "--max-kl must be positive"),
        (["--agent", "promp", "--clip-eps", "2"], "--clip-eps must be in [0, 1]"),
        (["--activation", "gelu"], "--activation must be tanh or relu"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(tmp_path, args, message):
    # in-process: main(argv) exits with the message, before any run folder is made
    with pytest.raises(SystemExit) as exit_info:
        TRAIN.main([*TINY, "--out", str(tmp_path), *args])
    assert str(exit_info.value).startswith("error: ") and message in str(exit_info.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
