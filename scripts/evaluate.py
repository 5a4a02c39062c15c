"""Evaluate a trained meta-policy: adapt on held-out tasks and report each step's return.

    python scripts/evaluate.py runs/<run-folder>
    python scripts/evaluate.py runs/<run-folder> --checkpoint best --tasks 40 --adapt-steps 3

Held-out tasks come from a seed stream distinct from training (or from ``--tasks-file``, e.g. the
``tasks.json`` of another evaluation, so several runs or learners face the same tasks). Results go
to ``RUN/eval/<checkpoint>-seed<seed>/``: ``results.json``, ``results.csv``, ``tasks.json`` and
``returns.png`` (with matplotlib installed: ``pip install -e ".[viz]"``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the bundled task envs)
from agents import make_agent
from metarl.checkpoint import CheckpointError
from metarl.cli import add_dataclass_arguments, dataclass_from_args
from metarl.evaluation import HELD_OUT_SAMPLER_SEED_OFFSET, held_out_tasks
from metarl.rollout import MultiTaskSampler, env_actions
from metarl.runlog import RunDir, RunDirError
from metarl.tasks import load_tasks, save_tasks
from metarl.threads import CpuShare


@dataclasses.dataclass
class EvalConfig:
    """Evaluation settings.

    Attributes:
        checkpoint: which checkpoint: best, last, or a path to a .pt file.
        tasks: number of held-out tasks.
        tasks_file: a JSON task file to evaluate on instead of drawing tasks.
        adapt_steps: adaptation steps K (returns are reported for steps 0..K).
        episodes: episodes per task for each step (default: the run's own ``eval_episodes``,
            the count its training-time evaluation used).
        lr: learning rate of the first step (the run's inner lr when None; Meta-SGD runs use
            their learned rates).
        later_lr_scale: the learning rate of steps 2..K is the first step's times this (the
            MAML paper's protocol: 0.5), whether the first comes from --lr or from the run.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run folder made by scripts/train.py")
    add_dataclass_arguments(parser, EvalConfig, "evaluation")
    args = parser.parse_args(argv)
    cfg = dataclass_from_args(EvalConfig, args)
    share = CpuShare()
    for name in ("tasks", "episodes"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if cfg.adapt_steps < 0 or cfg.video < 0:
        parser.error("--adapt-steps and --video must be >= 0")
    if cfg.lr is not None and not cfg.lr > 0:
        parser.error("--lr must be positive")
    if not cfg.later_lr_scale > 0:
        parser.error("--later-lr-scale must be positive")
    try:
        run = RunDir.open(args.run)
        state = run.load(cfg.checkpoint)
    except (RunDirError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    saved = run.config()
    train = saved["train"]
    if cfg.episodes is None:
        cfg.episodes = train.get("eval_episodes", 20)
    for module in train.get("imports") or ():
        importlib.import_module(module)
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda asked for, but torch sees no CUDA device", file=sys.stderr)
        return 2

    sampler = MultiTaskSampler(
        train["env"],
        cfg.tasks,
        cfg.episodes,
        horizon=train["horizon"],
        vectorization_mode=train["vectorization_mode"],
        device=cfg.device,
        seed=cfg.seed + HELD_OUT_SAMPLER_SEED_OFFSET,
        # runs saved before actions were normalized acted in the env's own units
        normalize_actions=train.get("normalize_actions", False),
    )
    if cfg.tasks_file:
        try:
            tasks = load_tasks(cfg.tasks_file)
            for task in tasks:  # the env's own validation: keys, shapes, ranges
                sampler.task_env.unwrapped.set_task(task)
        except (OSError, ValueError) as err:
            sampler.close()
            print(
                f"error: --tasks-file {cfg.tasks_file}: {err}. Pass a tasks.json written by "
                "scripts/evaluate.py (or a run's test_tasks.json) for this env",
                file=sys.stderr,
            )
            return 2
        if len(tasks) != cfg.tasks:
            sampler.close()
            sampler = sampler.resized(
                len(tasks), cfg.episodes, seed=cfg.seed + HELD_OUT_SAMPLER_SEED_OFFSET
            )
    else:
        tasks = held_out_tasks(sampler, cfg.tasks, cfg.seed)
    agent = make_agent(train["agent"], sampler, saved["agent_config"], seed=train["seed"])
    agent.load_policy_state(state["agent"])
    share.update()
    evaluation = agent.evaluate(sampler, tasks, cfg.adapt_steps, cfg.lr, cfg.later_lr_scale)
    params = evaluation.params

    name = Path(cfg.checkpoint).stem if cfg.checkpoint not in ("best", "last") else cfg.checkpoint
    out = Path(cfg.out) if cfg.out else run.path / "eval" / f"{name}-seed{cfg.seed}"
    out.mkdir(parents=True, exist_ok=True)
    save_tasks(str(out / "tasks.json"), tasks)
    rows = evaluation.rows()
    print(
        f"{train['agent']} on {train['env']}, checkpoint {cfg.checkpoint} "
        f"(iteration {state['iteration']}): {len(tasks)} held-out tasks x {cfg.episodes} episodes"
    )
    print(evaluation.table())
    result = {
        "run": str(run.path),
        "checkpoint": cfg.checkpoint,
        "iteration": state["iteration"],
        "config": dataclasses.asdict(cfg),
        **evaluation.to_json(),
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "mean_return", "ci95"])
        writer.writeheader()
        writer.writerows(rows)
    plot_steps(rows, out / "returns.png", f"{train['agent']} on {train['env']}")
    if cfg.video:
        record_videos(agent, train, tasks, params, cfg.video, out, cfg.seed)
    sampler.close()
    print(f"saved {out}")
    return 0


def plot_steps(rows: list[dict], path: Path, title: str) -> None:
    """Mean return against adaptation step, with the confidence band."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('note: no plot (matplotlib is not installed: pip install -e ".[viz]")')
        return
    steps = [r["step"] for r in rows]
    mean = np.array([r["mean_return"] for r in rows])
    ci = np.array([r["ci95"] for r in rows])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(steps, mean, marker="o")
    ax.fill_between(steps, mean - ci, mean + ci, alpha=0.25)
    ax.set_xlabel("adaptation steps")
    ax.set_ylabel("mean return (95% CI)")
    ax.set_xticks(steps)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def record_videos(agent, train: dict, tasks, params, count, out: Path, seed: int) -> None:
    """Render ``count`` episodes of the adapted policy (one per task, first tasks) as GIFs."""
    env_id = train["env"]
    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except Exception as err:
        print(f"note: no video: {env_id} cannot render rgb_array frames ({err})")
        return
    try:
        import imageio.v2 as imageio

        for k in range(min(count, len(tasks))):
            own = None if params is None else {n: v[k] for n, v in params.items()}
            obs, _ = env.reset(seed=seed + k, options={"task": tasks[k]})
            frames = [env.render()]
            done = False
            while not done:
                with torch.no_grad():
                    o = torch.as_tensor(obs, dtype=torch.float32, device=agent.device)
                    action = agent.policy(o.unsqueeze(0), own).mean.cpu().numpy()
                action = env_actions(
                    env.action_space, action, train.get("normalize_actions", False)
                )[0]
                obs, _, terminated, truncated, _ = env.step(action)
                frames.append(env.render())
                done = terminated or truncated
            imageio.mimsave(out / f"task{k}.gif", frames, duration=1 / 30)
    except Exception as err:
        print(
            f"note: no video: rendering failed ({type(err).__name__}: {err}). MuJoCo renders "
            "offscreen with EGL (GPU machines: apt install libegl1; MUJOCO_GL=egl) or OSMesa "
            "(CPU: apt install libosmesa6; MUJOCO_GL=osmesa)"
        )
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
