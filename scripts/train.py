"""Meta-train an agent on a task distribution.

    python scripts/train.py                                   # MAML-TRPO on Particles2D
    python scripts/train.py --config configs/maml-trpo/halfcheetah-dir.toml
    python scripts/train.py --config configs/promp/particles2d.toml --seed 1   # flags override
    python scripts/train.py --resume runs/<run-folder>         # continue a stopped run

Writes a run folder (``--out``, default ``runs/``) with the resolved config, the train task sets,
``metrics.jsonl`` (one row per iteration), checkpoints, and a held-out evaluation at the end.
Ctrl-C or SIGTERM saves a checkpoint of the last finished iteration and exits; ``--resume``
continues from it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import json
import math
import signal
import sys
import time

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the bundled task envs)
from agents import AGENTS, get_agent
from metarl.checkpoint import CheckpointError
from metarl.cli import (
    ConfigFileError,
    add_dataclass_arguments,
    dataclass_from_args,
    load_config_file,
)
from metarl.evaluation import HELD_OUT_SAMPLER_SEED_OFFSET, held_out_tasks
from metarl.rollout import MultiTaskSampler
from metarl.runlog import RunDir
from metarl.tasks import save_tasks
from metarl.threads import CpuShare


@dataclasses.dataclass
class TrainConfig:
    """Training-script settings.

    Attributes:
        env: registered task env id.
        agent: meta-learner to train.
        iterations: number of meta-iterations.
        meta_batch_size: tasks per meta-iteration.
        episodes_per_task: episodes sampled per task before and after each adaptation step.
        horizon: steps per episode (the env's registered time limit when None).
        seed: seed of everything random in the run (tasks, env resets, actions, initialization).
        device: where the policy runs and adapts: cpu, cuda, or auto (cuda when available).
        out: folder in which the run folder is created.
        vectorization_mode: vector env kind: vector_entry_point (the env's batched
            implementation, the default when it has one), sync or async.
        imports: modules to import before making the env (modules that register your own envs).
        normalize_actions: the policy acts in [-1, 1], mapped onto the env's action bounds (as
            rllab's normalize wrapper); actions are clipped to the action space either way.
        checkpoint_every: iterations between checkpoints.
        keep_checkpoints: periodic checkpoints kept (best.pt and last.pt are kept besides).
        eval_tasks: held-out tasks evaluated at the end (0 to skip).
        eval_every: also evaluate the held-out tasks every this many iterations (0: only at
            the end); rows go to eval_history.jsonl.
        eval_episodes: episodes per held-out task and adaptation step (40: rllab's evaluation of
            the MAML paper's 2D navigation).
        eval_adapt_steps: adaptation steps in the final evaluation.
        eval_lr: test-time learning rate of the first adaptation step (the training inner lr
            when None; Meta-SGD: the learned rates).
        eval_later_lr_scale: later adaptation steps use the first step's rate times this (the
            MAML paper's protocol: 0.5).
        threads: torch CPU threads (0: torch's default, lowered each iteration to the cores
            other processes leave free, so runs side by side share the machine).
        max_rejected: stop after this many consecutive iterations whose step was rejected
            because of non-finite values.
        resume: a run folder to continue (its saved config is used; --iterations may extend it).
    """

    env: str = "metarl/Particles2D-v0"
    agent: str = "maml-trpo"
    iterations: int = 100
    meta_batch_size: int = 20
    episodes_per_task: int = 20
    horizon: int | None = None
    seed: int = 0
    device: str = "cpu"
    out: str = "runs"
    vectorization_mode: str | None = None
    imports: tuple[str, ...] = ()
    normalize_actions: bool = True
    checkpoint_every: int = 10
    keep_checkpoints: int = 3
    eval_tasks: int = 40
    eval_every: int = 0
    eval_episodes: int = 40
    eval_adapt_steps: int = 2
    eval_lr: float | None = None
    eval_later_lr_scale: float = 0.5
    threads: int = 0
    max_rejected: int = 5
    resume: str | None = None


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, object]:
    """Parse the command line into the script config and the agent config."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--agent", default=None)
    pre.add_argument("--resume", default=None)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    saved: dict = {}
    from_file: dict = {}
    if known.resume:
        if known.config:
            raise SystemExit("error: --resume uses the run's saved config; drop --config")
        saved = RunDir.open(known.resume).config()
        known.agent = saved["train"]["agent"]
    elif known.config:
        # The agent decides which keys are valid: take it from the flag, else from the file.
        agents_in_file = load_config_file(known.config, [TrainConfig, *_agent_configs()])
        agent_name = known.agent or agents_in_file.get("agent", TrainConfig.agent)
        _, agent_config_cls = get_agent(agent_name)
        from_file = load_config_file(known.config, [TrainConfig, agent_config_cls])
    known.agent = known.agent or from_file.get("agent", TrainConfig.agent)
    _, agent_config_cls = get_agent(known.agent)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"agents: {', '.join(sorted(AGENTS))}; run with --agent NAME --help for its options",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file of options (configs/<agent>/<env>.toml); flags given too override it",
    )
    add_dataclass_arguments(parser, TrainConfig, "training")
    add_dataclass_arguments(parser, agent_config_cls, f"agent ({known.agent})")
    if saved:
        parser.set_defaults(**saved["train"], **saved["agent_config"])
    parser.set_defaults(**from_file)
    args = parser.parse_args(argv)
    if known.resume:
        args.resume = known.resume
    train = dataclass_from_args(TrainConfig, args)
    agent_config = dataclass_from_args(agent_config_cls, args)
    check_train_config(train)
    return train, agent_config


def _agent_configs() -> list[type]:
    return [config_cls for _, config_cls in AGENTS.values()]


def check_train_config(cfg: TrainConfig) -> None:
    """Reject bad settings before any work, naming the option to fix."""
    for name in (
        "iterations",
        "meta_batch_size",
        "episodes_per_task",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_episodes",
        "max_rejected",
    ):
        value = getattr(cfg, name)
        if value < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("eval_tasks", "eval_adapt_steps", "threads", "eval_every"):
        if getattr(cfg, name) < 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 0")
    if cfg.horizon is not None and cfg.horizon < 1:
        raise SystemExit(f"error: --horizon must be >= 1, got {cfg.horizon}")
    if cfg.eval_lr is not None and not cfg.eval_lr > 0:
        raise SystemExit(f"error: --eval-lr must be positive, got {cfg.eval_lr}")
    if not cfg.eval_later_lr_scale > 0:
        raise SystemExit(
            f"error: --eval-later-lr-scale must be positive, got {cfg.eval_later_lr_scale}"
        )
    if cfg.device not in ("cpu", "cuda", "auto") and not cfg.device.startswith("cuda:"):
        raise SystemExit(f"error: --device must be cpu, cuda, cuda:N or auto, got {cfg.device!r}")


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "error: --device cuda asked for, but torch sees no CUDA device; use --device cpu"
        )
    return torch.device(name)


class _Stop(Exception):
    """Raised by the SIGTERM handler to stop like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Stop()


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, agent_cfg = parse_args(argv)
    except (ValueError, ConfigFileError) as err:
        raise SystemExit(f"error: {err}") from err
    for module in cfg.imports:
        importlib.import_module(module)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    share = None if cfg.threads else CpuShare()
    device = resolve_device(cfg.device)
    agent_cls, _ = get_agent(cfg.agent)
    try:
        sampler = MultiTaskSampler(
            cfg.env,
            cfg.meta_batch_size,
            cfg.episodes_per_task,
            horizon=cfg.horizon,
            vectorization_mode=cfg.vectorization_mode,
            device=device,
            seed=cfg.seed,
            normalize_actions=cfg.normalize_actions,
        )
        agent = agent_cls(sampler, agent_cfg, seed=cfg.seed)
    except (ValueError, TypeError, gym.error.Error) as err:  # bad env id / contract / setting
        raise SystemExit(f"error: {err}") from err
    task_rng = np.random.default_rng([cfg.seed, 1])
    config = {"train": dataclasses.asdict(cfg), "agent_config": dataclasses.asdict(agent_cfg)}
    start_iteration = 0
    if cfg.resume:
        run = RunDir.open(cfg.resume, cfg.keep_checkpoints)
        try:
            state = run.load("last")
        except CheckpointError as err:
            raise SystemExit(f"error: cannot resume: {err}") from err
        agent.load_state_dict(state["agent"])
        task_rng.bit_generator.state = state["task_rng"]
        start_iteration = int(state["iteration"])
        run.truncate_metrics(start_iteration)
        print(f"resuming {run.path} at iteration {start_iteration}", flush=True)
    else:
        config["train"]["resume"] = None
        run = RunDir.create(cfg.out, cfg.env, cfg.agent, config, cfg.keep_checkpoints)
        print(f"run folder: {run.path}", flush=True)

    def snapshot(iteration: int) -> dict:
        return {
            "iteration": iteration,
            "agent": copy.deepcopy(agent.state_dict()),
            "task_rng": copy.deepcopy(task_rng.bit_generator.state),
            "config": json.loads(json.dumps(config, default=list)),
        }

    last_good = snapshot(start_iteration)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    rejected_in_a_row = 0
    iteration = start_iteration
    try:
        for iteration in range(start_iteration, cfg.iterations):
            tasks = sampler.sample_tasks(cfg.meta_batch_size, task_rng)
            threads = share.update() if share else cfg.threads
            metrics = agent.step(tasks)
            run.log_tasks(iteration, tasks)
            row = {"iteration": iteration, "env_steps_total": sampler.total_steps, **metrics}
            row["torch_threads"] = threads
            if share and share.others_busy is not None:
                row["cpu_others"] = share.others_busy  # cores other processes kept busy
            run.log_metrics(row)
            last_good = snapshot(iteration + 1)
            print(format_row(row, cfg.iterations), flush=True)
            if metrics.get("rejected_reason") == "non-finite loss or gradient":
                rejected_in_a_row += 1
                if rejected_in_a_row >= cfg.max_rejected:
                    path = run.save(iteration + 1, last_good)
                    print(
                        f"stopping: {rejected_in_a_row} iterations in a row had non-finite values "
                        f"(the parameters never took them; saved {path}). Lower --inner-lr or "
                        f"--max-kl and continue with: python scripts/train.py --resume {run.path}",
                        file=sys.stderr,
                    )
                    return 1
            else:
                rejected_in_a_row = 0
            if (iteration + 1) % cfg.checkpoint_every == 0 or iteration + 1 == cfg.iterations:
                run.save(iteration + 1, last_good, score=metrics.get("return_after"))
            done = iteration + 1
            if (
                cfg.eval_every
                and cfg.eval_tasks
                and done % cfg.eval_every == 0
                and done < cfg.iterations
            ):
                if share:
                    share.update()
                evaluate_held_out(agent, sampler, cfg, run, iteration=done)
    except (KeyboardInterrupt, _Stop):
        path = run.save(last_good["iteration"], last_good)
        print(
            f"\ninterrupted: saved {path} (iteration {last_good['iteration']}); "
            f"continue with: python scripts/train.py --resume {run.path}",
            file=sys.stderr,
            flush=True,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if cfg.eval_tasks > 0:
        if share:
            share.update()
        evaluate_held_out(agent, sampler, cfg, run, iteration=cfg.iterations)
    sampler.close()
    return 0


def format_row(row: dict, total: int) -> str:
    """One progress line per iteration."""
    kl = f"kl {row['kl']:.4f}  " if math.isfinite(row["kl"]) else ""
    return (
        f"iter {row['iteration'] + 1:4d}/{total}  "
        f"return before {row['return_before']:9.2f}  after {row['return_after']:9.2f}  "
        f"{kl}{'step' if row['step_accepted'] else 'rejected'}  "
        f"{row['env_steps_per_s'] / 1e3:7.1f}k env steps/s  {row['time_iteration']:.2f} s/it"
    )


def evaluate_held_out(
    agent, sampler: MultiTaskSampler, cfg: TrainConfig, run: RunDir, iteration: int
) -> dict:
    """Adapt on the held-out tasks of :func:`metarl.evaluation.held_out_tasks`.

    The result goes to ``eval_history.jsonl`` (one row per evaluation) and, after the last
    iteration, to ``eval.json``.
    """
    tasks = held_out_tasks(sampler, cfg.eval_tasks, cfg.seed)
    save_tasks(str(run.path / "test_tasks.json"), tasks)
    eval_sampler = sampler.resized(
        cfg.eval_tasks, cfg.eval_episodes, seed=cfg.seed + HELD_OUT_SAMPLER_SEED_OFFSET
    )
    started = time.perf_counter()
    result = agent.evaluate(
        eval_sampler, tasks, cfg.eval_adapt_steps, cfg.eval_lr, cfg.eval_later_lr_scale
    )
    eval_sampler.close()
    print(
        f"\nheld-out evaluation after {iteration} iterations: "
        f"{cfg.eval_tasks} tasks x {cfg.eval_episodes} episodes\n{result.table()}"
    )
    row = {"iteration": iteration, "seconds": time.perf_counter() - started, **result.to_json()}
    with open(run.path / "eval_history.jsonl", "a") as f:
        f.write(json.dumps({k: v for k, v in row.items() if k != "per_task_returns"}) + "\n")
    if iteration == cfg.iterations:
        run.write_json("eval.json", row)
        print(f"saved {run.path / 'eval.json'}")
    return row


if __name__ == "__main__":
    sys.exit(main())
