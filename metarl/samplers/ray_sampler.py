"""A sampler whose vector envs live in Ray actors, on this machine or across a cluster.

:class:`RaySampler` keeps the local sampler's contract and results: the learner draws every call's
randomness exactly as :class:`~metarl.samplers.MultiTaskSampler` does
(:mod:`metarl.samplers.slots`), and each actor steps a contiguous slice of whole tasks given those
draws. With the same seed and sizes the episodes equal the local sampler's exactly (on CPU), and a
slice whose actor died is simply run again on a fresh actor: it is deterministic given the draws.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import itertools
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.checks import require_positive_ints
from metarl.episodes import Episodes
from metarl.policies import Policy
from metarl.samplers.base import SamplerBase
from metarl.samplers.slots import draw_randomness, run_slots
from metarl.tasks import Task, make_task_vec, resolve_env_id

__all__ = ["RaySampler", "import_ray"]

_RETRIES = 3  # fresh actors tried for one slice before the call fails


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ImportError: when Ray is not installed, naming the install command.
    """
    try:
        return importlib.import_module("ray")
    except ImportError as err:
        raise ImportError(
            f'--sampler ray needs Ray ({err}); install it with pip install -e ".[ray]"'
        ) from err


def _connect(ray: Any, address: str | None, workers: int) -> None:
    """Start a local Ray with ``workers`` CPUs (``address`` None) or join a running cluster.

    Raises:
        ConnectionError: when no Ray cluster answers at ``address``.
    """
    fix = (
        "start one with `ray start --head` and pass --ray-address HEAD_IP:6379 (or auto on a "
        "node of the cluster), or leave --ray-address out to start Ray on this machine"
    )
    if address not in (None, "auto") and ":" in address:
        # Ray itself retries an unreachable head for minutes; a plain TCP probe fails at once.
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as err:
            raise ConnectionError(f"no Ray cluster at {address!r} ({err}); {fix}") from err
    if ray.is_initialized():
        return
    try:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as err:
        raise ConnectionError(f"no Ray cluster at {address!r}; {fix}") from err


class _SliceWorker:
    """A Ray actor: one vector env for a fixed number of tasks, stepped given the learner's draws.

    Args:
        env_id: the task env id (``module:Env-v0`` is imported here too).
        spec: the learner's registration of the env, registered here when no import did.
        imports: modules to import first (those that register user envs).
        sys_path: the learner's ``sys.path``, so the same modules import on this worker.
        num_envs: ``tasks x episodes_per_task`` of the slice.
        vectorization_mode: as for the local sampler.
        env_kwargs: keyword arguments for the env.
        vector_kwargs: keyword arguments for the vector env.
    """

    def __init__(
        self,
        env_id: str,
        spec: gym.envs.registration.EnvSpec,
        imports: Sequence[str],
        sys_path: Sequence[str],
        num_envs: int,
        vectorization_mode: str | None,
        env_kwargs: Mapping,
        vector_kwargs: Mapping,
    ) -> None:
        # Several actors share a machine: one torch thread and one MuJoCo thread each.
        torch.set_num_threads(1)
        sys.path[:0] = [p for p in sys_path if p not in sys.path]
        for module in imports:
            importlib.import_module(module)
        env_id = resolve_env_id(env_id)
        if env_id not in gym.registry:
            # Registered on the learner by a module we were not told about (``import envs`` in a
            # script): its spec names the entry points as import strings, which work here too.
            gym.registry[env_id] = spec
        self.vec = make_task_vec(
            env_id,
            num_envs,
            vectorization_mode,
            vector_kwargs=_one_thread(env_id, vectorization_mode, vector_kwargs),
            **env_kwargs,
        )

    def pid(self) -> int:
        """This actor's process id (for tests that kill it)."""
        return os.getpid()

    def run(
        self, payload: tuple, tasks: list, start: int, call_tasks: int, draws: Any, normalize: bool
    ) -> Episodes:
        """Run tasks ``start:start + len(tasks)`` of a call (see
        :func:`metarl.samplers.slots.run_slots`)."""
        policy, params = payload
        cpu = torch.device("cpu")
        return run_slots(self.vec, policy, tasks, params, draws, cpu, normalize, start, call_tasks)

    def close(self) -> None:
        """Close the vector env."""
        self.vec.close()


def _one_thread(env_id: str, mode: str | None, vector_kwargs: Mapping) -> dict:
    """``vector_kwargs`` for one core: ``num_threads=1`` (batched MuJoCo) and ``workers=0`` (no
    worker processes: Meta-World) when the env's batched implementation takes them."""
    kwargs = dict(vector_kwargs)
    entry = gym.spec(env_id).vector_entry_point
    if mode in (None, "vector_entry_point") and entry is not None:
        creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
        for name, value in (("num_threads", 1), ("workers", 0)):
            if name not in kwargs and name in inspect.signature(creator).parameters:
                kwargs[name] = value
    return kwargs


class RaySampler(SamplerBase):
    """Samples like :class:`~metarl.samplers.MultiTaskSampler`, with the envs in Ray actors.

    The actors are made once (each holds a vector env for a contiguous slice of whole tasks, so
    per-task parameters keep their shapes) and reused by every call.

    Args:
        env_id: a registered task env id, or ``module:EnvId``.
        num_tasks: tasks per call (``T``).
        episodes_per_task: episodes per task (``E``).
        workers: Ray actors (at most ``num_tasks`` are used).
        ray_address: ``None`` starts Ray on this machine with ``workers`` CPUs; ``"auto"`` or
            ``HOST:PORT`` joins a running cluster.
        imports: modules every actor imports before making the env (``--imports``).
        **options: as :class:`~metarl.samplers.base.SamplerBase` (``vector_kwargs`` go to each
            actor's vector env; ``device`` is the learner's: actors act on CPU).

    Raises:
        ImportError: when Ray is not installed.
        ConnectionError: when ``ray_address`` does not answer.
        ValueError: for non-positive sizes or a missing horizon.
    """

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        *,
        workers: int = 2,
        ray_address: str | None = None,
        imports: Sequence[str] = (),
        **options: Any,
    ) -> None:
        require_positive_ints(workers=workers)
        self._ray = import_ray()
        for module in imports:
            importlib.import_module(module)
        super().__init__(env_id, num_tasks, episodes_per_task, **options)
        self.imports = tuple(imports)
        self.workers = workers
        self.ray_address = ray_address
        _connect(self._ray, ray_address, workers)
        bounds = np.linspace(0, num_tasks, min(workers, num_tasks) + 1).round().astype(int)
        self._slices = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self._actors = [self._new_actor(i) for i in range(len(self._slices))]

    def _new_actor(self, i: int) -> Any:
        start, stop = self._slices[i]
        # No CPU reservation: a run holds its training sampler and a held-out sampler at once,
        # and reserved CPUs would leave the second one's actors pending forever; SPREAD still
        # places the actors across the cluster's nodes.
        actor_class = self._ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(_SliceWorker)
        # Relative entries ("" is the learner's working directory) would mean the actor's own.
        sys_path = [os.path.abspath(p) for p in sys.path]
        return actor_class.remote(
            self._spec_id,
            gym.spec(self.env_id),
            self.imports,
            sys_path,
            (stop - start) * self.episodes_per_task,
            self.vectorization_mode,
            self.env_kwargs,
            self.vector_kwargs,
        )

    def _options(self) -> dict:
        return {
            **super()._options(),
            "workers": self.workers,
            "ray_address": self.ray_address,
            "imports": self.imports,
        }

    def sample(
        self,
        policy: Policy,
        tasks: Sequence[Task],
        params: Mapping[str, Tensor] | None = None,
    ) -> Episodes:
        """Roll out ``episodes_per_task`` episodes of every task on the actors.

        Args:
            policy: the policy to act with.
            tasks: exactly ``num_tasks`` tasks.
            params: ``None``, shared parameters, or per-task parameters (leading ``num_tasks``).

        Returns:
            The :class:`Episodes` in task order, on the sampler's device.

        Raises:
            ray.exceptions.RayActorError: when a slice's actor dies ``_RETRIES`` times running.
        """
        self._check_tasks(tasks)
        ray = self._ray
        start_time = time.perf_counter()
        draws = draw_randomness(self, policy)
        draws.noise = draws.noise.cpu()
        cpu = {k: v.detach().cpu() for k, v in params.items()} if params is not None else None
        payload = ray.put((copy.deepcopy(policy).cpu(), cpu))  # once, shared by every actor
        E = self.episodes_per_task

        def launch(i: int) -> Any:
            a, b = self._slices[i]
            part = draws.tasks(a, b, E)
            actor, T = self._actors[i], self.num_tasks
            return actor.run.remote(payload, list(tasks[a:b]), a, T, part, self.normalize_actions)

        futures = [launch(i) for i in range(len(self._slices))]
        parts = []
        for i, future in enumerate(futures):
            for attempt in range(_RETRIES + 1):
                try:
                    parts.append(ray.get(future))
                    break
                except ray.exceptions.RayActorError:
                    if attempt == _RETRIES:
                        raise
                    # The slice is deterministic given the draws: a fresh actor gives the same data.
                    ray.kill(self._actors[i], no_restart=True)
                    self._actors[i] = self._new_actor(i)
                    future = launch(i)
        episodes = dataclasses.replace(Episodes.concat(parts, self.device), tasks=list(tasks))
        self._record_call(episodes.num_steps, time.perf_counter() - start_time)
        return episodes

    def actor_pids(self) -> list[int]:
        """The actors' process ids (for fault tests)."""
        return self._ray.get([actor.pid.remote() for actor in self._actors])

    def close(self) -> None:
        """Kill the actors and close the task env (Ray itself stays up for other samplers)."""
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        self._actors = []
        super().close()
