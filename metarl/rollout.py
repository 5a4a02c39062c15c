"""Vectorized multi-task rollouts: every task's episodes step together in one vector env.

:class:`MultiTaskSampler` owns one Gymnasium vector env of ``tasks x episodes_per_task`` copies of a
task env. :meth:`MultiTaskSampler.sample` gives each copy its task (``set_attr("task", ...)``),
resets all of them, and steps them in lock-step; at every step *one* batched policy call evaluates
every task's own parameters on its own observations. The result is an :class:`Episodes` batch of
tensors shaped ``[tasks, episodes, horizon, ...]``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.episodes import Episodes, env_actions
from metarl.policies import Policy
from metarl.slots import draw_randomness, load_sampler_state, record_call, run_slots, sampler_state
from metarl.tasks import Task, draw_tasks, make_task_env, make_task_vec, resolve_env_id

__all__ = ["Episodes", "MultiTaskSampler", "env_actions"]


@contextlib.contextmanager
def _restore_threads(threads: int) -> Iterator[None]:
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class MultiTaskSampler:
    """Samples ``episodes_per_task`` episodes for each of several tasks, all in lock-step.

    Args:
        env_id: a registered task env id (``import envs`` registers the bundled ones).
        num_tasks: tasks per call (``T``).
        episodes_per_task: episodes per task (``E``); the vector env holds ``T * E`` envs.
        horizon: steps per episode; defaults to the env's ``max_episode_steps``.
        vectorization_mode: ``None`` (the env's batched implementation when it has one, else
            ``"sync"``), ``"vector_entry_point"``, ``"sync"`` or ``"async"``.
        device: where the policy runs; observations cross to it once per step.
        seed: seeds the env resets and the action noise.
        env_kwargs: keyword arguments for the env.
        vector_kwargs: keyword arguments for the vector env only (e.g. a batched MuJoCo env's
            ``num_threads``).
        sampling_threads: torch CPU threads while stepping (``None``: leave as is). One by
            default: the per-step policy call is small, and torch's spinning OpenMP threads would
            take the cores from the env's own (e.g. MuJoCo's) worker threads, which costs up to
            5x on a 2-core machine.
        normalize_actions: the policy acts in ``[-1, 1]``, mapped onto the action space's
            bounds (see :func:`env_actions`); actions are clipped to the space either way.

    Raises:
        ValueError: for non-positive sizes or a missing horizon.
    """

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        horizon: int | None = None,
        vectorization_mode: str | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        env_kwargs: Mapping | None = None,
        vector_kwargs: Mapping | None = None,
        sampling_threads: int | None = 1,
        normalize_actions: bool = False,
    ) -> None:
        for name, value in (("num_tasks", num_tasks), ("episodes_per_task", episodes_per_task)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        env_id = resolve_env_id(env_id)  # "module:EnvId" imports module first
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.vector_kwargs = dict(vector_kwargs or {})
        self.sampling_threads = sampling_threads
        self.normalize_actions = normalize_actions
        self.vectorization_mode = vectorization_mode
        self.device = torch.device(device)
        self.num_tasks = num_tasks
        self.episodes_per_task = episodes_per_task
        self.task_env = make_task_env(env_id, **self.env_kwargs)
        self.vec = make_task_vec(
            env_id,
            num_tasks * episodes_per_task,
            vectorization_mode,
            vector_kwargs=self.vector_kwargs,
            **self.env_kwargs,
        )
        spec_horizon = gym.spec(env_id).max_episode_steps
        self.horizon = horizon if horizon is not None else spec_horizon
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(
                f"{env_id} registers no max_episode_steps; pass a positive horizon explicitly"
            )
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(self.rng.integers(2**62)))
        self.total_steps = 0
        self.total_time = 0.0
        self.last_steps_per_second = float("nan")

    def resized(self, num_tasks: int, episodes_per_task: int, seed: int) -> MultiTaskSampler:
        """A new sampler for the same env and device with other batch sizes and seed."""
        return MultiTaskSampler(
            self.env_id,
            num_tasks,
            episodes_per_task,
            horizon=self.horizon,
            vectorization_mode=self.vectorization_mode,
            device=self.device,
            seed=seed,
            env_kwargs=self.env_kwargs,
            vector_kwargs=self.vector_kwargs,
            sampling_threads=self.sampling_threads,
            normalize_actions=self.normalize_actions,
        )

    def state_dict(self) -> dict:
        """RNG states and counters (everything a resumed run needs to continue identically)."""
        return sampler_state(self)

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict` (see :func:`load_sampler_state`)."""
        load_sampler_state(self, state)

    def sample_tasks(self, n: int, rng: np.random.Generator, split: str = "train") -> list[Task]:
        """Draw ``n`` tasks of ``split`` from the env's distribution, using only ``rng``."""
        return draw_tasks(self.task_env.unwrapped, n, rng, split)

    def sample(
        self,
        policy: Policy,
        tasks: Sequence[Task],
        params: Mapping[str, Tensor] | None = None,
    ) -> Episodes:
        """Roll out ``episodes_per_task`` episodes of every task.

        Args:
            policy: the policy to act with (evaluated without gradients).
            tasks: exactly ``num_tasks`` tasks.
            params: ``None`` for the policy's own parameters, a dict of shared parameters, or a
                dict of per-task parameters with a leading dimension of ``num_tasks``.

        Returns:
            The :class:`Episodes`, on the sampler's device.
        """
        if len(tasks) != self.num_tasks:
            raise ValueError(f"this sampler runs {self.num_tasks} tasks per call, got {len(tasks)}")
        start = time.perf_counter()
        draws = draw_randomness(self, policy)
        threads = torch.get_num_threads()
        if self.sampling_threads and self.device.type == "cpu":
            torch.set_num_threads(self.sampling_threads)
        with _restore_threads(threads):
            episodes = run_slots(
                self.vec, policy, tasks, params, draws, self.device, self.normalize_actions
            )
        record_call(self, episodes.num_steps, time.perf_counter() - start)
        return episodes

    def close(self) -> None:
        """Close the envs."""
        self.vec.close()
        self.task_env.close()
