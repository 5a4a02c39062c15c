"""Ant task distributions: run forward or backward (AntDir), or walk to a 2D goal (AntGoal).

Both are thin subclasses of Gymnasium's Ant-v5: the same physics, reset noise, health check,
termination, typed keyword arguments, healthy reward, control and contact costs. Only the task
and the forward reward term change.

Every per-step quantity is one method over arrays, used by the single env on its ``MjData`` and by
the batched env (:class:`AntTaskVectorEnv`, on :mod:`envs.batched`) over all envs, so the two
cannot drift: :meth:`AntTaskEnv.observation` and :meth:`AntTaskEnv.healthy` are Ant-v5's
``_get_obs`` and ``is_healthy`` over arrays (a test holds them to Ant-v5's values bit for bit),
and :meth:`AntTaskEnv.reward` is the reward.

Observation: Ant-v5's default, with the clipped contact forces (``cfrc_ext``) of the 13 bodies
besides the world, as the Ants of MAML, ProMP and pytorch-maml-rl had them; the contact cost needs
the forces anyway, and the batched env computes them exactly. AntDir sees 105 numbers (x, y
excluded, as Ant-v5); AntGoal 107, x and y included as in ProMP's goal Ant, which could not
otherwise tell where the goal lies. ``include_cfrc_ext_in_observation=False`` with
``contact_cost_weight=0`` spares the batched env the contact forces. Costs are float64 from the
action as given (Ant-v5 squares a float32 action in float32), as HalfCheetah's.

The time limit, 200 steps as in pytorch-maml-rl's and ProMP's Ant tasks, comes from the
registration in :mod:`envs`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import DEFAULT_CAMERA_CONFIG, AntEnv
from gymnasium.utils import EzPickle

from envs.batched import MujocoTaskVectorEnv, StepOutcome
from envs.task_kinds import DirectionTasks
from metarl.tasks import Task, TaskEnv

__all__ = [
    "AntDirEnv",
    "AntDirVectorEnv",
    "AntGoalEnv",
    "AntGoalVectorEnv",
    "AntTaskEnv",
    "AntTaskVectorEnv",
]

ArrayOrFloat = np.ndarray | float


class AntTaskEnv(TaskEnv, AntEnv):
    """Ant-v5 whose forward reward term is a task's term, named :attr:`task_term` in ``info``.

    A concrete env writes :meth:`task_reward`, the task sampling and validation; the healthy
    reward, the costs, the reward total and the ``info`` terms are shared.

    Args:
        xml_file: MuJoCo model (Ant-v5's by default).
        frame_skip: MuJoCo steps per env step.
        default_camera_config: rendering camera settings.
        forward_reward_weight: weight of the task's reward term.
        ctrl_cost_weight: weight of the control cost ``||a||^2``.
        contact_cost_weight: weight of the contact cost ``||clip(cfrc_ext)||^2``.
        healthy_reward: reward for every step the ant is healthy.
        main_body: the body whose motion the task's term measures.
        terminate_when_unhealthy: end the episode (terminated) when the ant is unhealthy.
        healthy_z_range: the torso heights at which the ant is healthy.
        contact_force_range: the range contact forces are clipped to.
        reset_noise_scale: scale of the initial-state noise.
        exclude_current_positions_from_observation: omit x and y from the observation.
        include_cfrc_ext_in_observation: include the clipped contact forces in the observation.
        **kwargs: passed to :class:`gymnasium.envs.mujoco.MujocoEnv` (``render_mode``, ...).
    """

    task_term: ClassVar[str]

    def __init__(
        self,
        xml_file: str = "ant.xml",
        frame_skip: int = 5,
        default_camera_config: dict[str, float | int] = DEFAULT_CAMERA_CONFIG,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 0.5,
        contact_cost_weight: float = 5e-4,
        healthy_reward: float = 1.0,
        main_body: int | str = 1,
        terminate_when_unhealthy: bool = True,
        healthy_z_range: tuple[float, float] = (0.2, 1.0),
        contact_force_range: tuple[float, float] = (-1.0, 1.0),
        reset_noise_scale: float = 0.1,
        exclude_current_positions_from_observation: bool = True,
        include_cfrc_ext_in_observation: bool = True,
        **kwargs: Any,
    ) -> None:
        AntEnv.__init__(
            self,
            xml_file=xml_file,
            frame_skip=frame_skip,
            default_camera_config=default_camera_config,
            forward_reward_weight=forward_reward_weight,
            ctrl_cost_weight=ctrl_cost_weight,
            contact_cost_weight=contact_cost_weight,
            healthy_reward=healthy_reward,
            main_body=main_body,
            terminate_when_unhealthy=terminate_when_unhealthy,
            healthy_z_range=healthy_z_range,
            contact_force_range=contact_force_range,
            reset_noise_scale=reset_noise_scale,
            exclude_current_positions_from_observation=exclude_current_positions_from_observation,
            include_cfrc_ext_in_observation=include_cfrc_ext_in_observation,
            **kwargs,
        )

    @property
    def main_body_id(self) -> int:
        """The id of :attr:`main_body` in the model (its ``xpos`` row)."""
        return self.model.body(self._main_body).id

    @property
    def needs_contact_forces(self) -> bool:
        """Whether the observation or the reward reads ``cfrc_ext``."""
        return self._include_cfrc_ext_in_observation or self._contact_cost_weight != 0

    @property
    def terminate_when_unhealthy(self) -> bool:
        """Whether an unhealthy ant ends the episode."""
        return self._terminate_when_unhealthy

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, cfrc_ext: np.ndarray) -> np.ndarray:
        """Ant-v5's observation, for one env (``qpos [nq]``...) or a batch (``[N, nq]``...).

        Args:
            qpos, qvel: positions and velocities.
            cfrc_ext: ``[..., nbody, 6]`` external contact forces (clipped here).

        Returns:
            ``[..., obs_dim]``: ``qpos`` (x, y excluded unless asked), ``qvel``, then the clipped
            contact forces of every body but the world (if included).
        """
        parts = [qpos[..., self.observation_structure["skipped_qpos"] :], qvel]
        if self._include_cfrc_ext_in_observation:
            forces = np.clip(cfrc_ext[..., 1:, :], *self._contact_force_range)
            parts.append(forces.reshape(*forces.shape[:-2], -1))
        return np.concatenate(parts, axis=-1)

    def healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Ant-v5's health check: a finite state and a torso height in ``healthy_z_range``."""
        low, high = self._healthy_z_range
        z = qpos[..., 2]
        finite = np.isfinite(qpos).all(axis=-1) & np.isfinite(qvel).all(axis=-1)
        return finite & (low <= z) & (z <= high)

    def task_reward(
        self, x_velocity: ArrayOrFloat, xy_position: np.ndarray, task: Mapping[str, Any]
    ) -> ArrayOrFloat:
        """The task's reward term (scalars or arrays over envs)."""
        raise NotImplementedError

    def reward(
        self,
        x_velocity: ArrayOrFloat,
        xy_position: np.ndarray,
        healthy: np.ndarray | bool,
        cfrc_ext: np.ndarray,
        action: np.ndarray,
        task: Mapping[str, Any],
    ) -> tuple[ArrayOrFloat, dict[str, ArrayOrFloat]]:
        """The reward and its terms, for one env (scalars) or a batch (arrays over envs).

        Args:
            x_velocity: x-velocity of the main body over the step, ``()`` or ``[N]``.
            xy_position: xy of the main body after the step, ``[2]`` or ``[N, 2]``.
            healthy: whether the ant is healthy after the step, ``()`` or ``[N]``.
            cfrc_ext: external contact forces, ``[nbody, 6]`` or ``[N, nbody, 6]``.
            action: the action as given (MuJoCo clamps it later), ``[8]`` or ``[N, 8]``.
            task: the task's values (the task, or its fields as arrays over envs).

        Returns:
            ``(reward, terms)``: ``terms`` holds :attr:`task_term`, ``reward_ctrl``,
            ``reward_contact`` and ``reward_survive``, and the reward is their sum, grouped as
            Ant-v5 groups it (rewards minus costs).
        """
        action = np.asarray(action, dtype=np.float64)
        forces = np.square(np.clip(cfrc_ext, *self._contact_force_range))
        # One sum over every body's six numbers, as Ant-v5 sums the [nbody, 6] array.
        forces = forces.reshape(*forces.shape[:-2], -1)
        terms = {
            self.task_term: self.task_reward(x_velocity, xy_position, task),
            "reward_survive": healthy * self._healthy_reward,
            "reward_ctrl": -self._ctrl_cost_weight * np.sum(np.square(action), axis=-1),
            "reward_contact": -self._contact_cost_weight * np.sum(forces, axis=-1),
        }
        gains = terms[self.task_term] + terms["reward_survive"]
        return gains + (terms["reward_ctrl"] + terms["reward_contact"]), terms

    def _get_obs(self) -> np.ndarray:
        return self.observation(self.data.qpos, self.data.qvel, self.data.cfrc_ext)

    @property
    def is_healthy(self) -> bool:
        return bool(self.healthy(self.data.qpos, self.data.qvel))

    def _get_rew(self, x_velocity: float, action: np.ndarray):
        # Ant-v5's step() calls this after the step and puts the terms into `info`.
        xy_position = self.data.xpos[self.main_body_id, :2]
        return self.reward(
            x_velocity, xy_position, self.is_healthy, self.data.cfrc_ext, action, self._task
        )


class AntDirEnv(DirectionTasks, AntTaskEnv):
    """Run forward or backward: task ``Task(direction=d)``, ``d`` in ``{-1, +1}`` (equally likely).

    Reward: ``forward_reward_weight * d * v_x + healthy_reward - ctrl_cost - contact_cost``, with
    Ant-v5's terms (``info``: ``reward_forward``, ``reward_survive``, ``reward_ctrl``,
    ``reward_contact``); with ``d = +1`` it is Ant-v5's reward.

    Args:
        task: the initial task; ``Task(direction=1.0)`` when omitted.
        **kwargs: Ant-v5's keyword arguments (see :class:`AntTaskEnv`).

    References:
        Finn, Abbeel, Levine. "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks." ICML 2017, section 5.3 (ant direction).
    """

    task_term = "reward_forward"

    def __init__(self, task: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        EzPickle.__init__(self, task=task, **kwargs)
        self.set_task(task if task is not None else Task(direction=1.0))

    def task_reward(
        self, x_velocity: ArrayOrFloat, xy_position: np.ndarray, task: Mapping[str, Any]
    ) -> ArrayOrFloat:
        return self._forward_reward_weight * task["direction"] * x_velocity


class AntGoalEnv(AntTaskEnv):
    """Walk to a goal: task ``Task(goal=(x, y))``, uniform over a disc of radius ``goal_radius``.

    Goals are drawn as ProMP draws them: uniform over the disc's area (angle uniform, radius
    ``goal_radius * sqrt(u)``), radius 3 by default. pytorch-maml-rl's goal Ant drew from the square
    ``[-3, 3]^2`` instead.

    Reward: ``-forward_reward_weight * ||xy - goal|| + healthy_reward - ctrl_cost -
    contact_cost``, with ``xy`` the main body's position after the step (the point whose velocity
    Ant-v5 rewards) and Ant-v5's other terms (``info``: ``reward_goal``, ``reward_survive``,
    ``reward_ctrl``, ``reward_contact``). ProMP used the L1 distance, no healthy reward and no
    termination; here the distance is Euclidean and Ant-v5's healthy reward stays, but an unhealthy
    ant does not end the episode by default (ProMP's choice): with termination, a step far from
    the goal is worth less than ending the episode, and an agent can learn to fall on purpose.

    Args:
        goal_radius: radius of the disc of goals, around the start.
        task: the initial task; ``Task(goal=(goal_radius / 2, 0))`` when omitted.
        exclude_current_positions_from_observation: False by default (Ant-v5: True), so that the
            ant sees its own x and y, as in ProMP.
        terminate_when_unhealthy: False by default (Ant-v5: True); see above.
        **kwargs: Ant-v5's other keyword arguments (see :class:`AntTaskEnv`).

    Raises:
        ValueError: if ``goal_radius`` is not a positive finite number.

    References:
        Rothfuss, Lee, Clavera, Asfour, Abbeel. "ProMP: Proximal Meta-Policy Search." ICLR 2019
        (AntRandGoal).
    """

    task_term = "reward_goal"

    def __init__(
        self,
        goal_radius: float = 3.0,
        task: Mapping[str, Any] | None = None,
        exclude_current_positions_from_observation: bool = False,
        terminate_when_unhealthy: bool = False,
        **kwargs: Any,
    ) -> None:
        number = isinstance(goal_radius, (int, float)) and not isinstance(goal_radius, bool)
        if not (number and math.isfinite(goal_radius) and goal_radius > 0):
            raise ValueError(f"goal_radius must be a positive finite number, got {goal_radius!r}")
        self.goal_radius = float(goal_radius)
        super().__init__(
            exclude_current_positions_from_observation=exclude_current_positions_from_observation,
            terminate_when_unhealthy=terminate_when_unhealthy,
            **kwargs,
        )
        EzPickle.__init__(
            self,
            goal_radius=goal_radius,
            task=task,
            exclude_current_positions_from_observation=exclude_current_positions_from_observation,
            terminate_when_unhealthy=terminate_when_unhealthy,
            **kwargs,
        )
        self.set_task(task if task is not None else Task(goal=(self.goal_radius / 2, 0.0)))

    def task_reward(
        self, x_velocity: ArrayOrFloat, xy_position: np.ndarray, task: Mapping[str, Any]
    ) -> ArrayOrFloat:
        offset = xy_position - np.asarray(task["goal"], dtype=np.float64)
        return -self._forward_reward_weight * np.sqrt(np.sum(np.square(offset), axis=-1))

    def _sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        angle = rng.uniform(0.0, 2 * np.pi, size=n)
        radius = self.goal_radius * np.sqrt(rng.uniform(0.0, 1.0, size=n))
        return [
            Task(goal=(r * np.cos(a), r * np.sin(a))) for r, a in zip(radius, angle, strict=True)
        ]

    def _validate_task(self, task: Mapping[str, Any]) -> Task:
        form = "Task(goal=(<x>, <y>))"
        if set(task) != {"goal"}:
            raise ValueError(f"an AntGoal task is {form}; got keys {sorted(task)}")
        goal = Task(task)["goal"]
        if not isinstance(goal, tuple) or [type(v) for v in goal] != [float, float]:
            raise ValueError(f"an AntGoal task is {form}, two numbers; got goal={task['goal']!r}")
        # Sampled goals lie inside the disc; the slack admits the rounding of r*cos, r*sin.
        if math.hypot(*goal) > self.goal_radius * (1 + 1e-12):
            raise ValueError(
                f"goal {goal} is {math.hypot(*goal):.3f} from the start, outside the disc of "
                f"radius {self.goal_radius}; pass goal_radius=<r> to the env to widen it"
            )
        return Task(goal=goal)


class AntTaskVectorEnv(MujocoTaskVectorEnv):
    """``num_envs`` copies of an Ant task env, physics batched (see :mod:`envs.batched`).

    The family's part: the velocity is that of the main body's ``xpos`` xy (as Ant-v5), and the
    observation, health, reward and termination are the single env's array methods over the
    batch. Contact forces are computed as Gymnasium computes them when the env reads them.

    Args:
        num_envs: number of sub-environments.
        max_episode_steps: time limit per episode (the registration passes it).
        num_threads: MuJoCo worker threads, the calling thread included; ``os.cpu_count()`` when
            omitted.
        **kwargs: keyword arguments of the single env (task, reward weights, ...).
    """

    env_class: ClassVar[type[AntTaskEnv]]
    bound_fields = ("xpos",)

    def _wants_contact_forces(self) -> bool:
        return self.single_env.needs_contact_forces

    def _position(self) -> np.ndarray:
        return self._fields["xpos"][:, self.single_env.main_body_id, :2]

    def _observe(self) -> np.ndarray:
        return self.single_env.observation(self._qpos, self._qvel, self._contact_forces)

    def _outcome(self, velocity: np.ndarray, actions: np.ndarray) -> StepOutcome:
        single = self.single_env
        healthy = single.healthy(self._qpos, self._qvel)
        reward, terms = single.reward(
            velocity[:, 0],
            self._position().copy(),
            healthy,
            self._contact_forces,
            actions,
            self._task_arrays,
        )
        terminated = ~healthy if single.terminate_when_unhealthy else np.zeros_like(healthy)
        info = {
            **self._reset_info(None),
            "x_velocity": velocity[:, 0],
            "y_velocity": velocity[:, 1],
            **terms,
        }
        return StepOutcome(reward, terminated, info)

    def _reset_info(self, which: np.ndarray | None) -> dict[str, np.ndarray]:
        # As Ant-v5's reset and step info: the torso's position from qpos.
        xy = self._qpos[:, :2].copy()
        return {
            "x_position": xy[:, 0],
            "y_position": xy[:, 1],
            "distance_from_origin": np.linalg.norm(xy, ord=2, axis=1),
        }


class AntDirVectorEnv(AntTaskVectorEnv):
    """Batched :class:`AntDirEnv` (``metarl/AntDir-v0``)."""

    env_class = AntDirEnv


class AntGoalVectorEnv(AntTaskVectorEnv):
    """Batched :class:`AntGoalEnv` (``metarl/AntGoal-v0``)."""

    env_class = AntGoalEnv
