"""HalfCheetah task distributions: run in a direction, or at a target speed.

Both are thin subclasses of Gymnasium's HalfCheetah-v5: the same physics, 17-d observation (x
excluded), reset noise and typed keyword arguments. Only the task and the forward reward change,
and the control cost weight defaults to 0.05 as in MAML. Each env's reward is one method over
arrays (:meth:`HalfCheetahTaskEnv.reward`), used both by the single env (scalars) and by its
batched vector env here (:class:`HalfCheetahTaskVectorEnv`, on :mod:`envs.batched`; arrays over
envs), so the two cannot drift.

The time limit (100 steps) comes from the registration in :mod:`envs`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import DEFAULT_CAMERA_CONFIG, HalfCheetahEnv
from gymnasium.utils import EzPickle

from envs.batched import MujocoTaskVectorEnv, StepOutcome
from envs.task_kinds import DirectionTasks, task_number
from metarl.tasks import Task, TaskEnv

__all__ = [
    "HalfCheetahDirEnv",
    "HalfCheetahDirVectorEnv",
    "HalfCheetahTaskEnv",
    "HalfCheetahTaskVectorEnv",
    "HalfCheetahVelEnv",
    "HalfCheetahVelVectorEnv",
]

ArrayOrFloat = np.ndarray | float


@contextmanager
def quiet_model_deprecations() -> Iterator[None]:
    """Silence MuJoCo's compiler deprecation warning about Gymnasium's half_cheetah.xml.

    MuJoCo 4 warns that the model's ``settotalmass`` attribute is deprecated every time the model
    is loaded, i.e. once per env: hundreds of identical lines for a vector env. The model and its
    physics are unchanged; other MuJoCo warnings pass through.
    """
    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if "settotalmass" in message:
            return
        if previous is not None:
            previous(message)
        else:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


class HalfCheetahTaskEnv(TaskEnv, HalfCheetahEnv):
    """HalfCheetah-v5 whose forward reward depends on a one-number task ``Task(<task_key>=value)``.

    A concrete env sets :attr:`task_key`, writes :meth:`forward_reward` and the task sampling and
    validation; the control cost, the reward total and the ``info`` terms are shared.

    Args:
        xml_file: MuJoCo model (HalfCheetah-v5's by default).
        frame_skip: MuJoCo steps per env step.
        default_camera_config: rendering camera settings.
        forward_reward_weight: weight of the task's forward reward term.
        ctrl_cost_weight: weight of the control cost ``||a||^2`` (0.05, as in MAML).
        reset_noise_scale: scale of the initial-state noise.
        exclude_current_positions_from_observation: omit x from the observation.
        **kwargs: passed to :class:`gymnasium.envs.mujoco.MujocoEnv` (``render_mode``, ...).
    """

    task_key: ClassVar[str]

    def __init__(
        self,
        xml_file: str = "half_cheetah.xml",
        frame_skip: int = 5,
        default_camera_config: dict[str, float | int] = DEFAULT_CAMERA_CONFIG,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 0.05,
        reset_noise_scale: float = 0.1,
        exclude_current_positions_from_observation: bool = True,
        **kwargs: Any,
    ) -> None:
        with quiet_model_deprecations():
            HalfCheetahEnv.__init__(
                self,
                xml_file=xml_file,
                frame_skip=frame_skip,
                default_camera_config=default_camera_config,
                forward_reward_weight=forward_reward_weight,
                ctrl_cost_weight=ctrl_cost_weight,
                reset_noise_scale=reset_noise_scale,
                exclude_current_positions_from_observation=exclude_current_positions_from_observation,
                **kwargs,
            )

    def forward_reward(self, x_velocity: ArrayOrFloat, task_value: ArrayOrFloat) -> ArrayOrFloat:
        """The task's forward reward term for x-velocities (scalars or arrays over envs)."""
        raise NotImplementedError

    def reward(
        self, x_velocity: ArrayOrFloat, action: np.ndarray, task_value: ArrayOrFloat
    ) -> tuple[ArrayOrFloat, dict[str, ArrayOrFloat]]:
        """The reward and its terms, for one env (scalars) or a batch (arrays over envs).

        Args:
            x_velocity: x-velocity of the torso over the step, ``()`` or ``[N]``.
            action: the action as given (MuJoCo clamps it later), ``[act_dim]`` or ``[N, act_dim]``.
            task_value: the task's value (``task[task_key]``), ``()`` or ``[N]``.

        Returns:
            ``(reward, terms)``: ``terms`` holds ``reward_forward`` and ``reward_ctrl`` and the
            reward is their sum.
        """
        action = np.asarray(action, dtype=np.float64)
        terms = {
            "reward_forward": self.forward_reward(x_velocity, task_value),
            "reward_ctrl": -self._ctrl_cost_weight * np.sum(np.square(action), axis=-1),
        }
        return terms["reward_forward"] + terms["reward_ctrl"], terms

    def _get_rew(self, x_velocity: float, action: np.ndarray):
        # HalfCheetah-v5's step() calls this and puts the terms into `info`.
        return self.reward(x_velocity, action, self._task[self.task_key])

    def _task_value(self, task: Mapping[str, Any]) -> float:
        """The task's single number, with a message naming the expected form otherwise."""
        return task_number(type(self).__name__.removesuffix("Env"), task, self.task_key)


class HalfCheetahDirEnv(DirectionTasks, HalfCheetahTaskEnv):
    """Run forward or backward: task ``Task(direction=d)``, ``d`` in ``{-1, +1}`` (equally likely).

    Reward: ``forward_reward_weight * d * v_x - ctrl_cost_weight * ||a||^2``.

    Args:
        task: the initial task; ``Task(direction=1.0)`` when omitted.
        **kwargs: HalfCheetah-v5's keyword arguments (see :class:`HalfCheetahTaskEnv`).

    References:
        Finn, Abbeel, Levine. "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks." ICML 2017, section 5.3.
    """

    def __init__(self, task: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        EzPickle.__init__(self, task=task, **kwargs)
        self.set_task(task if task is not None else Task(direction=1.0))

    def forward_reward(self, x_velocity: ArrayOrFloat, task_value: ArrayOrFloat) -> ArrayOrFloat:
        return self._forward_reward_weight * task_value * x_velocity


class HalfCheetahVelEnv(HalfCheetahTaskEnv):
    """Run at a target speed: task ``Task(velocity=v)``, ``v ~ U[low, high]`` (``U[0, 2]`` default).

    Reward: ``-forward_reward_weight * |v_x - v| - ctrl_cost_weight * ||a||^2``.

    Args:
        velocity_range: ``(low, high)`` of the target velocity; ``(0.0, 3.0)`` gives the range of
            ProMP and PEARL.
        task: the initial task; the middle of the range when omitted.
        **kwargs: HalfCheetah-v5's keyword arguments (see :class:`HalfCheetahTaskEnv`).

    Raises:
        ValueError: if ``velocity_range`` is not two finite numbers with ``low < high``.

    References:
        Finn, Abbeel, Levine. "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks." ICML 2017, section 5.3.
    """

    task_key = "velocity"

    def __init__(
        self,
        velocity_range: tuple[float, float] = (0.0, 2.0),
        task: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        bounds = np.asarray(velocity_range, dtype=np.float64)
        if bounds.shape != (2,) or not np.all(np.isfinite(bounds)) or not bounds[0] < bounds[1]:
            raise ValueError(
                f"velocity_range must be (low, high) with finite low < high, got {velocity_range!r}"
            )
        self.velocity_range = (float(bounds[0]), float(bounds[1]))
        super().__init__(**kwargs)
        EzPickle.__init__(self, velocity_range=velocity_range, task=task, **kwargs)
        low, high = self.velocity_range
        self.set_task(task if task is not None else Task(velocity=(low + high) / 2))

    def forward_reward(self, x_velocity: ArrayOrFloat, task_value: ArrayOrFloat) -> ArrayOrFloat:
        return -self._forward_reward_weight * np.abs(x_velocity - task_value)

    def _sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        low, high = self.velocity_range
        return [Task(velocity=v) for v in rng.uniform(low, high, size=n)]

    def _validate_task(self, task: Mapping[str, Any]) -> Task:
        velocity = self._task_value(task)
        low, high = self.velocity_range
        if not low <= velocity <= high:
            raise ValueError(
                f"target velocity {velocity} is outside [{low}, {high}]; "
                "pass velocity_range=(low, high) to the env to widen the range"
            )
        return Task(velocity=velocity)


class HalfCheetahTaskVectorEnv(MujocoTaskVectorEnv):
    """``num_envs`` copies of a HalfCheetah task env, physics batched (see :mod:`envs.batched`).

    The family's part: the velocity is that of ``qpos`` x, the observation is ``qpos`` (x excluded)
    then ``qvel``, the reward is the single env's :meth:`HalfCheetahTaskEnv.reward`, and an episode
    never terminates (the time limit truncates it).

    Args:
        num_envs: number of sub-environments.
        max_episode_steps: time limit per episode (the registration passes it).
        num_threads: MuJoCo worker threads, the calling thread included; ``os.cpu_count()`` when
            omitted.
        **kwargs: keyword arguments of the single env (task, reward weights, ``frame_skip``, ...).
    """

    env_class: ClassVar[type[HalfCheetahTaskEnv]]

    def _position(self) -> np.ndarray:
        return self._qpos[:, 0]

    def _observe(self) -> np.ndarray:
        skipped = self.single_env.observation_structure["skipped_qpos"]
        return np.concatenate((self._qpos[:, skipped:], self._qvel), axis=1)

    def _outcome(self, velocity: np.ndarray, actions: np.ndarray) -> StepOutcome:
        task_values = self._task_arrays[self.env_class.task_key]
        reward, terms = self.single_env.reward(velocity, actions, task_values)
        info = {"x_position": self._qpos[:, 0].copy(), "x_velocity": velocity, **terms}
        return StepOutcome(reward, np.zeros(self.num_envs, dtype=bool), info)

    def _reset_info(self, which: np.ndarray) -> dict[str, np.ndarray]:
        # As HalfCheetah-v5's reset: only the x position.
        return {"x_position": self._qpos[:, 0].copy()}


class HalfCheetahDirVectorEnv(HalfCheetahTaskVectorEnv):
    """Batched :class:`HalfCheetahDirEnv` (``metarl/HalfCheetahDir-v0``)."""

    env_class = HalfCheetahDirEnv


class HalfCheetahVelVectorEnv(HalfCheetahTaskVectorEnv):
    """Batched :class:`HalfCheetahVelEnv` (``metarl/HalfCheetahVel-v0``)."""

    env_class = HalfCheetahVelEnv
