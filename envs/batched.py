"""The base of the batched MuJoCo task vector envs: N simulations stepped on MuJoCo's C++ threads.

:class:`MujocoTaskVectorEnv` is what a MuJoCo task family's ``vector_entry_point`` builds on. It
holds ``num_envs`` simulations of the single env's model in one :class:`mujoco.batch.Batch`: one
``step`` call advances all of them by ``frame_skip`` substeps on a persistent pool of C++ worker
threads (the Global Interpreter Lock released), with no Python loop over envs. The base does the
stepping, the resets, the tasks, the contact forces and Gymnasium's vector API (through
:class:`metarl.vector.BatchedTaskVectorEnv`); a family supplies what differs, over the whole batch:

* :attr:`~MujocoTaskVectorEnv.env_class`, its Gymnasium v5 single task env (model, ``frame_skip``,
  ``reset_model``, spaces and the array reward all come from it);
* :meth:`~MujocoTaskVectorEnv._position`, the position whose change over a step is the velocity
  its reward sees (HalfCheetah-v5: ``qpos`` x; Ant-v5: the main body's ``xpos`` xy);
* :meth:`~MujocoTaskVectorEnv._observe`, the observation of every env from the state arrays;
* :meth:`~MujocoTaskVectorEnv._outcome`, the reward (the single env's own array reward),
  termination and ``info`` of every env;
* :meth:`~MujocoTaskVectorEnv._reset_info`, and where needed :attr:`bound_fields` (derived MjData
  fields it reads, e.g. ``xpos``) and :meth:`~MujocoTaskVectorEnv._wants_contact_forces`.

Tasks reach the family as arrays: ``self._task_arrays[key]`` stacks every env's ``task[key]``
(``[N]`` for a number, ``[N, 2]`` for a 2D goal).

Resets run the single env's own ``reset_model`` on its MjData with env ``i``'s generator, then copy
the state into the batch: the noise is drawn by the same code in the same order as the single env
seeded with ``seed + i``, whatever the family.

Why :mod:`mujoco.batch` rather than :func:`mujoco.rollout.rollout`: a rollout is stateless, so each
env step would restart the constraint solver without its warm start (``qacc_warmstart``, part of
MuJoCo's integration state but not of the full-physics state a rollout takes and returns). The
trajectories then drift from the single env's (by 1e-7 after 50 HalfCheetah steps and by O(1)
after 100, as contacts amplify the difference). A batch keeps each simulation's whole integration
state between calls and is bit-identical to stepping one ``MjData`` per env, at any thread count.
``scripts/bench_sampler.py`` still measures the open-loop :func:`mujoco.rollout.rollout` rate as the
physics limit.

Contact forces: Gymnasium's ``MujocoEnv`` calls ``mj_rnePostConstraint`` after every step, which
fills ``cfrc_ext`` (Ant-v5's contact cost and observation read it); ``mj_step`` alone leaves it
unset, and a batch cannot run it. A family that wants the forces gets a persistent batch (one
MjData per simulation, which keeps the last substep's derived fields) and the base runs
``mj_rnePostConstraint`` on a copy of each simulation after each step, in Python, one env at a
time (the copy, ~8 us per Ant env, holds the Global Interpreter Lock), next to the physics' ~140 us
of one core per Ant env step. An env whose last substep had no contact is skipped (its forces are
zero), which halves that pass for Ant (it was 10% of AntDir's sampling time before); a batched
``mj_rnePostConstraint`` in :mod:`mujoco.batch` would remove it.

Paused envs (:meth:`metarl.vector.BatchedTaskVectorEnv.pause_envs`) and envs waiting for their
autoreset are not stepped: only the active simulations of the batch run, each bit-identical to
stepping it alone.

Threads: the batch's pool has ``num_threads`` threads (the caller's included), ``os.cpu_count()``
by default. The policy runs between physics calls, so give torch one thread
(``torch.set_num_threads(1)``) on a machine with few cores: torch's own pool would otherwise
compete with MuJoCo's for the same cores.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco import MujocoEnv

from metarl.checks import require_positive_ints
from metarl.vector import BatchedTaskVectorEnv

try:
    from mujoco import batch as mj_batch
except ImportError:  # mujoco.batch arrived in MuJoCo 4.0; the single envs work without it
    mj_batch = None

__all__ = ["MujocoTaskVectorEnv", "StepOutcome"]


@dataclasses.dataclass(frozen=True)
class StepOutcome:
    """What one step gave every env, besides the observation.

    Attributes:
        reward: ``[N]`` rewards.
        terminated: ``[N]`` bool, True where the env reached a terminal state.
        info: arrays over envs (``[N]`` each), as the single env's ``info``.
    """

    reward: np.ndarray
    terminated: np.ndarray
    info: dict[str, np.ndarray]


class MujocoTaskVectorEnv(BatchedTaskVectorEnv):
    """``num_envs`` copies of a MuJoCo task env, physics batched in MuJoCo's C++ threads.

    Reproduces the single env exactly: env ``i`` reset with seed ``s + i`` and stepped with the
    same actions gives the single env's observations, rewards, terminations and truncations, bit
    for bit. A family subclasses it and supplies the members named in the module docstring.

    Args:
        num_envs: number of sub-environments.
        max_episode_steps: time limit per episode (the registration passes it).
        num_threads: MuJoCo worker threads, the calling thread included; ``os.cpu_count()`` when
            omitted.
        **kwargs: keyword arguments of the single env (task, reward weights, ``frame_skip``, ...).

    Raises:
        ImportError: with a MuJoCo older than 4.0 (no :mod:`mujoco.batch`).
        ValueError: for a ``render_mode`` (render a single env instead) or a bad ``num_threads``.
    """

    env_class: ClassVar[type[MujocoEnv]]
    bound_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        num_envs: int,
        max_episode_steps: int | None = None,
        num_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        if mj_batch is None:
            raise ImportError(
                f"{type(self).__name__} needs mujoco>=4.0 (mujoco.batch); found mujoco "
                f"{mujoco.__version__}. Upgrade with `pip install -U 'mujoco>=4'`, or make the "
                "vector env with vectorization_mode='sync'."
            )
        if kwargs.get("render_mode") is not None:
            raise ValueError(
                f"{type(self).__name__} does not render; make the env with "
                "vectorization_mode='sync' to render, or render a single env"
            )
        if num_threads is None:
            num_threads = os.cpu_count() or 1
        require_positive_ints(num_threads=num_threads)
        single = self.env_class(**kwargs)
        super().__init__(single, num_envs, max_episode_steps)
        self.num_threads = num_threads
        self.dt = single.dt
        self._model = single.model
        self._frame_skip = single.frame_skip
        self.computes_contact_forces = self._wants_contact_forces()
        # A persistent batch keeps one MjData per simulation, whose derived fields (contacts,
        # constraint forces) mj_rnePostConstraint needs after the step.
        self._batch = mj_batch.Batch(
            single.model, num_envs, nthread=num_threads, persistent=self.computes_contact_forces
        )
        self._qpos = self._batch.bind("qpos")
        self._qvel = self._batch.bind("qvel")
        self._ctrl = self._batch.bind("ctrl")
        self._act = self._batch.bind("act") if single.model.na else None
        self._fields = {name: self._batch.bind(name) for name in self.bound_fields}
        self._contact_forces = np.zeros((num_envs, single.model.nbody, 6))
        self._scratch = mujoco.MjData(single.model)
        # Without contacts, applied forces (never set here) or equality and flex constraints,
        # mj_rnePostConstraint leaves cfrc_ext zero: an env whose last substep had no contact
        # needs no copy of its MjData (an ant's legs are off the floor in ~40% of steps).
        self._ncon = self._batch.bind("ncon") if self.computes_contact_forces else None
        self._contacts_only = single.model.neq == 0 and single.model.nflex == 0

    # -- what a family supplies ----------------------------------------------------------------

    def _wants_contact_forces(self) -> bool:
        """Whether the family reads ``cfrc_ext`` (``self._contact_forces``); False by default."""
        return False

    def _position(self) -> np.ndarray:
        """``[N, ...]`` the position whose change over a step, divided by ``dt``, is the velocity
        that :meth:`_outcome` receives; empty by default."""
        return np.zeros((self.num_envs, 0))

    def _observe(self) -> np.ndarray:
        """``[N, obs_dim]`` the observation of every env, from the current state arrays."""
        raise NotImplementedError

    def _outcome(self, velocity: np.ndarray, actions: np.ndarray) -> StepOutcome:
        """Reward, termination and info of every env after a step.

        Args:
            velocity: ``[N, ...]`` change of :meth:`_position` over the step, divided by ``dt``.
            actions: ``[N, act_dim]`` the actions as given.
        """
        raise NotImplementedError

    # -- the base ------------------------------------------------------------------------------

    def _tasks_changed(self) -> None:
        # Every task of a family has the same keys (the single env validated them).
        self._task_arrays = {
            key: np.array([task[key] for task in self._tasks], dtype=np.float64)
            for key in self._tasks[0]
        }

    def _reset_envs(self, which: np.ndarray) -> np.ndarray:
        # Reset as the single env does (mj_resetData, then its reset_model, which draws the noise
        # and runs mj_forward), on the single env's MjData with env i's generator, then copy the
        # state in; the batch's own reset clears the rest of the integration state (warm start).
        ids = np.flatnonzero(which)
        self._batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        single = self.single_env.unwrapped
        own_rng = single.np_random
        try:
            for i in ids:
                single.np_random = self._rngs[i]
                mujoco.mj_resetData(single.model, single.data)
                single.reset_model()
                self._qpos[i] = single.data.qpos
                self._qvel[i] = single.data.qvel
                if self._act is not None:
                    self._act[i] = single.data.act
                self._contact_forces[i] = single.data.cfrc_ext
        finally:
            single.np_random = own_rng
        self._batch.forward(ids)
        return self._observe()[which]

    def _step_envs(
        self, actions: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        expected = (self.num_envs, self._model.nu)
        if actions.shape != expected:
            raise ValueError(
                f"actions must be shaped {expected} (envs, action dim), got {actions.shape}"
            )
        # Only the active simulations step (each is independent of the others in the batch, so
        # this changes none of their trajectories): ended episodes cost no physics.
        ids = None if active.all() else np.flatnonzero(active)
        before = self._position().copy()
        if ids is None:
            self._ctrl[:] = actions
        else:
            self._ctrl[ids] = actions[ids]
        if ids is None or ids.size:
            self._batch.step(ids, nstep=self._frame_skip)
        if self.computes_contact_forces:
            self._update_contact_forces(np.arange(self.num_envs) if ids is None else ids)
        velocity = (self._position() - before) / self.dt
        outcome = self._outcome(velocity, actions)
        return self._observe(), outcome.reward, outcome.terminated, outcome.info

    def _update_contact_forces(self, ids: np.ndarray) -> None:
        # As Gymnasium's MujocoEnv after mj_step; the batch has no mj_rnePostConstraint, so it runs
        # here on a copy of each simulation's MjData (persistent: the last substep's fields).
        if self._contacts_only:
            touching = self._ncon[ids].reshape(-1) > 0
            self._contact_forces[ids[~touching]] = 0.0
            ids = ids[touching]
        scratch = self._scratch
        for i in ids:
            self._batch.get_data(i, scratch)
            mujoco.mj_rnePostConstraint(self._model, scratch)
            self._contact_forces[i] = scratch.cfrc_ext

    def close_extras(self, **kwargs: Any) -> None:
        """Release the simulations and the single env."""
        self._qpos = self._qvel = self._ctrl = self._act = None
        self._fields = {}
        self._batch = None
        self.single_env.close()
