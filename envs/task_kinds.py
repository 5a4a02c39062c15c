"""Task kinds that several task families share: one number, and a direction to run in.

HalfCheetahDir and AntDir draw and check their directions here, so the two cannot disagree on what
a direction task is or on the message that says how to fix a bad one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from metarl.tasks import Task

__all__ = ["DirectionTasks", "task_number"]


def task_number(env_name: str, task: Mapping[str, Any], key: str) -> float:
    """The single number of a one-key task ``Task(<key>=<number>)``.

    Args:
        env_name: the family's name, for the messages (``"HalfCheetahVel"``).
        task: the task to read.
        key: its one key.

    Raises:
        ValueError: naming the expected form if the task has other keys or a non-number value.
    """
    form = f"Task({key}=<number>)"
    if set(task) != {key}:
        raise ValueError(f"a {env_name} task is {form}; got keys {sorted(task)}")
    value = Task(task)[key]
    if not isinstance(value, float):
        raise ValueError(f"a {env_name} task is {form}: {key} must be a number, got {value!r}")
    return value


class DirectionTasks:
    """Task-env mixin: run forward or backward, ``Task(direction=d)`` with ``d`` in ``{-1, +1}``.

    Both directions are equally likely, as in MAML's HalfCheetahDir and pytorch-maml-rl's AntDir.
    Put it before the family's base (``class AntDirEnv(DirectionTasks, AntTaskEnv)``).
    """

    task_key = "direction"

    def _sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        directions = 2 * rng.binomial(1, 0.5, size=n) - 1
        return [Task(direction=d) for d in directions]

    def _validate_task(self, task: Mapping[str, Any]) -> Task:
        name = type(self).__name__.removesuffix("Env")
        direction = task_number(name, task, "direction")
        if direction not in (-1.0, 1.0):
            raise ValueError(
                f"a {name} direction is -1.0 (backward) or 1.0 (forward), got {direction}"
            )
        return Task(direction=direction)
