"""Seconds per meta-iteration, split into sampling / adaptation / outer step.

    python scripts/bench_train.py                                   # Particles2D, 20 x 20 x 100
    python scripts/bench_train.py --env metarl/HalfCheetahDir-v0 --tasks 40 --devices cpu cuda

Runs the same agent code as ``scripts/train.py`` (a few warm-up iterations, then timed ones) and
prints one row per device. Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

import envs  # noqa: F401
from agents import AGENTS, get_agent
from metarl.rollout import MultiTaskSampler


def bench(args: argparse.Namespace, device: str) -> dict[str, float]:
    """Time ``args.iterations`` meta-iterations after ``args.warmup`` untimed ones."""
    agent_cls, config_cls = get_agent(args.agent)
    sampler = MultiTaskSampler(
        args.env, args.tasks, args.episodes, horizon=args.horizon, device=device, seed=0
    )
    agent = agent_cls(sampler, config_cls(), seed=0)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(args.warmup + args.iterations):
        tasks = sampler.sample_tasks(args.tasks, rng)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        metrics = agent.step(tasks)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        metrics["wall"] = time.perf_counter() - started
        if i >= args.warmup:
            rows.append(metrics)
    sampler.close()
    keys = ("wall", "time_sampling", "time_adaptation", "time_outer", "env_steps_per_s")
    return {k: statistics.median(r[k] for r in rows) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="metarl/Particles2D-v0", help="task env id")
    parser.add_argument("--agent", default="maml-trpo", choices=sorted(AGENTS), help="learner")
    parser.add_argument("--tasks", type=int, default=20, help="tasks per meta-iteration")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task")
    parser.add_argument("--horizon", type=int, default=None, help="steps per episode")
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--devices", nargs="+", default=["cpu"], help="devices to compare")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{args.agent} on {args.env}: {args.tasks} tasks x {args.episodes} episodes, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"median of {args.iterations} iterations after {args.warmup} warm-up"
    )
    header = ("s/iter", "sampling", "adapt", "outer", "steps/s")
    print(f"{'device':8s} " + " ".join(f"{h:>9s}" for h in header))
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device:8s} skipped: no CUDA device")
            continue
        r = bench(args, device)
        print(
            f"{device:8s} {r['wall']:9.3f} {r['time_sampling']:9.3f} {r['time_adaptation']:9.3f} "
            f"{r['time_outer']:9.3f} {r['env_steps_per_s']:9.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
