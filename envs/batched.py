"""Batched MuJoCo vector envs: N physics instances stepped together on MuJoCo's C++ threads.

:class:`HalfCheetahTaskVectorEnv` is the ``vector_entry_point`` of the HalfCheetah task envs. It
holds ``num_envs`` simulations of the single env's model in one :class:`mujoco.batch.Batch`: one
``step`` call advances all of them by ``frame_skip`` substeps on a persistent pool of C++ worker
threads (the Global Interpreter Lock released), with no Python loop over envs. Observations,
rewards and resets are numpy over the whole batch, and the reward is the single env's own
:meth:`~envs.half_cheetah.HalfCheetahTaskEnv.reward` applied to arrays.

Why :mod:`mujoco.batch` rather than :func:`mujoco.rollout.rollout`: a rollout is stateless, so each
env step would restart the constraint solver without its warm start (``qacc_warmstart``, part of
MuJoCo's integration state but not of the full-physics state a rollout takes and returns). The
trajectories then drift from the single env's (by 1e-7 after 50 HalfCheetah steps and by O(1)
after 100, as contacts amplify the difference). A batch keeps each simulation's whole integration
state between calls and is bit-identical to stepping one ``MjData`` per env, at any thread count;
it is also no slower. ``scripts/bench_sampler.py`` still measures the open-loop
:func:`mujoco.rollout.rollout` rate as the physics limit.

Threads: the batch's pool has ``num_threads`` threads (the caller's included), ``os.cpu_count()``
by default. The policy runs between physics calls, so give torch one thread
(``torch.set_num_threads(1)``) on a machine with few cores: torch's own pool would otherwise
compete with MuJoCo's for the same cores.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import mujoco
import numpy as np

from envs.half_cheetah import HalfCheetahDirEnv, HalfCheetahTaskEnv, HalfCheetahVelEnv
from metarl.vector import BatchedTaskVectorEnv

try:
    from mujoco import batch as mj_batch
except ImportError as err:  # mujoco.batch arrived in MuJoCo 4.0
    raise ImportError(
        f"envs.batched needs mujoco>=4.0 (mujoco.batch); found mujoco {mujoco.__version__}. "
        "Upgrade with `pip install -U 'mujoco>=4'`, or make the vector env with "
        "vectorization_mode='sync'."
    ) from err

__all__ = ["HalfCheetahDirVectorEnv", "HalfCheetahTaskVectorEnv", "HalfCheetahVelVectorEnv"]


class HalfCheetahTaskVectorEnv(BatchedTaskVectorEnv):
    """``num_envs`` copies of a HalfCheetah task env, physics batched in MuJoCo's C++ threads.

    Reproduces the single env exactly: env ``i`` reset with seed ``s + i`` and stepped with the
    same actions gives the single env's observations, rewards and terminations, bit for bit.

    Args:
        num_envs: number of sub-environments.
        max_episode_steps: time limit per episode (the registration passes it).
        num_threads: MuJoCo worker threads, the calling thread included; ``os.cpu_count()`` when
            omitted.
        **kwargs: keyword arguments of the single env (task, reward weights, ``frame_skip``, ...).

    Raises:
        ValueError: for a ``render_mode`` (render a single env instead) or a bad ``num_threads``.
    """

    env_class: ClassVar[type[HalfCheetahTaskEnv]]

    def __init__(
        self,
        num_envs: int,
        max_episode_steps: int | None = None,
        num_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("render_mode") is not None:
            raise ValueError(
                f"{type(self).__name__} does not render; make the env with "
                "vectorization_mode='sync' to render, or render a single env"
            )
        if num_threads is None:
            num_threads = os.cpu_count() or 1
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
        single = self.env_class(**kwargs)
        super().__init__(single, num_envs, max_episode_steps)
        self.num_threads = num_threads
        self._model = single.model
        self._frame_skip = single.frame_skip
        self._dt = single.dt
        self._init_qpos = single.init_qpos.copy()
        self._init_qvel = single.init_qvel.copy()
        self._noise_scale = single._reset_noise_scale
        self._first_obs_qpos = single.observation_structure["skipped_qpos"]
        self._batch = mj_batch.Batch(single.model, num_envs, nthread=num_threads)
        self._qpos = self._batch.bind("qpos")
        self._qvel = self._batch.bind("qvel")
        self._ctrl = self._batch.bind("ctrl")

    def _tasks_changed(self) -> None:
        key = self.env_class.task_key
        self._task_values = np.array([t[key] for t in self._tasks], dtype=np.float64)

    def _observe(self) -> np.ndarray:
        """HalfCheetah-v5's observation for every env: ``qpos`` (x excluded) then ``qvel``."""
        return np.concatenate((self._qpos[:, self._first_obs_qpos :], self._qvel), axis=1)

    def _reset_envs(self, which: np.ndarray) -> np.ndarray:
        # Reset as HalfCheetah-v5 does (mj_resetData, then reset_model's noise, then mj_forward),
        # drawing env i's noise from its own generator in the same order as reset_model.
        self._batch.reset(which, stage=mujoco.mjtStage.mjSTAGE_NONE)
        scale = self._noise_scale
        nq, nv = self._model.nq, self._model.nv
        for i in np.flatnonzero(which):
            rng = self._rngs[i]
            self._qpos[i] = self._init_qpos + rng.uniform(low=-scale, high=scale, size=nq)
            self._qvel[i] = self._init_qvel + scale * rng.standard_normal(nv)
        self._batch.forward(which)
        return self._observe()[which]

    def _step_envs(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        expected = (self.num_envs, self._model.nu)
        if actions.shape != expected:
            raise ValueError(
                f"actions must be shaped {expected} (envs, action dim), got {actions.shape}"
            )
        x_before = self._qpos[:, 0].copy()
        self._ctrl[:] = actions
        self._batch.step(nstep=self._frame_skip)
        x_after = self._qpos[:, 0].copy()
        x_velocity = (x_after - x_before) / self._dt
        reward, terms = self.single_env.unwrapped.reward(x_velocity, actions, self._task_values)
        info = {"x_position": x_after, "x_velocity": x_velocity, **terms}
        # HalfCheetah never terminates; the time limit truncates.
        return self._observe(), reward, np.zeros(self.num_envs, dtype=bool), info

    def _reset_info(self, which: np.ndarray) -> dict[str, np.ndarray]:
        # As HalfCheetah-v5's reset: only the x position.
        return {"x_position": self._qpos[:, 0].copy()}

    def close_extras(self, **kwargs: Any) -> None:
        """Release the simulations and the single env."""
        self._qpos = self._qvel = self._ctrl = None
        self._batch = None
        self.single_env.close()


class HalfCheetahDirVectorEnv(HalfCheetahTaskVectorEnv):
    """Batched :class:`~envs.half_cheetah.HalfCheetahDirEnv` (``metarl/HalfCheetahDir-v0``)."""

    env_class = HalfCheetahDirEnv


class HalfCheetahVelVectorEnv(HalfCheetahTaskVectorEnv):
    """Batched :class:`~envs.half_cheetah.HalfCheetahVelEnv` (``metarl/HalfCheetahVel-v0``)."""

    env_class = HalfCheetahVelEnv
