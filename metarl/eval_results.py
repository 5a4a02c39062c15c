"""The result of a K-step adaptation evaluation, and its table, JSON, CSV files and plot.

:func:`metarl.evaluation.evaluate_adaptation` fills an :class:`AdaptationResult`; training's
held-out evaluation and ``scripts/evaluate.py`` print, write and plot it with the functions here.
Every figure per step is the mean over tasks of a per-task value with a 95% confidence interval
over tasks (:func:`confidence_interval`): the mean episode return, and, where the env reports
``info["success"]`` (Meta-World), the fraction of episodes that succeeded. Tasks with a string
``"family"`` (Meta-World's ML10/ML45) are also summarized per family.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.supervised.episodes import mean_confidence_interval
from metarl.tasks import Task, save_tasks

__all__ = [
    "AdaptationResult",
    "confidence_interval",
    "plot_adaptation",
    "task_families",
    "write_results",
]


def confidence_interval(values: np.ndarray) -> float:
    """Half-width of the normal-approximation 95% confidence interval of the mean of ``values``.

    The few-shot sibling's :func:`metarl.supervised.episodes.mean_confidence_interval` is the one
    implementation; 0 for a single value.
    """
    return mean_confidence_interval(torch.as_tensor(np.asarray(values, dtype=np.float64)))[1]


def task_families(tasks: Sequence[Task]) -> list[str] | None:
    """Each task's ``"family"`` when every task names one as a string (ML10/ML45), else None."""
    families = [task.get("family") for task in tasks]
    return families if all(isinstance(f, str) for f in families) else None


def _step_rows(returns: np.ndarray, successes: np.ndarray | None) -> list[dict[str, float]]:
    """One row per step from ``[K + 1, tasks]`` per-task returns (and success rates)."""
    rows = []
    for k, r in enumerate(returns):
        row = {"step": k, "mean_return": float(r.mean()), "ci95": confidence_interval(r)}
        if successes is not None:
            s = successes[k]
            row.update(success_rate=float(s.mean()), success_ci95=confidence_interval(s))
        rows.append(row)
    return rows


@dataclasses.dataclass
class AdaptationResult:
    """Returns (and success rates) on held-out tasks before and after each adaptation step.

    Attributes:
        per_task_returns: ``[K + 1, tasks]`` mean episode return of every task at every step.
        lrs: the learning rate of each step (numbers; ``"learned"`` for Meta-SGD rates).
        episodes_per_task: episodes per task and step.
        params: per-task adapted parameters after the last step (``None`` when ``K = 0``).
        per_task_successes: ``[K + 1, tasks]`` fraction of every task's episodes that succeeded
            at every step; None when the env reports no ``info["success"]``.
        families: each task's family (:func:`task_families`); None when tasks name none.
    """

    per_task_returns: np.ndarray
    lrs: list[Any]
    episodes_per_task: int
    params: Any = None
    per_task_successes: np.ndarray | None = None
    families: list[str] | None = None

    def rows(self) -> list[dict[str, float]]:
        """One row per step: ``step``, ``mean_return``, ``ci95`` (and ``success_rate``,
        ``success_ci95`` where the env reports success)."""
        return _step_rows(self.per_task_returns, self.per_task_successes)

    def family_rows(self) -> dict[str, list[dict[str, float]]]:
        """:meth:`rows` over each family's tasks only, by family (sorted); empty without
        families."""
        out = {}
        for family in sorted(set(self.families or ())):
            cols = [i for i, f in enumerate(self.families) if f == family]
            successes = self.per_task_successes
            out[family] = _step_rows(
                self.per_task_returns[:, cols], None if successes is None else successes[:, cols]
            )
        return out

    def table(self) -> str:
        """The rows as a small text table, then one line per family where tasks have one."""
        success = self.per_task_successes is not None
        header = f"  {'step':>4}   {'mean return':>11}   {'95% CI':<9}"
        if success:
            header += f"   {'success':>7}   {'95% CI':<7}"
        lines = [header + " lr"]  # the same widths as the rows below
        for row in self.rows():
            k = row["step"]
            lr = "" if k == 0 else _describe(self.lrs[k - 1])
            cells = f"  {k:4d}   {row['mean_return']:11.2f}   ±{row['ci95']:<8.2f}"
            if success:
                cells += f"   {row['success_rate']:7.3f}   ±{row['success_ci95']:<6.3f}"
            lines.append(f"{cells} {lr}")
        by_family = self.family_rows()
        if by_family:
            what = "success rate" if success else "mean return"
            lines.append(f"  per family (tasks): {what} at steps 0..{len(self.lrs)}")
            for family, rows in by_family.items():
                n = self.families.count(family)
                key, fmt = ("success_rate", "7.3f") if success else ("mean_return", "11.2f")
                values = " ".join(f"{row[key]:{fmt}}" for row in rows)
                lines.append(f"  {family:<28s} {n:4d}  {values}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary: steps, learning rates, per-task returns (and per-family rows,
        per-task successes and families where there are some)."""
        out: dict[str, Any] = {
            "tasks": int(self.per_task_returns.shape[1]),
            "episodes_per_task": self.episodes_per_task,
            "lrs": [_describe(lr) for lr in self.lrs],
            "steps": self.rows(),
        }
        if self.families is not None:
            out["families"] = {
                family: {"tasks": self.families.count(family), "steps": rows}
                for family, rows in self.family_rows().items()
            }
        out["per_task_returns"] = self.per_task_returns.tolist()
        if self.per_task_successes is not None:
            out["per_task_successes"] = self.per_task_successes.tolist()
        if self.families is not None:
            out["per_task_families"] = list(self.families)
        return out


def _describe(lr: Any) -> float | str:
    return "learned" if isinstance(lr, dict) else float(lr)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_results(
    result: AdaptationResult, out: Path, header: dict[str, Any], tasks: Sequence[Task]
) -> None:
    """``results.json`` (``header`` plus the summary), ``results.csv`` (one row per step),
    ``results_by_family.csv`` (one row per family and step, where tasks have families) and
    ``tasks.json`` (the tasks, for ``--tasks-file``) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    save_tasks(str(out / "tasks.json"), tasks)
    (out / "results.json").write_text(json.dumps({**header, **result.to_json()}, indent=2) + "\n")
    _write_csv(out / "results.csv", result.rows())
    by_family = result.family_rows()
    if by_family:
        rows = [{"family": f, **row} for f, family_rows in by_family.items() for row in family_rows]
        _write_csv(out / "results_by_family.csv", rows)


def plot_adaptation(result: AdaptationResult, path: Path, title: str) -> bool:
    """Mean return against adaptation step with its confidence band, as a PNG; beside it the
    success rate where the env reports success (a thin line per family where tasks have one).

    Returns:
        False (and warns) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        hint = 'no plot: matplotlib is not installed (pip install -e ".[viz]")'
        warnings.warn(hint, stacklevel=2)
        return False
    rows = result.rows()
    steps = [r["step"] for r in rows]
    panels = [("mean_return", "ci95", "mean return (95% CI)")]
    if result.per_task_successes is not None:
        panels.append(("success_rate", "success_ci95", "success rate (95% CI)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (key, ci_key, label) in zip(axes[0], panels, strict=True):
        mean = np.array([r[key] for r in rows])
        ci = np.array([r[ci_key] for r in rows])
        ax.plot(steps, mean, marker="o", label="all tasks")
        ax.fill_between(steps, mean - ci, mean + ci, alpha=0.25)
        if key == "success_rate":
            for family, family_rows in result.family_rows().items():
                ax.plot(steps, [r[key] for r in family_rows], lw=0.8, alpha=0.7, label=family)
            if result.families:
                ax.legend(fontsize=6)
        ax.set_xlabel("adaptation steps")
        ax.set_ylabel(label)
        ax.set_xticks(steps)
    if len(panels) > 1:
        fig.suptitle(title, fontsize=9)
    else:
        axes[0][0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
