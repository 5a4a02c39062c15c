"""Evaluate a trained meta-policy: adapt on held-out tasks and report each step's return.

    python scripts/evaluate.py runs/<run-folder>
    python scripts/evaluate.py runs/<run-folder> --checkpoint best --tasks 40 --adapt-steps 3

Held-out tasks are the run's (the env's test split, or a seed stream distinct from training), or
those of ``--tasks-file`` (e.g. another evaluation's ``tasks.json``). Results go to
``RUN/eval/<checkpoint>-seed<seed>/``: ``results.json``, ``results.csv``, ``tasks.json`` and
``returns.png`` (with matplotlib: ``pip install -e ".[viz]"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import envs  # noqa: F401  (registers the bundled task envs)
from agents import make_agent
from metarl.checkpoint import CheckpointError
from metarl.cli import add_dataclass_arguments, dataclass_from_args
from metarl.evaluation import (
    held_out_tasks,
    plot_adaptation,
    render_episodes,
    run_sampler,
    write_results,
)
from metarl.runlog import RunDir, RunDirError
from metarl.samplers import SamplerChoice
from metarl.tasks import load_tasks
from metarl.threads import CpuShare
from metarl.training import resolve_device


@dataclasses.dataclass
class EvalConfig:
    """Evaluation settings.

    Attributes:
        checkpoint: which checkpoint: best, last, or a path to a .pt file.
        tasks: number of held-out tasks.
        tasks_file: a JSON task file to evaluate on instead of drawing tasks.
        adapt_steps: adaptation steps K (returns are reported for steps 0..K).
        episodes: episodes per task for each step (default: the run's own ``eval_episodes``).
        lr: the first step's learning rate (default: the run's inner lr, or Meta-SGD's rates).
        later_lr_scale: steps 2..K use the first step's rate times this (MAML paper: 0.5).
        seed: seed of the held-out task draw, env resets and action noise.
        device: cpu, cuda or auto.
        video: record this many episodes of the adapted policy on the first tasks (GIF files).
        out: output folder (RUN/eval/<checkpoint>-seed<seed> when None).
    """

    checkpoint: str = "last"
    tasks: int = 40
    tasks_file: str | None = None
    adapt_steps: int = 3
    episodes: int | None = None
    lr: float | None = None
    later_lr_scale: float = 0.5
    seed: int = 0
    device: str = "cpu"
    video: int = 0
    out: str | None = None


def parse_args(argv: list[str] | None) -> tuple[str, EvalConfig, SamplerChoice]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run folder made by scripts/train.py")
    add_dataclass_arguments(parser, EvalConfig, "evaluation")
    add_dataclass_arguments(parser, SamplerChoice, "sampling (default: as the run sampled)")
    args = parser.parse_args(argv)
    cfg, where = dataclass_from_args(EvalConfig, args), dataclass_from_args(SamplerChoice, args)
    if min(cfg.tasks, cfg.episodes or 1, where.workers or 1) < 1:
        parser.error("--tasks, --episodes and --workers must be >= 1")
    if cfg.adapt_steps < 0 or cfg.video < 0:
        parser.error("--adapt-steps and --video must be >= 0")
    if (cfg.lr is not None and not cfg.lr > 0) or not cfg.later_lr_scale > 0:
        parser.error("--lr and --later-lr-scale must be positive")
    return args.run, cfg, where


def main(argv: list[str] | None = None) -> int:
    folder, cfg, where = parse_args(argv)
    share = CpuShare()
    try:
        run = RunDir.open(folder)
        state = run.load(cfg.checkpoint)
        device = resolve_device(cfg.device)
    except (RunDirError, CheckpointError, ValueError) as err:
        raise _error(f"error: {err}") from err
    saved = run.config()
    train = where.apply(saved["train"])  # this machine may not be the run's
    try:
        tasks = load_tasks(cfg.tasks_file) if cfg.tasks_file else None
    except (OSError, ValueError) as err:
        raise _bad_tasks_file(cfg.tasks_file, err) from err
    episodes = cfg.episodes or train.get("eval_episodes", 20)
    try:
        sampler = run_sampler(train, len(tasks) if tasks else cfg.tasks, episodes, cfg.seed, device)
    except (ImportError, ConnectionError, ValueError) as err:  # Ray missing or unreachable
        raise _error(f"error: {err}") from err
    try:
        try:
            for task in tasks or ():  # the env's own validation: keys, shapes, ranges
                sampler.task_env.unwrapped.set_task(task)
        except ValueError as err:
            raise _bad_tasks_file(cfg.tasks_file, err) from err
        tasks = tasks or held_out_tasks(sampler, cfg.tasks, cfg.seed)
        agent = make_agent(train["agent"], sampler, saved["agent_config"], seed=train["seed"])
        agent.load_policy_state(state["agent"])
        share.update()
        result = agent.evaluate(sampler, tasks, cfg.adapt_steps, cfg.lr, cfg.later_lr_scale)
    finally:
        sampler.close()
    name = Path(cfg.checkpoint).stem if cfg.checkpoint not in ("best", "last") else cfg.checkpoint
    out = Path(cfg.out) if cfg.out else run.path / "eval" / f"{name}-seed{cfg.seed}"
    title = f"{train['agent']} on {train['env']}"
    print(
        f"{title}, checkpoint {cfg.checkpoint} (iteration {state['iteration']}): "
        f"{len(tasks)} held-out tasks x {sampler.episodes_per_task} episodes\n{result.table()}"
    )
    header = {"run": str(run.path), "checkpoint": cfg.checkpoint, "iteration": state["iteration"]}
    write_results(result, out, {**header, "config": dataclasses.asdict(cfg)}, tasks)
    plot_adaptation(result, out / "returns.png", title)
    if cfg.video:
        normalized = train.get("normalize_actions", False)
        render_episodes(
            agent, train["env"], tasks[: cfg.video], result.params, out, cfg.seed, normalized
        )
    print(f"saved {out}")
    return 0


def _error(message: str) -> SystemExit:
    """Bad input: the message on stderr, exit status 2 (as argparse's own errors)."""
    print(message, file=sys.stderr)
    return SystemExit(2)


def _bad_tasks_file(path: str, err: Exception) -> SystemExit:
    hint = (
        "Pass a tasks.json written by scripts/evaluate.py (or a run's test_tasks.json) for this env"
    )
    return _error(f"error: --tasks-file {path}: {err}. {hint}")


if __name__ == "__main__":
    sys.exit(main())
