"""The run folder: resolved config, task sets, a metrics file and checkpoints.

Layout of ``runs/<timestamp>-<env>-<agent>/``::

    config.json          the resolved configuration (script and agent)
    train_tasks.jsonl    the tasks of every iteration, one JSON line per iteration
    metrics.jsonl        one JSON line per iteration
    checkpoints/         iter_XXXXXX.pt (the last few), best.pt, last.pt
    eval.json            held-out evaluation, when the run finishes
    tensorboard/         TensorBoard events, when the tensorboard package is installed
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metarl.checkpoint import load_checkpoint, save_checkpoint
from metarl.tasks import Task

__all__ = ["RunDir", "RunDirError"]


class RunDirError(ValueError):
    """A folder given as a run is not one."""


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunDir:
    """A run folder (created, or opened to resume).

    Args:
        path: the folder.
        keep: number of periodic checkpoints to keep (besides ``best.pt`` and ``last.pt``).
    """

    def __init__(self, path: str | Path, keep: int = 3) -> None:
        self.path = Path(path)
        self.keep = keep
        self.checkpoints = self.path / "checkpoints"
        self._writer: Any = None
        self._writer_failed = False

    @classmethod
    def create(
        cls, out: str | Path, env_id: str, agent: str, config: Mapping, keep: int = 3
    ) -> RunDir:
        """Make a new folder ``out/<timestamp>-<env>-<agent>`` and write ``config.json``."""
        env_name = env_id.split("/")[-1]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(out) / f"{stamp}-{env_name}-{agent}"
        base.parent.mkdir(parents=True, exist_ok=True)
        path, n = base, 1
        while True:  # mkdir claims the name atomically: runs started together get -2, -3, ...
            try:
                path.mkdir()
                break
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")
        run = cls(path, keep)
        run.checkpoints.mkdir()
        (path / "config.json").write_text(json.dumps(dict(config), indent=2, default=list) + "\n")
        return run

    @classmethod
    def open(cls, path: str | Path, keep: int = 3) -> RunDir:
        """Open an existing run folder.

        Raises:
            RunDirError: if ``path`` does not exist or holds no ``config.json``.
        """
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"run folder {path} does not exist")
        if not (path / "config.json").is_file():
            raise RunDirError(
                f"{path} is not a run folder (no config.json); pass a folder made by "
                "scripts/train.py, e.g. runs/<timestamp>-<env>-<agent>"
            )
        return cls(path, keep)

    def config(self) -> dict[str, Any]:
        """The saved configuration."""
        return json.loads((self.path / "config.json").read_text())

    def log_tasks(self, iteration: int, tasks: Sequence[Task]) -> None:
        """Append the tasks of one iteration to ``train_tasks.jsonl``."""
        row = {"iteration": iteration, "tasks": [Task(t).to_json() for t in tasks]}
        with open(self.path / "train_tasks.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def log_metrics(self, row: Mapping[str, Any]) -> None:
        """Append one row to ``metrics.jsonl``."""
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        writer = self._tensorboard()
        if writer is not None and "iteration" in row:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "iteration":
                    writer.add_scalar(key, value, row["iteration"])
            writer.flush()

    def log_eval(self, row: Mapping[str, Any]) -> None:
        """Append one held-out evaluation to ``eval_history.jsonl``; its per-task arrays
        (returns, successes, families) stay in ``eval.json`` only."""
        summary = {k: v for k, v in row.items() if not k.startswith("per_task_")}
        with open(self.path / "eval_history.jsonl", "a") as f:
            f.write(json.dumps(summary) + "\n")

    def evaluated(self) -> set[int]:
        """The iterations after which a held-out evaluation was logged."""
        return {row["iteration"] for row in self._rows("eval_history.jsonl")}

    def _tensorboard(self) -> Any:
        """A TensorBoard writer when the optional package is installed, else None."""
        if self._writer is None and not self._writer_failed:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                self._writer_failed = True
                return None
            self._writer = SummaryWriter(str(self.path / "tensorboard"))
        return self._writer

    def close(self) -> None:
        """Close the TensorBoard writer (its thread and file), if one was opened."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def metrics(self) -> list[dict[str, Any]]:
        """All metric rows so far."""
        return self._rows("metrics.jsonl")

    def _rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of one of the run's JSON-lines logs (none when it does not exist yet)."""
        file = self.path / name
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]

    def truncate_logs(self, iterations: int) -> None:
        """Drop what was logged after the checkpoint of ``iterations`` (kept: metric and task rows
        of iterations ``< iterations``, evaluations after at most ``iterations`` iterations)."""
        for name, limit in (
            ("metrics.jsonl", iterations),
            ("train_tasks.jsonl", iterations),
            ("eval_history.jsonl", iterations + 1),
        ):
            file = self.path / name
            if file.exists():
                rows = [line for line in file.read_text().splitlines() if line.strip()]
                kept = [r for r in rows if json.loads(r)["iteration"] < limit]
                file.write_text("".join(r + "\n" for r in kept))

    def save(self, iteration: int, state: dict[str, Any], score: float | None = None) -> Path:
        """Write ``iter_<n>.pt`` and ``last.pt``; ``best.pt`` when ``score`` is the best so far."""
        path = save_checkpoint(self.checkpoints / f"iter_{iteration:06d}.pt", state)
        shutil.copyfile(path, self.checkpoints / ".last.tmp")
        (self.checkpoints / ".last.tmp").replace(self.checkpoints / "last.pt")
        best_file = self.checkpoints / "best.json"
        best = json.loads(best_file.read_text())["score"] if best_file.exists() else -math.inf
        if score is not None and math.isfinite(score) and score > best:
            save_checkpoint(self.checkpoints / "best.pt", state)
            best_file.write_text(json.dumps({"score": score, "iteration": iteration}))
        periodic = sorted(self.checkpoints.glob("iter_*.pt"))
        for old in periodic[: max(len(periodic) - self.keep, 0)]:
            old.unlink()
        return path

    def checkpoint_path(self, which: str = "last") -> Path:
        """``last``, ``best`` or a file path."""
        if which in ("last", "best"):
            return self.checkpoints / f"{which}.pt"
        return Path(which)

    def load(self, which: str = "last", map_location: str = "cpu") -> dict[str, Any]:
        """Load a checkpoint of this run (see :func:`metarl.checkpoint.load_checkpoint`)."""
        return load_checkpoint(self.checkpoint_path(which), map_location)

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``data`` as JSON to a file in the run folder."""
        path = self.path / name
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path
