"""The Meta-World vector env: slots of any families, stepped in worker processes.

Meta-World is Python-bound (about 2k env steps/s per core against 13k for its physics alone), so
the slots are split into contiguous blocks, one per worker process, and every step goes to all
workers at once. In a worker, each slot holds a Meta-World env of its task's family; envs come
from a per-family pool, so a new iteration's tasks reuse the envs of the families already seen
(setting a goal costs nothing, building an env 65 ms and 19 MB). Idle envs beyond ``max_idle``
are closed, least recently used first.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import signal
import traceback
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.metaworld import HORIZON, MetaWorldEnv, apply_task, make_family_env
from metarl.threads import usable_cores
from metarl.vector import BatchedTaskVectorEnv

__all__ = ["MetaWorldVectorEnv", "SlotEnvs"]


class SlotEnvs:
    """``n`` slots of Meta-World envs in this process, each slot running its own task.

    Args:
        n: number of slots.
        max_idle: idle envs kept for reuse (None: ``n``).
    """

    def __init__(self, n: int, max_idle: int | None = None) -> None:
        self.n = n
        self.max_idle = n if max_idle is None else max_idle
        self.tasks: list[tuple[str, tuple[float, ...]] | None] = [None] * n
        self.envs: list[Any] = [None] * n
        self.applied: list[tuple[str, tuple[float, ...]] | None] = [None] * n
        self.idle: OrderedDict[int, tuple[str, Any]] = OrderedDict()
        self.built = 0  # Meta-World envs constructed, for tests and benchmarks

    def set_tasks(self, tasks: Sequence[tuple[str, tuple[float, ...]]]) -> None:
        """Give every slot its ``(family, rand_vec)``; envs are (re)assigned at the next reset."""
        self.tasks = list(tasks)

    def _release(self, i: int) -> None:
        family = self.applied[i][0]
        self.idle[id(self.envs[i])] = (family, self.envs[i])
        self.envs[i], self.applied[i] = None, None

    def _trim(self) -> None:
        while len(self.idle) > self.max_idle:
            _, (_, env) = self.idle.popitem(last=False)
            env.close()

    def _acquire(self, i: int, family: str) -> None:
        for key, (name, env) in reversed(self.idle.items()):
            if name == family:
                del self.idle[key]
                self.envs[i] = env
                return
        self.envs[i] = make_family_env(family)
        self.built += 1

    def reset(self, which: np.ndarray) -> np.ndarray:
        """Reset the slots in the boolean mask ``which``; their observations, ``[k, obs_dim]``."""
        index = np.flatnonzero(which)
        for i in index:  # free first, so that a family's envs move between slots
            if self.envs[i] is not None and self.applied[i][0] != self.tasks[i][0]:
                self._release(i)
        out = []
        for i in index:
            family, vec = self.tasks[i]
            if self.envs[i] is None:
                self._acquire(i, family)
            if self.applied[i] != self.tasks[i]:
                apply_task(self.envs[i], family, np.asarray(vec))
                self.applied[i] = self.tasks[i]
            out.append(self.envs[i].reset()[0])
        self._trim()  # after the slots took what they could reuse
        return np.asarray(out, dtype=np.float64)

    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step the ``active`` slots; observations, rewards and success flags of every slot."""
        obs = np.zeros((self.n, 39), dtype=np.float64)
        reward = np.zeros(self.n, dtype=np.float64)
        success = np.zeros(self.n, dtype=np.float64)
        for i in np.flatnonzero(active):
            o, r, _, _, info = self.envs[i].step(actions[i])
            obs[i], reward[i], success[i] = o, r, float(info["success"])
        return obs, reward, success

    def close(self) -> None:
        for env in [*self.envs, *(env for _, env in self.idle.values())]:
            if env is not None:
                env.close()
        self.envs, self.idle = [None] * self.n, OrderedDict()


def _worker(conn: Any, n: int, max_idle: int | None) -> None:
    """A worker process: serves :class:`SlotEnvs` calls until ``close`` or the learner's end."""
    # Ctrl-C reaches the whole process group: the learner saves and closes the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    slots = SlotEnvs(n, max_idle)
    while True:
        try:
            command, args = conn.recv()
        except (EOFError, OSError):  # the learner is gone
            slots.close()
            return
        try:
            result = getattr(slots, command)(*args) if command != "built" else slots.built
        except Exception:  # the learner re-raises it with the worker's traceback
            conn.send(("error", traceback.format_exc()))
            continue
        conn.send(("ok", result))
        if command == "close":
            conn.close()
            return


class MetaWorldVectorEnv(BatchedTaskVectorEnv):
    """``num_envs`` Meta-World slots, each with its own task (any family of the benchmark).

    Args:
        num_envs: number of slots.
        benchmark, family, benchmark_seed: as :class:`envs.metaworld.MetaWorldEnv`.
        workers: worker processes (None: the CPUs this process may use, at most ``num_envs``;
            0: step in this process).
        max_idle: idle envs each worker keeps for reuse (None: as many as it has slots).
        max_episode_steps: time limit (Meta-World's 500).
    """

    def __init__(
        self,
        num_envs: int,
        benchmark: str = "ML1",
        family: str | None = "reach-v3",
        benchmark_seed: int = 0,
        workers: int | None = None,
        max_idle: int | None = None,
        max_episode_steps: int | None = HORIZON,
    ) -> None:
        single = MetaWorldEnv(benchmark, family, benchmark_seed)
        if workers is None:
            workers = min(usable_cores(), num_envs)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
        workers = min(workers, num_envs)
        edges = np.linspace(0, num_envs, max(workers, 1) + 1).round().astype(int)
        self._blocks = [slice(a, b) for a, b in itertools.pairwise(edges)]
        self._local: SlotEnvs | None = None
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        if workers == 0:
            self._local = SlotEnvs(num_envs, max_idle)
        else:
            # fork: a spawned worker would re-run the user's script (no __main__ guard needed);
            # the workers use neither torch nor OpenMP, so forking a torch process is safe
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            for block in self._blocks:
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker, args=(child, block.stop - block.start, max_idle), daemon=True
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
        super().__init__(single, num_envs, max_episode_steps)

    def _call(self, command: str, per_block: Sequence[tuple]) -> list[Any]:
        if self._local is not None:
            return [getattr(self._local, command)(*per_block[0])]
        for conn, args in zip(self._conns, per_block, strict=True):
            conn.send((command, args))
        results = []
        for conn in self._conns:
            status, value = conn.recv()
            if status == "error":
                raise RuntimeError(f"a Meta-World worker failed:\n{value}")
            results.append(value)
        return results

    @property
    def envs_built(self) -> int:
        """Meta-World envs constructed so far, over all workers."""
        if self._local is not None:
            return self._local.built
        return sum(self._call("built", [()] * len(self._conns)))

    def _tasks_changed(self) -> None:
        slots = [(t["family"], tuple(t["rand_vec"])) for t in self._tasks]
        self._call("set_tasks", [(slots[b],) for b in self._blocks])

    def _reset_envs(self, which: np.ndarray) -> np.ndarray:
        parts = self._call("reset", [(which[b],) for b in self._blocks])
        return np.concatenate(parts)

    def _step_envs(self, actions: np.ndarray, active: np.ndarray):
        # (An env past its time limit is not active: a Meta-World env must not step again.)
        parts = self._call("step", [(actions[b], active[b]) for b in self._blocks])
        obs, reward, success = (np.concatenate(x) for x in zip(*parts, strict=True))
        return obs, reward, np.zeros(self.num_envs, dtype=bool), {"success": success}

    def close(self, **kwargs: Any) -> None:
        if self._local is not None:
            self._local.close()
        for conn, proc in zip(self._conns, self._procs, strict=True):
            try:
                conn.send(("close", ()))
                conn.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        self._conns, self._procs = [], []
        super().close(**kwargs)
