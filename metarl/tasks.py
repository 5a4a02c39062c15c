"""The task-env contract: what a task distribution looks like to metarl.

A *task env* is an ordinary :class:`gymnasium.Env` with three more members:

* ``sample_tasks(n, rng=None, split="train") -> list[Task]`` draws ``n`` tasks from the env's
  distribution, using only the :class:`numpy.random.Generator` it is given (or the env's own
  ``np_random``). ``task_splits`` names the splits an env has: ``("train",)`` for most, and
  ``("train", "test")`` for a benchmark with held-out test tasks (Meta-World); held-out evaluation
  draws from ``"test"`` where there is one;
* ``task`` (always set in ``__init__``), with ``set_task(task)`` validating and setting it and
  ``get_task()`` returning it;
* ``reset(options={"task": t})`` also sets the task.

Tasks are :class:`Task` values: small immutable mappings of floats, strings (a family name) or
tuples of floats that serialize to JSON, so a run can save the exact task sets it used.

:class:`TaskEnv` is a mixin that implements the contract around two methods a concrete env writes,
``_sample_tasks`` and ``_validate_task``. :func:`make_task_env` and :func:`make_task_vec` build
registered task envs and check the contract, with errors that say what to fix.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.checks import require_positive_ints

__all__ = [
    "Task",
    "TaskContractError",
    "TaskEnv",
    "check_task_env",
    "draw_tasks",
    "load_tasks",
    "make_task_env",
    "make_task_vec",
    "registered_task_envs",
    "resolve_env_id",
    "save_tasks",
    "task_splits",
]

NAMESPACE = "metarl"
_CONTRACT = ("sample_tasks", "set_task", "get_task", "task")


class TaskContractError(TypeError):
    """Raised when an env does not implement the task-env contract."""


def _freeze(value: Any, key: str) -> float | str | tuple:
    """Turn a task value (number, string, sequence, array) into floats / strings / nested tuples."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"task value {key!r} must be a number, a string or a sequence of numbers, got a bool"
        )
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"task value {key!r} must be finite, got {number}")
        return number
    if isinstance(value, (np.ndarray, Sequence)) and not isinstance(value, (str, bytes)):
        return tuple(_freeze(v, key) for v in value)
    raise ValueError(
        f"task value {key!r} must be a number, a string or a sequence of numbers, got "
        f"{type(value).__name__}"
    )


class Task(Mapping[str, Any]):
    """An immutable, hashable, JSON-serializable task description.

    Values are floats, strings or (nested) tuples of floats; arrays and lists given to the
    constructor are converted. ``dict(task)`` (or :meth:`to_json`) is plain JSON.

    Example:
        >>> task = Task(goal=[0.1, -0.2])
        >>> task["goal"]
        (0.1, -0.2)
        >>> Task.from_json(task.to_json()) == task
        True
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None, **values: Any) -> None:
        merged = {**dict(data or {}), **values}
        for key in merged:
            if not isinstance(key, str):
                raise ValueError(f"task keys must be strings, got {key!r}")
        object.__setattr__(self, "_data", {k: _freeze(v, k) for k, v in sorted(merged.items())})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Task is immutable; build a new Task instead")

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._data.items())
        return f"Task({inner})"

    def __reduce__(self):
        return (Task, (dict(self._data),))

    def to_json(self) -> dict[str, Any]:
        """Return a plain ``dict`` (tuples become lists) for :func:`json.dump`."""
        return json.loads(json.dumps(self._data))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Task:
        """Build a task from the output of :meth:`to_json`."""
        return cls(data)


def save_tasks(path: str, tasks: Sequence[Task]) -> None:
    """Write tasks to a JSON file (a list of objects)."""
    with open(path, "w") as f:
        json.dump([Task(t).to_json() for t in tasks], f, indent=1)


def load_tasks(path: str) -> list[Task]:
    """Read tasks written by :func:`save_tasks`.

    Raises:
        ValueError: if the file is not a JSON list of task objects.
    """
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a task file (invalid JSON: {err})") from err
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise ValueError(f"{path} is not a task file: expected a JSON list of objects")
    return [Task.from_json(d) for d in data]


class TaskEnv:
    """Mixin implementing the task-env contract for a :class:`gymnasium.Env` subclass.

    Put it first in the bases (``class MyEnv(TaskEnv, gym.Env)``) and implement:

    * ``_sample_tasks(n, rng) -> list[Task]``: draw ``n`` tasks using only ``rng``;
    * ``_validate_task(task) -> Task``: return the normalized task or raise ``ValueError`` naming
      what is wrong.

    Call ``self.set_task(...)`` in ``__init__`` with a default task. ``reset(options={"task": t})``
    sets the task before the env's own reset runs.

    An env with held-out test tasks sets ``task_splits = ("train", "test")`` and writes
    ``_sample_tasks(n, rng, split)``.
    """

    _task: Task
    task_splits: tuple[str, ...] = ("train",)

    def sample_tasks(
        self, n: int, rng: np.random.Generator | None = None, split: str = "train"
    ) -> list[Task]:
        """Draw ``n`` tasks from the env's distribution.

        Args:
            n: number of tasks, >= 1.
            rng: the generator to draw from; the env's own ``np_random`` when omitted.
            split: which of the env's ``task_splits`` to draw from.

        Raises:
            ValueError: if ``n`` is not a positive integer or the env has no such split.
        """
        if split not in self.task_splits:
            raise ValueError(
                f"{type(self).__name__} has task splits {self.task_splits}, not {split!r}"
                + ("; its held-out tasks are drawn from a separate seed" if split == "test" else "")
            )
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"sample_tasks needs a positive number of tasks, got {n!r}")
        if rng is None:
            rng = self.np_random  # type: ignore[attr-defined]
        elif not isinstance(rng, np.random.Generator):
            raise TypeError(
                "sample_tasks takes a numpy.random.Generator (np.random.default_rng(seed)), "
                f"got {type(rng).__name__}"
            )
        drawn = (
            self._sample_tasks(int(n), rng)
            if self.task_splits == ("train",)
            else self._sample_tasks(int(n), rng, split)  # type: ignore[call-arg]
        )
        return [self._validate_task(t) for t in drawn]

    def set_task(self, task: Mapping[str, Any]) -> None:
        """Validate and set the current task.

        Raises:
            ValueError: if the task has the wrong keys, shape or range.
        """
        if not isinstance(task, Mapping):
            raise ValueError(f"a task is a mapping such as Task(...), got {type(task).__name__}")
        self._task = self._validate_task(Task(task))

    def get_task(self) -> Task:
        """Return the current task."""
        return self._task

    @property
    def task(self) -> Task:
        """The current task; assigning to it validates like :meth:`set_task`."""
        return self._task

    @task.setter
    def task(self, value: Mapping[str, Any]) -> None:
        self.set_task(value)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset, first setting ``options["task"]`` when given."""
        if options and "task" in options:
            self.set_task(options["task"])
        return super().reset(seed=seed, options=options)  # type: ignore[misc]

    def _sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        raise NotImplementedError

    def _validate_task(self, task: Mapping[str, Any]) -> Task:
        raise NotImplementedError


def draw_tasks(env: Any, n: int, rng: np.random.Generator, split: str = "train") -> list[Task]:
    """``env.sample_tasks(n, rng)``, naming ``split`` only when it is not ``"train"`` (so that a
    hand-written env with the older ``sample_tasks(n, rng)`` keeps working)."""
    if split == "train":
        return env.sample_tasks(n, rng)
    if split not in task_splits(env):
        raise ValueError(f"{type(env).__name__} has task splits {task_splits(env)}, not {split!r}")
    return env.sample_tasks(n, rng, split=split)


def task_splits(env: Any) -> tuple[str, ...]:
    """The task splits of a task env, a vector env or a sampler (``("train",)`` unless declared)."""
    base = getattr(env, "task_env", env)
    base = getattr(base, "unwrapped", base)
    return tuple(getattr(base, "task_splits", ("train",)))


def registered_task_envs() -> list[str]:
    """Ids of the registered envs in the ``metarl/`` namespace (after ``import envs``)."""
    return sorted(i for i in gym.registry if i.startswith(f"{NAMESPACE}/"))


def resolve_env_id(env_id: str) -> str:
    """Gymnasium's ``"module:EnvId"`` spelling: import ``module`` (which registers the env) first.

    Returns:
        The plain env id.

    Raises:
        gymnasium.error.UnregisteredEnv: if the module cannot be imported.
    """
    if ":" not in env_id:
        return env_id
    module, name = env_id.split(":", 1)
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise gym.error.UnregisteredEnv(
            f"cannot import {module!r} for env {env_id!r} ({err}); check that the module is on "
            "the Python path (run from its folder, or pip install it)"
        ) from err
    return name


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    env_id = resolve_env_id(env_id)
    if env_id not in gym.registry:
        known = ", ".join(registered_task_envs()) or "none (did you `import envs`?)"
        raise gym.error.UnregisteredEnv(
            f"unknown env id {env_id!r}; registered task envs: {known}. "
            "Register your own with gymnasium.register(id=..., entry_point=...) in a module and "
            "name it with --imports your_module, or as --env your_module:YourEnv-v0."
        )
    return gym.registry[env_id]


def check_task_env(env: gym.Env, env_id: str = "env") -> None:
    """Check that ``env`` (or the env under its wrappers) implements the task-env contract.

    Raises:
        TaskContractError: naming every missing member and how to provide it.
    """
    base = env.unwrapped
    missing = [name for name in _CONTRACT if not hasattr(base, name)]
    if missing:
        raise TaskContractError(
            f"{env_id} ({type(base).__name__}) is not a task env: it lacks "
            f"{', '.join(missing)}. Subclass metarl.TaskEnv first "
            f"(class {type(base).__name__}(TaskEnv, gymnasium.Env)) and implement "
            "_sample_tasks(n, rng) and _validate_task(task)."
        )
    tasks = base.sample_tasks(1, np.random.default_rng(0))
    if not isinstance(tasks, list) or len(tasks) != 1 or not isinstance(tasks[0], Mapping):
        raise TaskContractError(
            f"{env_id}: sample_tasks(1, rng) must return a list of one task mapping, got {tasks!r}"
        )
    try:
        json.dumps(Task(tasks[0]).to_json())
    except (TypeError, ValueError) as err:
        raise TaskContractError(
            f"{env_id}: tasks must be JSON-serializable Task values: {err}"
        ) from err


def make_task_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` for a task env, checking the task-env contract.

    Args:
        env_id: a registered id such as ``"metarl/Particles2D-v0"``.
        **kwargs: passed to :func:`gymnasium.make`.

    Raises:
        gymnasium.error.UnregisteredEnv: for an unknown id, listing the registered task envs.
        TaskContractError: if the env misses part of the contract.
    """
    _spec(env_id)
    env = gym.make(env_id, **kwargs)
    try:
        check_task_env(env, env_id)
    except Exception:
        env.close()
        raise
    return env


def make_task_vec(
    env_id: str,
    num_envs: int,
    vectorization_mode: str | None = None,
    vector_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """``gymnasium.make_vec`` for a task env.

    Args:
        env_id: a registered task env id.
        num_envs: number of sub-environments, >= 1.
        vectorization_mode: ``"vector_entry_point"`` (the env's own batched implementation, the
            default when it has one), ``"sync"`` or ``"async"``.
        vector_kwargs: keyword arguments for the vector env only: the batched implementation's
            own (e.g. ``num_threads``), or ``SyncVectorEnv``/``AsyncVectorEnv``'s.
        **kwargs: env keyword arguments.

    Raises:
        gymnasium.error.UnregisteredEnv: for an unknown id.
        TaskContractError: if the env misses part of the contract.
        ValueError: for a bad ``num_envs`` or ``vectorization_mode``.
    """
    spec = _spec(env_id)
    require_positive_ints(num_envs=num_envs)
    modes = ("vector_entry_point", "sync", "async")
    if vectorization_mode is None:
        vectorization_mode = "vector_entry_point" if spec.vector_entry_point else "sync"
    if vectorization_mode not in modes:
        raise ValueError(f"vectorization_mode must be one of {modes}, got {vectorization_mode!r}")
    if vectorization_mode == "vector_entry_point" and spec.vector_entry_point is None:
        raise ValueError(f"{env_id} has no vector_entry_point; use vectorization_mode='sync'")
    if spec.entry_point is not None:
        make_task_env(env_id, **kwargs).close()  # checks the contract and the kwargs
    vector_kwargs = dict(vector_kwargs or {})
    if vectorization_mode == "vector_entry_point":
        # gymnasium hands a vector entry point its arguments through the env kwargs only
        kwargs = {**kwargs, **vector_kwargs}
        vector_kwargs = {}
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode=vectorization_mode,
        vector_kwargs=vector_kwargs,
        **kwargs,
    )
