"""Held-out evaluation of a meta-learner: the literature's K-step adaptation protocol, once.

Training's periodic and final evaluation, ``scripts/evaluate.py`` and the benchmarks all call
:func:`evaluate_adaptation` on tasks from :func:`held_out_tasks` with a sampler from
:func:`held_out_sampler`, so a run's own evaluation and ``evaluate.py`` with the same seed face the
same tasks, episodes and learning rates. Episodes are rendered here too; the results' tables,
files and plots are in :mod:`metarl.eval_results` (re-exported here).

The protocol (Finn et al. 2017, and rllab's MAML code): on each held-out task, sample fresh
episodes with the current (adapted) policy, take one inner step on them, and repeat; the first
step uses the inner learning rate, later steps half of it (:func:`adaptation_lrs`). The reported
figure per step is the mean over tasks of each task's mean episode return, with a 95% confidence
interval over tasks, and likewise each task's success rate where the env reports success.
"""

from __future__ import annotations

import copy
import importlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from metarl.episodes import env_actions
from metarl.eval_results import (
    AdaptationResult,
    confidence_interval,
    plot_adaptation,
    task_families,
    write_results,
)
from metarl.samplers import make_sampler
from metarl.tasks import Task, draw_tasks, task_splits

__all__ = [
    "HELD_OUT_SAMPLER_SEED_OFFSET",
    "AdaptationResult",
    "HeldOut",
    "adaptation_lrs",
    "confidence_interval",
    "evaluate_adaptation",
    "held_out_rng",
    "held_out_sampler",
    "held_out_sampler_seed",
    "held_out_tasks",
    "plot_adaptation",
    "ray_options",
    "render_episodes",
    "run_sampler",
    "write_results",
]

# Held-out evaluation draws its env resets and action noise from seed + this offset, so they never
# coincide with the training sampler's stream of the same seed.
HELD_OUT_SAMPLER_SEED_OFFSET = 10_000


def held_out_rng(seed: int) -> np.random.Generator:
    """The generator of held-out tasks for ``seed`` (training draws from ``[seed, 1]``)."""
    return np.random.default_rng([seed, 2])


def held_out_sampler_seed(seed: int) -> int:
    """The seed of held-out evaluation's env resets and action noise for the run seed ``seed``."""
    return seed + HELD_OUT_SAMPLER_SEED_OFFSET


def held_out_sampler(sampler: Any, num_tasks: int, episodes_per_task: int, seed: int) -> Any:
    """A sampler like ``sampler`` for held-out evaluation: these sizes, the held-out seed."""
    return sampler.resized(num_tasks, episodes_per_task, seed=held_out_sampler_seed(seed))


def run_sampler(
    train: dict[str, Any], num_tasks: int, episodes_per_task: int, seed: int, device: Any = "cpu"
) -> Any:
    """A held-out sampler for a saved run: its env (after its ``imports``), sampler kind, horizon
    and action scaling.

    Args:
        train: the ``"train"`` part of the run's ``config.json``.
        num_tasks: tasks per call.
        episodes_per_task: episodes per task per call.
        seed: the evaluation's seed (the sampler gets :func:`held_out_sampler_seed` of it).
        device: where the policy runs.
    """
    for module in train.get("imports") or ():  # modules that register the run's own envs
        importlib.import_module(module)
    return make_sampler(
        train.get("sampler", "local"),
        train["env"],
        num_tasks,
        episodes_per_task,
        horizon=train["horizon"],
        vectorization_mode=train["vectorization_mode"],
        device=device,
        seed=held_out_sampler_seed(seed),
        # runs saved before actions were normalized acted in the env's own units
        normalize_actions=train.get("normalize_actions", False),
        **ray_options(train.get("sampler", "local"), train),
    )


def ray_options(kind: str, train: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray sampler's own options from a train config (as a dict); none for other samplers.

    Args:
        kind: the sampler kind.
        train: the train config's fields (a saved ``config.json``'s ``"train"`` part, or
            ``vars(TrainConfig)``); runs saved before these fields existed get the defaults.
    """
    if kind != "ray":
        return {}
    return {
        "workers": train.get("workers", 2),
        "ray_address": train.get("ray_address"),
        "imports": tuple(train.get("imports", ())),
    }


def held_out_tasks(sampler: Any, num_tasks: int, seed: int) -> list[Task]:
    """The ``num_tasks`` held-out tasks of ``seed``: the one rule every evaluation uses.

    They come from the env's ``"test"`` split where it has one (Meta-World's test goals or
    held-out families), drawn with :func:`held_out_rng` (a seed stream training never uses).

    Args:
        sampler: anything with ``sample_tasks(n, rng, split)`` (a sampler or a task env).
        num_tasks: how many tasks.
        seed: the run's (or the evaluation's) seed.
    """
    split = "test" if "test" in task_splits(sampler) else "train"
    return draw_tasks(sampler, num_tasks, held_out_rng(seed), split)


class HeldOut:
    """A run's held-out tasks and their sampler, made on first use and reused.

    Every :meth:`fresh` starts the sampler from the same RNG state, so each evaluation sees what a
    newly made held-out sampler (and ``evaluate.py`` with the run's seed) would: the same tasks,
    env resets and action noise. Reuse spares rebuilding the envs (and a Ray sampler's actors).

    Args:
        sampler: the training sampler (its env and options; resized to these sizes).
        num_tasks: held-out tasks.
        episodes_per_task: episodes per task and adaptation step.
        seed: the run's seed (:func:`held_out_tasks`, :func:`held_out_sampler_seed`).
    """

    def __init__(self, sampler: Any, num_tasks: int, episodes_per_task: int, seed: int) -> None:
        self._make = lambda: (
            held_out_tasks(sampler, num_tasks, seed),
            held_out_sampler(sampler, num_tasks, episodes_per_task, seed),
        )
        self.tasks: list[Task] = []
        self.sampler: Any = None
        self._start: dict = {}

    def fresh(self) -> tuple[list[Task], Any]:
        """The tasks, and the sampler at its starting state."""
        if self.sampler is None:
            self.tasks, self.sampler = self._make()
            self._start = copy.deepcopy(self.sampler.state_dict())
        self.sampler.load_state_dict(self._start)
        return self.tasks, self.sampler

    def close(self) -> None:
        """Close the sampler (a later :meth:`fresh` makes a new one)."""
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None


def adaptation_lrs(lr: Any, steps: int, later_scale: float = 0.5) -> list[Any]:
    """Learning rate of each of ``steps`` adaptation steps: ``lr`` first, then ``lr * later_scale``.

    ``lr`` is a number or a dict of per-parameter rates (Meta-SGD); each is scaled. The MAML paper
    takes later steps at half the inner learning rate (``later_scale = 0.5``).

    Raises:
        ValueError: for a negative step count or a non-positive scale.
    """
    if steps < 0:
        raise ValueError(f"adaptation steps must be >= 0, got {steps}")
    if not later_scale > 0:
        raise ValueError(f"the later-step lr scale must be positive, got {later_scale}")
    if isinstance(lr, dict):
        later = {k: v * later_scale for k, v in lr.items()}
    else:
        later = lr * later_scale
    return [lr if k == 0 else later for k in range(steps)]


class _Adapter(Protocol):
    """What :func:`evaluate_adaptation` needs of an agent."""

    policy: Any

    def adapt(self, episodes: Any, params: Any = None, lr: Any = None) -> Any: ...


def evaluate_adaptation(
    agent: _Adapter, sampler: Any, tasks: Sequence[Task], lrs: Sequence[Any]
) -> AdaptationResult:
    """Adapt on ``tasks`` for ``len(lrs)`` steps, fresh episodes every step, no graph kept.

    Args:
        agent: the learner (its ``policy`` acts; its ``adapt`` takes one inner step).
        sampler: a sampler sized for ``len(tasks)`` tasks.
        tasks: the held-out tasks.
        lrs: learning rate of each step (see :func:`adaptation_lrs`).

    Returns:
        The :class:`AdaptationResult`, with each task's success rate at every step where the
        env reports ``info["success"]``, and the tasks' families where they name one.
    """
    params = None
    returns, successes = [], []
    for step in range(len(lrs) + 1):
        episodes = sampler.sample(agent.policy, tasks, params)
        returns.append(episodes.episode_returns().mean(1).cpu().numpy())
        rates = episodes.task_success_rates()
        successes.append(None if rates is None else rates.cpu().numpy())
        if step < len(lrs):
            params = agent.adapt(episodes, params, lrs[step])
    return AdaptationResult(
        np.stack(returns),
        list(lrs),
        sampler.episodes_per_task,
        params,
        per_task_successes=None if any(s is None for s in successes) else np.stack(successes),
        families=task_families(tasks),
    )


def render_episodes(
    agent: Any,
    env_id: str,
    tasks: Sequence[Task],
    params: Any,
    out: Path,
    seed: int,
    normalize_actions: bool,
) -> list[Path]:
    """One GIF per task (``task<k>.gif``) of the adapted policy acting on its mean action.

    Args:
        agent: the learner (its ``policy`` and ``device``).
        env_id: the task env id.
        tasks: the tasks to render.
        params: per-task adapted parameters (``[T, ...]``), or None for the policy's own.
        out: folder of the GIFs.
        seed: reset seed of the first task (task ``k`` resets with ``seed + k``).
        normalize_actions: whether the policy acts in ``[-1, 1]`` (as the run trained).

    Returns:
        The GIFs written; empty (with a warning naming the fix) when the env cannot render.
    """
    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except Exception as err:  # envs without rgb_array rendering raise many kinds of errors
        warnings.warn(f"no video: {env_id} cannot render rgb_array frames ({err})", stacklevel=2)
        return []
    written = []
    try:
        import imageio.v2 as imageio

        for k, task in enumerate(tasks):
            own = None if params is None else {n: v[k] for n, v in params.items()}
            obs, _ = env.reset(seed=seed + k, options={"task": task})
            frames, done = [env.render()], False
            while not done:
                with torch.no_grad():
                    o = torch.as_tensor(obs, dtype=torch.float32, device=agent.device)
                    action = agent.policy(o.unsqueeze(0), own).mean.cpu().numpy()
                action = env_actions(env.action_space, action, normalize_actions)[0]
                obs, _, terminated, truncated, _ = env.step(action)
                frames.append(env.render())
                done = terminated or truncated
            imageio.mimsave(out / f"task{k}.gif", frames, duration=1 / 30)
            written.append(out / f"task{k}.gif")
    except Exception as err:  # a missing GL backend surfaces as several error types
        warnings.warn(
            f"no video: rendering failed ({type(err).__name__}: {err}). MuJoCo renders "
            "offscreen with EGL (GPU machines: apt install libegl1; MUJOCO_GL=egl) or OSMesa "
            "(CPU: apt install libosmesa6; MUJOCO_GL=osmesa)",
            stacklevel=2,
        )
    finally:
        env.close()
    return written
