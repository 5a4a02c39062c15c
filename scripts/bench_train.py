"""Seconds per meta-iteration, split into sampling / adaptation / outer step, per device.

    python scripts/bench_train.py                                   # Particles2D, 20 x 20 x 100
    python scripts/bench_train.py --env metarl/HalfCheetahDir-v0 --tasks 40 --devices cpu cuda
    python scripts/bench_train.py --config configs/maml-trpo/halfcheetah-dir.toml  # as trained

``--config`` takes a training config file: its env, agent, sizes and agent settings (the rest of a
training file, such as iterations, is not used); flags given too override it.

Runs the same agent code as ``scripts/train.py`` (warm-up iterations, then timed ones) and prints
one row per device: the median seconds of the whole iteration, of each phase as the agent reports
it (``time_sampling``, ``time_adaptation``, ``time_outer``), and of the meta-step (adaptation +
outer step, sampling excluded).

CUDA runs asynchronously, so a phase timed on the host ends when its last kernel is queued, not when
it ran. The agents' phase boundaries mostly wait for the device already (a ``.item()`` ends the
adaptation and the outer step; sampling copies every action to the host), except at the start of a
sampling call: adaptation kernels still queued then finish inside sampling's timer. With ``--sync``
(the default) this benchmark's sampler waits for the device before each sampling call, so those
kernels count as adaptation; training itself never waits. ``--profile FILE`` appends, per CUDA
device, a torch profiler table of one more iteration (kernels, launches, copies, waits).

Figures depend on the machine and on what else runs on it; the header line says which.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

import envs  # noqa: F401
from agents import AGENTS, MetaAgent, get_agent
from metarl.cli import (
    ConfigFileError,
    add_dataclass_arguments,
    dataclass_from_args,
    load_config_file,
)
from metarl.episodes import Episodes
from metarl.policies import Policy
from metarl.samplers import MultiTaskSampler
from metarl.tasks import Task
from metarl.training import TrainConfig

PHASES = ("wall", "time_sampling", "time_adaptation", "time_outer", "meta_step")


@dataclasses.dataclass
class BenchConfig:
    """Benchmark settings.

    Attributes:
        env: task env id.
        agent: learner (maml-trpo, maml-dice or promp).
        tasks: tasks per meta-iteration.
        episodes: episodes per task.
        horizon: steps per episode (None: the env's time limit).
        iterations: timed iterations per device.
        warmup: untimed iterations first, per device (the first CUDA iteration loads kernels).
        budget: seconds per device after which no further timed iteration starts (at least one
            always runs); 0 for no limit.
        threads: torch CPU threads for adaptation and the outer step (0: torch's default);
            sampling on CPU uses one torch thread, next to MuJoCo's own threads.
        mujoco_threads: worker threads of a batched MuJoCo vector env (0: one per CPU core).
        devices: devices to compare, e.g. cpu cuda.
        sync: wait for the CUDA device before each sampling call, so that adaptation kernels still
            queued are timed as adaptation rather than sampling.
        profile: append a torch profiler table of one more iteration per CUDA device (where the
            time goes: kernels, launches, copies, waits) to this file.
        json: append one JSON line per device (config, medians, every iteration) to this file.
        config: a training config file (configs/<agent>/<env>.toml) to take the env, agent, sizes
            and agent settings from.
    """

    env: str = "metarl/Particles2D-v0"
    agent: str = "maml-trpo"
    tasks: int = 20
    episodes: int = 20
    horizon: int | None = None
    iterations: int = 5
    warmup: int = 2
    budget: float = 0.0
    threads: int = 0
    mujoco_threads: int = 0
    devices: tuple[str, ...] = ("cpu",)
    sync: bool = True
    profile: str | None = None
    json: str | None = None
    config: str | None = None


# The dataclasses whose fields a training config file may hold.
TRAINING_FILE_CLASSES = [TrainConfig, *(config_cls for _, config_cls in AGENTS.values())]
# Training-file keys that name a benchmark setting differently; None: a training setting that is
# not the benchmark's (a run's 300 iterations are not 300 timed ones).
FROM_TRAINING = {"meta_batch_size": "tasks", "episodes_per_task": "episodes", "iterations": None}


class SyncedSampler(MultiTaskSampler):
    """A sampler that waits for its CUDA device before sampling (benchmarks only).

    Work queued before the call (the adaptation's kernels) then finishes outside the sampling
    timer, so the agent's phase split is the device's, not the host's.
    """

    def sample(
        self,
        policy: Policy,
        tasks: Sequence[Task],
        params: Mapping[str, Tensor] | None = None,
    ) -> Episodes:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return super().sample(policy, tasks, params)


def make_sampler(cfg: BenchConfig, device: str) -> MultiTaskSampler:
    """The sampler of one benchmark run (synchronizing when ``cfg.sync``)."""
    sampler_cls = SyncedSampler if cfg.sync else MultiTaskSampler
    vector_kwargs = {"num_threads": cfg.mujoco_threads} if cfg.mujoco_threads else None
    return sampler_cls(
        cfg.env,
        cfg.tasks,
        cfg.episodes,
        horizon=cfg.horizon,
        device=device,
        seed=0,
        vector_kwargs=vector_kwargs,
        normalize_actions=True,  # as train.py's default, so the agent sees the same data
    )


def timed_step(agent: MetaAgent, tasks: Sequence[Task], device: torch.device) -> dict[str, float]:
    """One meta-iteration with its wall time (the device drained before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    metrics = agent.step(tasks).to_row()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    metrics["wall"] = time.perf_counter() - started
    metrics["meta_step"] = metrics["time_adaptation"] + metrics["time_outer"]
    return metrics


def profile_step(agent: MetaAgent, tasks: Sequence[Task], device: torch.device) -> str:
    """A profiler table of one meta-iteration: the ops and CUDA runtime calls that take time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        timed_step(agent, tasks, device)
    events = prof.key_averages()
    # Runtime API names differ between CUDA versions (cudaLaunchKernel, cudaLaunchKernelExC, ...).
    kinds = {
        "kernel launches": ("cudaLaunch", "cuLaunch"),
        "copies": ("cudaMemcpy",),
        "synchronizations": ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSync"),
        "aten::item": ("aten::item",),
        "aten::nonzero": ("aten::nonzero",),
    }
    calls = {
        kind: sum(e.count for e in events if e.key.startswith(prefixes))
        for kind, prefixes in kinds.items()
    }
    table = events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=48)
    if device.type == "cuda":
        table += "\n" + events.table(
            sort_by="self_device_time_total", row_limit=15, max_name_column_width=48
        )
    counts = ", ".join(f"{k} {v}" for k, v in calls.items())
    return f"calls in one iteration: {counts}\n{table}"


def agent_settings(cfg: BenchConfig) -> dict:
    """The settings of ``cfg.config`` that ``cfg.agent``'s config has (none without a file)."""
    if not cfg.config:
        return {}
    _, config_cls = get_agent(cfg.agent)
    values = load_config_file(cfg.config, TRAINING_FILE_CLASSES)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in values.items() if k in fields}


def bench(cfg: BenchConfig, device_name: str, settings: dict) -> dict:
    """Time ``cfg.iterations`` meta-iterations after ``cfg.warmup`` untimed ones on one device,
    the agent built with ``settings`` (:func:`agent_settings`)."""
    device = torch.device(device_name)
    agent_cls, config_cls = get_agent(cfg.agent)
    sampler = make_sampler(cfg, device_name)
    agent_config = config_cls(**settings)
    agent_config.validate()
    agent = agent_cls(sampler, agent_config, seed=0)
    rng = np.random.default_rng(0)
    rows = []
    started = time.perf_counter()
    for i in range(cfg.warmup + cfg.iterations):
        metrics = timed_step(agent, sampler.sample_tasks(cfg.tasks, rng), device)
        if i >= cfg.warmup:
            rows.append(metrics)
            phases = " ".join(f"{metrics[k]:7.3f}" for k in PHASES)
            print(f"  {device_name} iteration {len(rows)}: {phases}", flush=True)
        if rows and cfg.budget and time.perf_counter() - started > cfg.budget:
            break
    profile = (
        profile_step(agent, sampler.sample_tasks(cfg.tasks, rng), device)
        if cfg.profile and device.type == "cuda"
        else None
    )
    sampler.close()
    keys = (*PHASES, "env_steps_per_s", "line_search_evaluations")
    medians = {k: statistics.median(r[k] for r in rows) for k in keys if k in rows[0]}
    return {"medians": medians, "rows": rows, "profile": profile}


def describe(cfg: BenchConfig) -> str:
    """The machine and settings the figures belong to."""
    gpu = (
        f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
        if torch.cuda.is_available()
        else "no CUDA device"
    )
    mujoco_threads = cfg.mujoco_threads or os.cpu_count()
    return (
        f"{cfg.agent} on {cfg.env}" + (f" ({cfg.config})" if cfg.config else "") + ": "
        f"{cfg.tasks} tasks x {cfg.episodes} episodes "
        f"x {cfg.horizon or 'default'} steps; torch {torch.__version__}, {gpu}; "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"{mujoco_threads} MuJoCo threads (batched envs); sync {cfg.sync}; "
        f"median of up to {cfg.iterations} iterations after {cfg.warmup} warm-up"
    )


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """The command line as a :class:`BenchConfig`."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, BenchConfig, "benchmark")
    if known.config:
        try:
            values = load_config_file(known.config, TRAINING_FILE_CLASSES)
        except ConfigFileError as err:
            parser.error(str(err))
        bench_fields = {f.name for f in dataclasses.fields(BenchConfig)}
        renamed = {FROM_TRAINING.get(k, k): v for k, v in values.items()}
        parser.set_defaults(**{k: v for k, v in renamed.items() if k in bench_fields})
    cfg = dataclass_from_args(BenchConfig, parser.parse_args(argv))
    if cfg.agent not in AGENTS:
        parser.error(f"unknown --agent {cfg.agent!r}; choose one of: {', '.join(sorted(AGENTS))}")
    for name in ("tasks", "episodes", "iterations"):
        if getattr(cfg, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("warmup", "threads", "mujoco_threads", "budget"):
        if getattr(cfg, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    print(describe(cfg), flush=True)
    settings = agent_settings(cfg)  # once, for every device
    header = ("s/iter", "sampling", "adapt", "outer", "meta", "steps/s", "n")
    print(f"{'device':8s} " + " ".join(f"{h:>9s}" for h in header), flush=True)
    for device in cfg.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device:8s} skipped: no CUDA device", flush=True)
            continue
        result = bench(cfg, device, settings)
        m = result["medians"]
        figures = [m[k] for k in PHASES]
        print(
            f"{device:8s} "
            + " ".join(f"{x:9.3f}" for x in figures)
            + f" {m['env_steps_per_s']:9.0f} {len(result['rows']):9d}",
            flush=True,
        )
        if result["profile"]:
            with open(cfg.profile, "a") as f:
                f.write(f"== {describe(cfg)}; device {device}\n{result['profile']}\n")
        if cfg.json:
            record = {
                "config": dataclasses.asdict(cfg),
                "agent_settings": settings,
                "device": device,
                "device_name": torch.cuda.get_device_name(device)
                if device.startswith("cuda")
                else "cpu",
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "medians": m,
                "iterations": [
                    {k: v for k, v in r.items() if isinstance(v, (int, float))}
                    for r in result["rows"]
                ],
            }
            with open(cfg.json, "a") as f:
                f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
