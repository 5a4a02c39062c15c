"""What every metarl sampler shares: sizes, the env and its horizon, RNG streams, counters.

A sampler subclasses :class:`SamplerBase`, adds where its envs live, and writes ``sample``,
``_options`` (its own constructor arguments, so that :meth:`SamplerBase.resized` can rebuild it)
and ``close``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.checks import require_positive_ints
from metarl.tasks import Task, draw_tasks, make_task_env, resolve_env_id

__all__ = ["SamplerBase"]


def _generator_device(state: torch.Tensor) -> str:
    """Which device a ``torch.Generator`` state came from (CPU states are 5056 bytes)."""
    cpu_size = torch.Generator().get_state().numel()
    return "cpu" if state.numel() == cpu_size else "cuda"


class SamplerBase:
    """The state every sampler has, built the same way (so the same seed gives the same streams).

    Args:
        env_id: a registered task env id, or ``module:EnvId`` (the module is imported here).
        num_tasks: tasks per call (``T``).
        episodes_per_task: episodes per task (``E``).
        horizon: steps per episode; defaults to the env's ``max_episode_steps``.
        vectorization_mode: the vector env kind (see :func:`metarl.tasks.make_task_vec`).
        device: where the policy runs and the episodes are returned.
        seed: seeds the env resets and the action noise.
        env_kwargs: keyword arguments for the env.
        vector_kwargs: keyword arguments for the vector env only.
        normalize_actions: see :func:`metarl.episodes.env_actions`.

    Raises:
        ValueError: for non-positive sizes or a missing horizon.
    """

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        *,
        horizon: int | None = None,
        vectorization_mode: str | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        env_kwargs: Mapping | None = None,
        vector_kwargs: Mapping | None = None,
        normalize_actions: bool = False,
    ) -> None:
        require_positive_ints(num_tasks=num_tasks, episodes_per_task=episodes_per_task)
        self._spec_id = env_id  # as given: a remote worker resolves "module:EnvId" itself
        self.env_id = resolve_env_id(env_id)
        self.num_tasks = num_tasks
        self.episodes_per_task = episodes_per_task
        self.vectorization_mode = vectorization_mode
        self.device = torch.device(device)
        self.env_kwargs = dict(env_kwargs or {})
        self.vector_kwargs = dict(vector_kwargs or {})
        self.normalize_actions = normalize_actions
        self.task_env = make_task_env(self.env_id, **self.env_kwargs)
        spec_horizon = gym.spec(self.env_id).max_episode_steps
        self.horizon = horizon if horizon is not None else spec_horizon
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(
                f"{self.env_id} registers no max_episode_steps; pass a positive horizon explicitly"
            )
        self.observation_space = self.task_env.observation_space
        self.action_space = self.task_env.action_space
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(self.rng.integers(2**62)))
        self.total_steps = 0
        self.total_time = 0.0
        self.last_steps_per_second = float("nan")

    def _options(self) -> dict[str, Any]:
        """The constructor's keyword arguments besides env, sizes and seed."""
        return dict(
            horizon=self.horizon,
            vectorization_mode=self.vectorization_mode,
            device=self.device,
            env_kwargs=self.env_kwargs,
            vector_kwargs=self.vector_kwargs,
            normalize_actions=self.normalize_actions,
        )

    def resized(self, num_tasks: int, episodes_per_task: int, seed: int) -> Any:
        """A new sampler of the same kind, env and options with other sizes and seed."""
        return type(self)(self._spec_id, num_tasks, episodes_per_task, seed=seed, **self._options())

    def sample_tasks(self, n: int, rng: np.random.Generator, split: str = "train") -> list[Task]:
        """Draw ``n`` tasks of ``split`` from the env's distribution, using only ``rng``."""
        return draw_tasks(self.task_env.unwrapped, n, rng, split)

    def _check_tasks(self, tasks: Sequence[Task]) -> None:
        if len(tasks) != self.num_tasks:
            raise ValueError(f"this sampler runs {self.num_tasks} tasks per call, got {len(tasks)}")

    def _record_call(self, steps: int, elapsed: float) -> None:
        """Add one call to ``total_steps``, ``total_time`` and ``last_steps_per_second``."""
        self.total_steps += steps
        self.total_time += elapsed
        self.last_steps_per_second = steps / max(elapsed, 1e-9)

    def state_dict(self) -> dict:
        """RNG states and the step counter (all a resumed run needs to continue identically)."""
        return {
            "rng": self.rng.bit_generator.state,
            "generator": self.generator.get_state(),
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict`.

        A state saved on another device type (a CUDA run resumed on CPU, or the reverse) cannot
        restore the action-noise generator, whose state format is per device: it is reseeded from
        the restored ``rng`` instead (deterministic, but not the stream the run would have had),
        with a warning.
        """
        self.rng.bit_generator.state = state["rng"]
        saved_on = _generator_device(state["generator"])
        if saved_on == self.device.type:
            self.generator.set_state(state["generator"])
        else:
            warnings.warn(
                f"this sampler state was saved with a {saved_on} policy and is loaded on "
                f"{self.device.type}: the action noise is reseeded, so the run continues "
                f"deterministically but not as it would have on {saved_on} (resume with "
                f"--device {saved_on} to continue exactly)",
                RuntimeWarning,
                stacklevel=2,
            )
            self.generator.manual_seed(int(self.rng.integers(2**62)))
        self.total_steps = int(state["total_steps"])

    def close(self) -> None:
        """Close the single task env."""
        self.task_env.close()
