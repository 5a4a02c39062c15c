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
from typing import Any

import torch
from torch import Tensor

from metarl.episodes import Episodes
from metarl.policies import Policy
from metarl.samplers.base import SamplerBase
from metarl.samplers.slots import draw_randomness, run_slots
from metarl.tasks import Task, make_task_vec

__all__ = ["MultiTaskSampler"]


@contextlib.contextmanager
def _restore_threads(threads: int) -> Iterator[None]:
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class MultiTaskSampler(SamplerBase):
    """Samples ``episodes_per_task`` episodes for each of several tasks, all in lock-step.

    Args:
        env_id: a registered task env id (``import envs`` registers the bundled ones).
        num_tasks: tasks per call (``T``).
        episodes_per_task: episodes per task (``E``); the vector env holds ``T * E`` envs.
        sampling_threads: torch CPU threads while stepping (``None``: leave as is). One by
            default: the per-step policy call is small, and torch's spinning OpenMP threads would
            take the cores from the env's own (e.g. MuJoCo's) worker threads, which costs up to
            5x on a 2-core machine.
        **options: ``horizon``, ``vectorization_mode`` (``None``: the env's batched
            implementation when it has one, else ``"sync"``), ``device``, ``seed``,
            ``env_kwargs``, ``vector_kwargs`` (e.g. a batched MuJoCo env's ``num_threads``) and
            ``normalize_actions``, as :class:`~metarl.samplers.base.SamplerBase` takes them.
    """

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        *,
        sampling_threads: int | None = 1,
        **options: Any,
    ) -> None:
        super().__init__(env_id, num_tasks, episodes_per_task, **options)
        self.sampling_threads = sampling_threads
        self.vec = make_task_vec(
            self.env_id,
            num_tasks * episodes_per_task,
            self.vectorization_mode,
            vector_kwargs=self.vector_kwargs,
            **self.env_kwargs,
        )

    def _options(self) -> dict:
        return {**super()._options(), "sampling_threads": self.sampling_threads}

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
        self._check_tasks(tasks)
        start = time.perf_counter()
        draws = draw_randomness(self, policy)
        threads = torch.get_num_threads()
        if self.sampling_threads and self.device.type == "cpu":
            torch.set_num_threads(self.sampling_threads)
        with _restore_threads(threads):
            episodes = run_slots(
                self.vec, policy, tasks, params, draws, self.device, self.normalize_actions
            )
        self._record_call(episodes.num_steps, time.perf_counter() - start)
        return episodes

    def close(self) -> None:
        """Close the envs."""
        self.vec.close()
        super().close()
