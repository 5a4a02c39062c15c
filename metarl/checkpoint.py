"""Checkpoints that are written atomically and can never run code when loaded.

:func:`save_checkpoint` writes to a temporary file in the same folder, flushes and fsyncs it, then
renames it over the target, so a crash leaves either the old file or the new one, never half of
one. :func:`load_checkpoint` uses ``torch.load(..., weights_only=True)``: tensors, numbers, strings
and containers only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not a metarl checkpoint."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` to ``path`` (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`, safely.

    Raises:
        CheckpointError: naming the file, the problem and, when there is one, another checkpoint
            in the same folder to use instead.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated / foreign files
        good = _last_good(path)
        hint = f"; the last good checkpoint is {good}" if good else ""
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a metarl checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}){hint}"
        ) from err
    if not isinstance(state, dict) or "agent" not in state:
        raise CheckpointError(f"{path} is not a metarl checkpoint (no agent state)")
    return state


def _last_good(broken: Path) -> Path | None:
    """The newest other checkpoint in ``broken``'s folder that loads (periodic ones first)."""
    others = [p for p in broken.parent.glob("*.pt") if p != broken]
    periodic = sorted((p for p in others if p.name.startswith("iter_")), reverse=True)
    rest = sorted((p for p in others if p not in periodic), key=lambda p: p.stat().st_mtime)
    for candidate in [*periodic, *reversed(rest)]:
        try:
            torch.load(candidate, map_location="cpu", weights_only=True)
        except Exception:
            continue
        return candidate
    return None
