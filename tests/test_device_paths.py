"""Device paths that can be checked without a GPU: the benchmark, its synchronizing sampler, and
state that crosses devices (a checkpoint written by a CUDA run and resumed on CPU)."""

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from scripts_helpers import ROOT, run_script

import envs  # noqa: F401
from agents import make_agent
from metarl.samplers import MultiTaskSampler

TINY = ["--tasks", "2", "--episodes", "2", "--horizon", "5", "--iterations", "2", "--warmup", "1"]
TINY += ["--threads", "1"]  # tiny ops: on a busy 2-core machine torch's threads wait on each other


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "bench_train", ROOT / "scripts" / "bench_train.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_train"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_train_runs_as_the_readme_shows_and_reports_every_device(tmp_path):
    out = tmp_path / "bench.jsonl"
    proc = run_script("bench_train", *TINY, "--devices", "cpu", "cuda", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line[:1].isalpha()}
    assert "cpu" in rows and "cuda" in rows
    if not torch.cuda.is_available():
        assert "skipped: no CUDA device" in rows["cuda"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["device"] for r in records] == (
        ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    )
    for record in records:
        assert len(record["iterations"]) == 2
        for it in record["iterations"]:
            assert it["meta_step"] == pytest.approx(it["time_adaptation"] + it["time_outer"])
            assert it["wall"] >= it["time_sampling"] > 0


def test_bench_budget_stops_after_the_first_timed_iteration(tmp_path):
    out = tmp_path / "bench.jsonl"
    proc = run_script("bench_train", *TINY, "--budget", "1e-9", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(out.read_text())["iterations"]) == 1


def test_synced_sampler_samples_exactly_what_the_plain_one_does():
    bench = _bench_module()
    cfg = bench.parse_args(["--tasks", "2", "--episodes", "3", "--horizon", "7"])
    episodes = []
    for sync in (True, False):
        sampler = bench.make_sampler(bench.BenchConfig(**{**vars(cfg), "sync": sync}), "cpu")
        assert isinstance(sampler, bench.SyncedSampler) == sync
        agent = make_agent("maml-trpo", sampler, {"hidden_sizes": (8,)}, seed=0)
        episodes.append(
            sampler.sample(agent.policy, sampler.sample_tasks(2, np.random.default_rng(0)))
        )
        sampler.close()
    torch.testing.assert_close(episodes[0].observations, episodes[1].observations)
    torch.testing.assert_close(episodes[0].actions, episodes[1].actions)


def test_profile_step_counts_the_calls_that_cost_time_on_a_gpu():
    bench = _bench_module()
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 2, 2, horizon=5, seed=0)
    agent = make_agent("promp", sampler, {"hidden_sizes": (8,)}, seed=0)
    tasks = sampler.sample_tasks(2, np.random.default_rng(0))
    report = bench.profile_step(agent, tasks, torch.device("cpu"))
    assert report.startswith("calls in one iteration: kernel launches 0")
    assert "aten::item" in report and "Self CPU" in report


def _cuda_generator_state(seed: int, offset: int) -> torch.Tensor:
    """What a CUDA generator's ``get_state()`` returns: Philox seed and offset, 16 bytes."""
    return torch.tensor([seed, offset], dtype=torch.int64).view(torch.uint8)


def test_a_sampler_state_saved_by_a_cuda_run_loads_on_cpu():
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 2, 2, horizon=5, seed=0)
    agent = make_agent("maml-trpo", sampler, {"hidden_sizes": (8,)}, seed=0)
    state = sampler.state_dict()
    state["generator"] = _cuda_generator_state(seed=123, offset=4)
    with pytest.warns(RuntimeWarning, match="--device cuda"):
        sampler.load_state_dict(state)
    episodes = sampler.sample(agent.policy, sampler.sample_tasks(2, np.random.default_rng(0)))
    assert torch.isfinite(episodes.actions).all()


def test_bench_takes_a_training_config_file_and_flags_override_it(tmp_path):
    bench = _bench_module()
    path = ROOT / "configs" / "maml-trpo" / "halfcheetah-dir.toml"
    cfg = bench.parse_args(["--config", str(path), "--episodes", "3"])
    assert (cfg.env, cfg.agent, cfg.tasks, cfg.episodes) == (
        "metarl/HalfCheetahDir-v0",
        "maml-trpo",
        40,  # the file's meta_batch_size
        3,  # the flag
    )
    assert cfg.iterations == 5  # the benchmark's default, not the file's 300 training iterations
    settings = bench.agent_settings(cfg)
    assert settings["activation"] == "tanh" and settings["cg_iterations"] == 8
    assert "iterations" not in settings and "env" not in settings
    bad = tmp_path / "bad.toml"
    bad.write_text("max_kll = 0.1\n")
    with pytest.raises(SystemExit):
        bench.parse_args(["--config", str(bad)])
