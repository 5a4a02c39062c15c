"""What a meta-learner needs from a sampler, and the factory that picks one by name.

Agents, the training loop, evaluation and the scripts depend on :class:`Sampler` only. The local
:class:`~metarl.samplers.MultiTaskSampler` (every task's episodes in one vector env on this
machine, :mod:`metarl.samplers.local`) is the default; ``"ray"``
(:class:`~metarl.samplers.ray_sampler.RaySampler`, Ray actors on one machine or a cluster) is
imported only when chosen. Both run their slots with :mod:`metarl.samplers.slots`. Another sampler
registers itself in :data:`SAMPLERS` under its own name and is chosen with ``--sampler NAME``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.episodes import Episodes
from metarl.policies import Policy
from metarl.samplers.local import MultiTaskSampler
from metarl.tasks import Task

__all__ = ["SAMPLERS", "MultiTaskSampler", "Sampler", "SamplerChoice", "make_sampler"]


@runtime_checkable
class Sampler(Protocol):
    """Samples episodes of several tasks at once, each task with its own policy parameters.

    Attributes:
        env_id: the task env id.
        num_tasks: tasks per :meth:`sample` call.
        episodes_per_task: episodes per task per call.
        horizon: steps per episode.
        device: where the policy runs (observations and episodes live there).
        observation_space: a single env's observation space.
        action_space: a single env's action space.
        task_env: one (single) task env, for task validation and rendering.
        total_steps: env steps taken so far.
        total_time: seconds spent sampling so far.
        last_steps_per_second: env steps per second of the last call.
    """

    env_id: str
    num_tasks: int
    episodes_per_task: int
    horizon: int
    device: torch.device
    observation_space: gym.Space
    action_space: gym.Space
    task_env: gym.Env
    total_steps: int
    total_time: float
    last_steps_per_second: float

    def sample_tasks(self, n: int, rng: np.random.Generator, split: str = "train") -> list[Task]:
        """Draw ``n`` tasks of ``split`` from the env's task distribution with ``rng``."""
        ...

    def sample(
        self, policy: Policy, tasks: Sequence[Task], params: Mapping[str, Tensor] | None = None
    ) -> Episodes:
        """``episodes_per_task`` episodes of each of exactly ``num_tasks`` tasks.

        ``params``: None for the policy's own parameters, shared parameters, or per-task
        parameters with a leading dimension of ``num_tasks`` (task ``i`` acts with row ``i``).
        """
        ...

    def resized(self, num_tasks: int, episodes_per_task: int, seed: int) -> Sampler:
        """A sampler of the same kind and env with other sizes and seed."""
        ...

    def state_dict(self) -> dict:
        """RNG states and counters: everything a resumed run needs to continue identically."""
        ...

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict`."""
        ...

    def close(self) -> None:
        """Release the envs (and any workers)."""
        ...


@dataclasses.dataclass
class SamplerChoice:
    """Where episodes are sampled, to override a saved run's choice (``evaluate.py``).

    Attributes:
        sampler: local or ray.
        workers: Ray actors (--sampler ray).
        ray_address: Ray cluster to join: auto or HEAD_IP:6379 (--sampler ray).
    """

    sampler: str | None = None
    workers: int | None = None
    ray_address: str | None = None

    def apply(self, train: Mapping[str, Any]) -> dict[str, Any]:
        """A run's train config with the fields given here in place of its own."""
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return {**train, **given}


def _ray_sampler(env_id: str, num_tasks: int, episodes_per_task: int, **kwargs: Any) -> Sampler:
    """:class:`~metarl.samplers.ray_sampler.RaySampler`, imported on first use (Ray is an
    optional extra)."""
    from metarl.samplers.ray_sampler import RaySampler

    return RaySampler(env_id, num_tasks, episodes_per_task, **kwargs)


SAMPLERS: dict[str, Callable[..., Sampler]] = {"local": MultiTaskSampler, "ray": _ray_sampler}


def make_sampler(
    kind: str, env_id: str, num_tasks: int, episodes_per_task: int, **kwargs: Any
) -> Sampler:
    """The sampler called ``kind`` in :data:`SAMPLERS`, built with these arguments.

    Args:
        kind: ``"local"`` (one vector env on this machine), ``"ray"`` (Ray actors), or a name a
            plug-in registered.
        env_id: task env id.
        num_tasks: tasks per call.
        episodes_per_task: episodes per task per call.
        **kwargs: the sampler's own options (``horizon``, ``device``, ``seed``, ...).

    Raises:
        ValueError: for an unknown ``kind``, naming the known ones.
    """
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}; choose one of: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[kind](env_id, num_tasks, episodes_per_task, **kwargs)
