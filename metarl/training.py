"""The RL meta-training loop: one call that runs, resumes, survives Ctrl-C and evaluates.

:func:`train` is what ``scripts/train.py`` calls after parsing its options; any program can call
it with a :class:`TrainConfig`, an agent config and an agent factory. It owns:

- the run folder (:class:`~metarl.runlog.RunDir`): config, task sets, metric rows, checkpoints;
- resume: the agent, sampler and task-stream state of the last checkpoint, so a resumed run
  continues exactly as if it had never stopped;
- Ctrl-C and SIGTERM: the last finished iteration is saved before the call returns (never in
  the middle of a write: :mod:`metarl.interrupts`);
- the non-finite stop: after ``max_rejected`` iterations in a row whose step the agent rejected
  for non-finite values, it saves and stops with a message that names the fix;
- checkpoint cadence, the periodic and final held-out evaluation (:mod:`metarl.evaluation`);
- torch's thread count from the machine's load (:class:`metarl.threads.CpuShare`).

The agent is built by ``make_agent(sampler, agent_config, seed)``: the library never imports a
learner (``agents`` registers them). The sampler comes from :func:`metarl.samplers.make_sampler`.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.checkpoint import CheckpointError
from metarl.evaluation import HeldOut, ray_options
from metarl.interrupts import Stop, held_signals, stop_on_sigterm
from metarl.records import Rejection
from metarl.runlog import RunDir
from metarl.samplers import Sampler, make_sampler
from metarl.tasks import save_tasks
from metarl.threads import CpuShare

__all__ = [
    "Outcome",
    "SetupError",
    "TrainConfig",
    "check_train_config",
    "evaluate_held_out",
    "resolve_device",
    "train",
]


@dataclasses.dataclass
class TrainConfig:
    """Training settings (an agent's own hyperparameters are in its config).

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
        sampler: where episodes are sampled: local (one vector env on this machine) or ray
            (Ray actors on this machine or a cluster; pip install -e ".[ray]").
        workers: Ray actors sampling in parallel (--sampler ray only).
        ray_address: Ray cluster to join: None starts Ray on this machine with `workers` CPUs,
            auto or HEAD_IP:6379 joins one started with `ray start` (--sampler ray only).
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
    sampler: str = "local"
    workers: int = 2
    ray_address: str | None = None
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


def check_train_config(cfg: TrainConfig) -> None:
    """Reject bad settings before any work.

    Raises:
        ValueError: naming the option to fix.
    """
    positive = ("iterations", "meta_batch_size", "episodes_per_task", "checkpoint_every")
    for name in (*positive, "keep_checkpoints", "eval_episodes", "max_rejected"):
        value = getattr(cfg, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("eval_tasks", "eval_adapt_steps", "threads", "eval_every"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
    if cfg.horizon is not None and cfg.horizon < 1:
        raise ValueError(f"--horizon must be >= 1, got {cfg.horizon}")
    if cfg.eval_lr is not None and not cfg.eval_lr > 0:
        raise ValueError(f"--eval-lr must be positive, got {cfg.eval_lr}")
    if not cfg.eval_later_lr_scale > 0:
        raise ValueError(f"--eval-later-lr-scale must be positive, got {cfg.eval_later_lr_scale}")
    if cfg.device not in ("cpu", "cuda", "auto") and not cfg.device.startswith("cuda:"):
        raise ValueError(f"--device must be cpu, cuda, cuda:N or auto, got {cfg.device!r}")


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when available.

    Raises:
        ValueError: for CUDA on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


class Outcome(enum.IntEnum):
    """How :func:`train` ended; the value is the script's exit status."""

    FINISHED = 0
    NON_FINITE = 1  # stopped after max_rejected non-finite steps in a row
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; the last finished iteration is saved


AgentFactory = Callable[[Sampler, Any, int], Any]


class SetupError(ValueError):
    """A run could not start: a bad setting, env id, env contract or run folder to resume."""


def train(cfg: TrainConfig, agent_config: Any, make_agent: AgentFactory) -> Outcome:
    """Meta-train as configured; progress lines go to stdout, the record to the run folder.

    Args:
        cfg: training settings (``cfg.resume`` continues that run folder).
        agent_config: the agent's config dataclass.
        make_agent: builds the agent from ``(sampler, agent_config, seed)``.

    Returns:
        How the run ended.

    Raises:
        SetupError: before any training, for a bad setting, env or run folder; the message
            names the fix. Errors during training propagate as they are.
    """
    try:
        check_train_config(cfg)
        device = resolve_device(cfg.device)
    except ValueError as err:
        raise SetupError(str(err)) from err
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    share = None if cfg.threads else CpuShare()
    try:
        sampler = make_sampler(
            cfg.sampler,
            cfg.env,
            cfg.meta_batch_size,
            cfg.episodes_per_task,
            horizon=cfg.horizon,
            vectorization_mode=cfg.vectorization_mode,
            device=device,
            seed=cfg.seed,
            normalize_actions=cfg.normalize_actions,
            **ray_options(cfg.sampler, vars(cfg)),
        )
    # env id, contract, sizes; Ray missing or its cluster unreachable
    except (ValueError, TypeError, gym.error.Error, ImportError, ConnectionError) as err:
        raise SetupError(str(err)) from err
    try:
        try:
            agent = make_agent(sampler, agent_config, cfg.seed)
        except (ValueError, TypeError) as err:  # hyperparameters, unsupported spaces
            raise SetupError(str(err)) from err
        run, start, task_rng = _open_run(cfg, agent_config, agent)
        held_out = HeldOut(sampler, cfg.eval_tasks, cfg.eval_episodes, cfg.seed)
        try:
            return _loop(cfg, agent, sampler, run, start, task_rng, share, held_out)
        finally:
            held_out.close()
            run.close()
    finally:
        sampler.close()


def _open_run(cfg: TrainConfig, agent_config: Any, agent: Any) -> tuple[RunDir, int, Any]:
    """The run folder (new, or resumed with the agent's and task stream's saved state)."""
    task_rng = np.random.default_rng([cfg.seed, 1])
    if not cfg.resume:
        config = {"train": dataclasses.asdict(cfg)}
        config["agent_config"] = dataclasses.asdict(agent_config)
        config["train"]["resume"] = None
        run = RunDir.create(cfg.out, cfg.env, cfg.agent, config, cfg.keep_checkpoints)
        print(f"run folder: {run.path}", flush=True)
        return run, 0, task_rng
    try:
        run = RunDir.open(cfg.resume, cfg.keep_checkpoints)
        state = run.load("last")
    except (ValueError, CheckpointError) as err:
        raise SetupError(f"cannot resume: {err}") from err
    agent.load_state_dict(state["agent"])
    task_rng.bit_generator.state = state["task_rng"]
    start = int(state["iteration"])
    run.truncate_logs(start)
    print(f"resuming {run.path} at iteration {start}", flush=True)
    return run, start, task_rng


def _loop(
    cfg: TrainConfig,
    agent: Any,
    sampler: Sampler,
    run: RunDir,
    start: int,
    task_rng: np.random.Generator,
    share: CpuShare | None,
    held_out: HeldOut,
) -> Outcome:
    config = run.config()

    def snapshot(iteration: int) -> dict:
        return {
            "iteration": iteration,
            "agent": copy.deepcopy(agent.state_dict()),
            "task_rng": copy.deepcopy(task_rng.bit_generator.state),
            "config": config,
        }

    last_good = snapshot(start)
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    rejected_in_a_row = 0
    try:
        # an evaluation cut short by a stop (after its iteration's checkpoint) runs again
        if _eval_due(cfg, start) and start not in run.evaluated():
            evaluate_held_out(agent, sampler, cfg, run, start, share, held_out)
        for iteration in range(start, cfg.iterations):
            tasks = sampler.sample_tasks(cfg.meta_batch_size, task_rng)
            threads = share.update() if share else cfg.threads
            metrics = agent.step(tasks)
            row = {"iteration": iteration, "env_steps_total": sampler.total_steps}
            row.update(metrics.to_row(), torch_threads=threads)
            if share and share.others_busy is not None:
                row["cpu_others"] = share.others_busy  # cores other processes kept busy
            with held_signals():
                run.log_tasks(iteration, tasks)
                run.log_metrics(row)
                last_good = snapshot(iteration + 1)
                print(format_row(row, cfg.iterations), flush=True)
            non_finite = metrics.rejected is Rejection.NON_FINITE
            rejected_in_a_row = rejected_in_a_row + 1 if non_finite else 0
            if rejected_in_a_row >= cfg.max_rejected:
                with held_signals():
                    path = run.save(iteration + 1, last_good)
                print(
                    f"stopping: {rejected_in_a_row} iterations in a row had non-finite values "
                    f"(the parameters never took them; saved {path}). Lower --inner-lr or "
                    f"--max-kl and continue with: python scripts/train.py --resume {run.path}",
                    file=sys.stderr,
                )
                return Outcome.NON_FINITE
            done = iteration + 1
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
                with held_signals():
                    run.save(done, last_good, score=metrics.return_after)
            if _eval_due(cfg, done):
                evaluate_held_out(agent, sampler, cfg, run, done, share, held_out)
        # inside the try: a resumed run whose iterations are all done runs only this
        if cfg.eval_tasks > 0:
            evaluate_held_out(agent, sampler, cfg, run, cfg.iterations, share, held_out)
    except (KeyboardInterrupt, Stop):
        with held_signals(reraise=False):
            path = run.save(last_good["iteration"], last_good)
        print(
            f"\ninterrupted: saved {path} (iteration {last_good['iteration']}); "
            f"continue with: python scripts/train.py --resume {run.path}",
            file=sys.stderr,
            flush=True,
        )
        return Outcome.INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return Outcome.FINISHED


def _eval_due(cfg: TrainConfig, done: int) -> bool:
    """Whether a periodic held-out evaluation follows iteration ``done`` (the final one is not
    periodic: it always runs)."""
    periodic = cfg.eval_every and cfg.eval_tasks and 0 < done < cfg.iterations
    return bool(periodic and done % cfg.eval_every == 0)


def format_row(row: dict, total: int) -> str:
    """One progress line per iteration (with the success rate after adaptation where the env
    reports success)."""
    kl = f"kl {row['kl']:.4f}  " if math.isfinite(row.get("kl", math.nan)) else ""
    success = f"success {row['success_after']:.2f}  " if "success_after" in row else ""
    return (
        f"iter {row['iteration'] + 1:4d}/{total}  "
        f"return before {row['return_before']:9.2f}  after {row['return_after']:9.2f}  "
        f"{success}{kl}{'step' if row['step_accepted'] else 'rejected'}  "
        f"{row['env_steps_per_s'] / 1e3:7.1f}k env steps/s  {row['time_iteration']:.2f} s/it"
    )


def evaluate_held_out(
    agent: Any,
    sampler: Sampler,
    cfg: TrainConfig,
    run: RunDir,
    iteration: int,
    share: CpuShare | None = None,
    held_out: HeldOut | None = None,
) -> dict:
    """Adapt on the held-out tasks of :func:`metarl.evaluation.held_out_tasks`.

    The result goes to ``eval_history.jsonl`` (one row per evaluation) and, after the last
    iteration, to ``eval.json``. ``held_out`` keeps the held-out sampler between evaluations
    (one is made and closed here when it is None).
    """
    if share:
        share.update()
    own = held_out is None
    if own:
        held_out = HeldOut(sampler, cfg.eval_tasks, cfg.eval_episodes, cfg.seed)
    tasks, eval_sampler = held_out.fresh()
    save_tasks(str(run.path / "test_tasks.json"), tasks)
    started = time.perf_counter()
    try:
        result = agent.evaluate(
            eval_sampler, tasks, cfg.eval_adapt_steps, cfg.eval_lr, cfg.eval_later_lr_scale
        )
    finally:
        if own:
            held_out.close()
    print(
        f"\nheld-out evaluation after {iteration} iterations: "
        f"{cfg.eval_tasks} tasks x {cfg.eval_episodes} episodes\n{result.table()}"
    )
    row = {"iteration": iteration, "seconds": time.perf_counter() - started, **result.to_json()}
    with held_signals():
        run.log_eval(row)
        if iteration == cfg.iterations:
            run.write_json("eval.json", row)
            print(f"saved {run.path / 'eval.json'}")
    return row
