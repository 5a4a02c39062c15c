"""A base class for batched task vector envs (an env's own ``vector_entry_point``).

:class:`BatchedTaskVectorEnv` does the bookkeeping every batched implementation of a task env
needs, once: per-env tasks through ``set_attr("task", [...])`` (validated by the single env's own
``set_task``), per-env seeding that matches ``SyncVectorEnv`` (env ``i`` gets ``seed + i``), the
registration's time limit, and Gymnasium's next-step autoreset. A subclass writes the physics for
the whole batch in :meth:`_reset_envs` and :meth:`_step_envs`.

Beyond Gymnasium's API, :meth:`BatchedTaskVectorEnv.pause_envs` stops stepping envs until the next
``reset``: a sampler whose episode in an env has ended for this call pauses it, so that an env
family with early termination (AntDir) does not pay the physics of episodes nobody reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metarl.checks import require_positive_ints
from metarl.tasks import Task, draw_tasks

__all__ = ["BatchedTaskVectorEnv"]


class BatchedTaskVectorEnv(VectorEnv):
    """Vector env stepping ``num_envs`` copies of a task env with array operations.

    Args:
        single_env: an instance of the single task env; supplies the spaces, the task validation,
            the default task and ``sample_tasks``.
        num_envs: number of sub-environments.
        max_episode_steps: time limit (truncation) per episode; ``None`` for none.

    Subclasses implement :meth:`_reset_envs` and :meth:`_step_envs`, and may override
    :meth:`_tasks_changed` to cache task arrays.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, single_env: gym.Env, num_envs: int, max_episode_steps: int | None) -> None:
        require_positive_ints(num_envs=num_envs)
        self.single_env = single_env
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = single_env.observation_space
        self.single_action_space = single_env.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._tasks: list[Task] = [single_env.unwrapped.get_task()] * num_envs
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._paused = np.zeros(num_envs, dtype=bool)
        self._obs: np.ndarray | None = None  # the observations the last reset or step returned
        self._tasks_changed()

    # -- tasks ---------------------------------------------------------------------------------

    @property
    def tasks(self) -> list[Task]:
        """The task of every sub-environment."""
        return list(self._tasks)

    def sample_tasks(
        self, n: int, rng: np.random.Generator | None = None, split: str = "train"
    ) -> list[Task]:
        """Draw ``n`` tasks of ``split`` from the env's distribution (see the single env)."""
        rng = rng if rng is not None else self.np_random
        return draw_tasks(self.single_env.unwrapped, n, rng, split)

    def set_attr(self, name: str, values: Any) -> None:
        """Set an attribute per sub-environment; ``"task"`` takes one task or one per env."""
        if name != "task":
            raise AttributeError(f"{type(self).__name__} only supports set_attr('task', ...)")
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"need {self.num_envs} tasks (one per env), got {len(values)}")
        base = self.single_env.unwrapped
        validated = []
        for value in values:
            base.set_task(value)  # validates, with the single env's own error messages
            validated.append(base.get_task())
        self._tasks = validated
        self._tasks_changed()

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Per-env ``"task"``; any other attribute is read from the single env."""
        if name == "task":
            return tuple(self._tasks)
        return (getattr(self.single_env.unwrapped, name),) * self.num_envs

    # -- gymnasium API -------------------------------------------------------------------------

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        if options and "task" in options:
            self.set_attr("task", options["task"])
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else seed
            if len(seeds) != self.num_envs:
                raise ValueError(f"need {self.num_envs} seeds, got {len(seeds)}")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        everyone = np.ones(self.num_envs, dtype=bool)
        self._elapsed[:] = 0
        self._needs_reset[:] = False
        self._paused[:] = False
        obs = self._reset_envs(everyone)
        self._obs, self._frozen_obs = obs, obs.copy()
        # As SyncVectorEnv: every env's reset info, each key with its "_key" mask.
        info = self._reset_info(everyone)
        return obs, {**info, **{f"_{key}": everyone.copy() for key in info}}

    def pause_envs(self, which: np.ndarray) -> None:
        """Stop stepping the envs selected by the boolean mask ``which`` until the next ``reset``.

        A paused env keeps its state: each step reports its current observation, reward 0, not
        terminated nor truncated, and no info (its ``_key`` masks are False); its actions are
        ignored and it is not autoreset. The other envs step exactly as without the pause.

        Raises:
            ValueError: when ``which`` is not ``num_envs`` booleans.
            RuntimeError: before the first ``reset``.
        """
        which = np.asarray(which)
        if which.shape != (self.num_envs,) or which.dtype != bool:
            raise ValueError(
                f"pause_envs takes a boolean mask of {self.num_envs} envs, got dtype "
                f"{which.dtype} and shape {which.shape}"
            )
        if self._obs is None:
            raise RuntimeError("call reset() before pause_envs()")
        newly = which & ~self._paused
        self._frozen_obs[newly] = self._obs[newly]
        self._paused |= which

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = np.asarray(actions)
        running = ~self._paused
        stepped = running & ~self._needs_reset
        resetting = running & self._needs_reset
        obs, reward, terminated, info = self._step_envs(actions, stepped)
        reward = np.where(stepped, np.asarray(reward, dtype=np.float64), 0.0)
        terminated = np.asarray(terminated, dtype=bool) & stepped
        self._elapsed += stepped
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = stepped & (self._elapsed >= self.max_episode_steps)
        info = {k: v for k, v in info.items() if not k.startswith("_")}
        if resetting.any() or not running.all():
            obs = obs.copy()
            obs[~running] = self._frozen_obs[~running]
        if resetting.any():
            obs[resetting] = self._reset_envs(resetting)
            self._elapsed[resetting] = 0
        self._obs = obs
        # Gymnasium's vector info layout, as SyncVectorEnv writes it: every key has a "_key" mask
        # of the envs that report it; an env reset in this step reports only its reset info.
        out: dict[str, np.ndarray] = {}
        if stepped.any():
            for key, value in info.items():
                out[key] = np.where(stepped, value, np.zeros_like(value))
                out[f"_{key}"] = stepped.copy()
        if resetting.any():
            for key, value in self._reset_info(resetting).items():
                previous = out.get(key, np.zeros_like(value))
                out[key] = np.where(resetting, value, previous)
                out[f"_{key}"] = out.get(f"_{key}", np.zeros(self.num_envs, dtype=bool)) | resetting
        self._needs_reset = (self._needs_reset & ~resetting) | terminated | truncated
        return obs, reward, terminated, truncated, out

    # -- to implement --------------------------------------------------------------------------

    def _tasks_changed(self) -> None:
        """Called after the tasks changed (cache task arrays here)."""

    def _reset_envs(self, which: np.ndarray) -> np.ndarray:
        """Reset the envs selected by the boolean mask ``which``; return their observations.

        Draw any randomness for env ``i`` from ``self._rngs[i]`` so that trajectories match the
        single env seeded with the same seed.
        """
        raise NotImplementedError

    def _reset_info(self, which: np.ndarray) -> dict[str, np.ndarray]:
        """Info arrays (over all envs) that a reset reports for the envs in ``which``."""
        return {}

    def _step_envs(
        self, actions: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step the envs selected by the boolean mask ``active`` and leave the others' state as
        it is (they are paused, or are reset after this call); return observations, rewards,
        terminations and an info dict of arrays over all envs. The base class adds Gymnasium's
        ``_key`` masks and replaces whatever is returned for the inactive envs (a paused env's
        previous observation, reward 0, not terminated, no info)."""
        raise NotImplementedError
