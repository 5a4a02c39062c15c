"""Held-out evaluation of a meta-learner: the literature's K-step adaptation protocol, once.

Training's periodic and final evaluation, ``scripts/evaluate.py`` and the benchmarks all call
:func:`evaluate_adaptation` on tasks from :func:`held_out_tasks`, so a run's own evaluation and
``evaluate.py`` with the same seed face the same tasks and the same learning rates.

The protocol (Finn et al. 2017, and rllab's MAML code): on each held-out task, sample fresh
episodes with the current (adapted) policy, take one inner step on them, and repeat; the first
step uses the inner learning rate, later steps half of it (:func:`adaptation_lrs`). The reported
figure per step is the mean over tasks of each task's mean episode return, with a 95% confidence
interval over tasks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from metarl.supervised.episodes import mean_confidence_interval
from metarl.tasks import Task

__all__ = [
    "HELD_OUT_SAMPLER_SEED_OFFSET",
    "AdaptationResult",
    "adaptation_lrs",
    "confidence_interval",
    "evaluate_adaptation",
    "held_out_rng",
    "held_out_tasks",
]

# Held-out evaluation draws its env resets and action noise from seed + this offset, so they never
# coincide with the training sampler's stream of the same seed.
HELD_OUT_SAMPLER_SEED_OFFSET = 10_000


def held_out_rng(seed: int) -> np.random.Generator:
    """The generator of held-out tasks for ``seed`` (training draws from ``[seed, 1]``)."""
    return np.random.default_rng([seed, 2])


def held_out_tasks(sampler: Any, num_tasks: int, seed: int) -> list[Task]:
    """The ``num_tasks`` held-out tasks of ``seed``: the one rule every evaluation uses.

    Args:
        sampler: anything with ``sample_tasks(n, rng)`` (a sampler or a task env).
        num_tasks: how many tasks.
        seed: the run's (or the evaluation's) seed.
    """
    return sampler.sample_tasks(num_tasks, held_out_rng(seed))


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


def confidence_interval(values: np.ndarray) -> float:
    """Half-width of the normal-approximation 95% confidence interval of the mean of ``values``.

    The few-shot sibling's :func:`metarl.supervised.episodes.mean_confidence_interval` is the one
    implementation; 0 for a single value.
    """
    return mean_confidence_interval(torch.as_tensor(np.asarray(values, dtype=np.float64)))[1]


class _Adapter(Protocol):
    """What :func:`evaluate_adaptation` needs of an agent."""

    policy: Any

    def adapt(self, episodes: Any, params: Any = None, lr: Any = None) -> Any: ...


@dataclasses.dataclass
class AdaptationResult:
    """Returns on held-out tasks before and after each adaptation step.

    Attributes:
        per_task_returns: ``[K + 1, tasks]`` mean episode return of every task at every step.
        lrs: the learning rate of each step (numbers; ``"learned"`` for Meta-SGD rates).
        episodes_per_task: episodes per task and step.
        params: per-task adapted parameters after the last step (``None`` when ``K = 0``).
    """

    per_task_returns: np.ndarray
    lrs: list[Any]
    episodes_per_task: int
    params: Any = None

    def rows(self) -> list[dict[str, float]]:
        """One row per step: ``step``, ``mean_return``, ``ci95``."""
        return [
            {"step": k, "mean_return": float(r.mean()), "ci95": confidence_interval(r)}
            for k, r in enumerate(self.per_task_returns)
        ]

    def table(self) -> str:
        """The rows as a small text table."""
        lines = ["  step   mean return   95% CI      lr"]
        for row in self.rows():
            k = row["step"]
            lr = "" if k == 0 else _describe(self.lrs[k - 1])
            lines.append(f"  {k:4d}   {row['mean_return']:11.2f}   ±{row['ci95']:<8.2f} {lr}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary: steps, learning rates and per-task returns."""
        return {
            "tasks": int(self.per_task_returns.shape[1]),
            "episodes_per_task": self.episodes_per_task,
            "lrs": [_describe(lr) for lr in self.lrs],
            "steps": self.rows(),
            "per_task_returns": self.per_task_returns.tolist(),
        }


def _describe(lr: Any) -> float | str:
    return "learned" if isinstance(lr, dict) else float(lr)


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
        The :class:`AdaptationResult`.
    """
    params = None
    out = []
    for step in range(len(lrs) + 1):
        episodes = sampler.sample(agent.policy, tasks, params)
        out.append(episodes.episode_returns().mean(1).cpu().numpy())
        if step < len(lrs):
            params = agent.adapt(episodes, params, lrs[step])
    return AdaptationResult(np.stack(out), list(lrs), sampler.episodes_per_task, params)
