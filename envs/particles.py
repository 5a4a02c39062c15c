"""Particles2D: the 2D navigation task distribution of MAML (Finn et al. 2017).

A point starts at the origin and moves by its (clipped) action each step; the reward is the negative
distance to a goal drawn uniformly from a square; reaching within 0.01 of the goal on both axes
terminates the episode. The time limit (100 steps) comes from the registration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.tasks import Task, TaskEnv
from metarl.vector import BatchedTaskVectorEnv

__all__ = ["Particles2DEnv", "Particles2DVectorEnv"]

GOAL_TOLERANCE = 0.01


def _distance(position: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reward and termination, shared by the single and the batched env (same float ops)."""
    delta = position - goal
    reward = -np.sqrt(delta[..., 0] ** 2 + delta[..., 1] ** 2)
    terminated = (np.abs(delta[..., 0]) < GOAL_TOLERANCE) & (np.abs(delta[..., 1]) < GOAL_TOLERANCE)
    return reward, terminated


class Particles2DEnv(TaskEnv, gym.Env):
    """2D navigation to a goal; task = ``Task(goal=(x, y))``.

    Args:
        low: lower bound of each goal coordinate.
        high: upper bound of each goal coordinate.
        max_speed: actions are clipped to ``[-max_speed, max_speed]`` per axis.
        task: the initial task; ``Task(goal=(high, high))`` when omitted.
        render_mode: ``None`` or ``"rgb_array"`` (a top-down 128x128 image).

    References:
        Finn, Abbeel, Levine. "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks." ICML 2017, section 5.2.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        low: float = -0.5,
        high: float = 0.5,
        max_speed: float = 0.1,
        task: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not low < high:
            raise ValueError(f"need low < high for the goal range, got low={low}, high={high}")
        if not max_speed > 0:
            raise ValueError(f"max_speed must be positive, got {max_speed}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.low, self.high, self.max_speed = float(low), float(high), float(max_speed)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-max_speed, max_speed, shape=(2,), dtype=np.float32)
        self.set_task(task if task is not None else Task(goal=(high, high)))
        self._position = np.zeros(2)

    def _sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        goals = rng.uniform(self.low, self.high, size=(n, 2))
        return [Task(goal=g) for g in goals]

    def _validate_task(self, task: Mapping[str, Any]) -> Task:
        if set(task) != {"goal"}:
            raise ValueError(f"a Particles2D task is Task(goal=(x, y)); got keys {sorted(task)}")
        goal = np.asarray(task["goal"], dtype=object)
        if goal.shape != (2,) or not all(isinstance(g, float) and np.isfinite(g) for g in goal):
            raise ValueError(f"a Particles2D goal is 2 finite numbers, got {task['goal']!r}")
        if np.any(goal < self.low) or np.any(goal > self.high):
            raise ValueError(
                f"goal {tuple(goal)} is outside [{self.low}, {self.high}]^2; "
                "pass low/high to the env to widen the range"
            )
        return Task(goal=goal.astype(np.float64))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed, options=options)
        self._position = np.zeros(2)
        return self._position.astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -self.max_speed, self.max_speed)
        self._position = self._position + action
        reward, terminated = _distance(self._position, np.asarray(self.task["goal"]))
        info = {"distance": -float(reward)}
        return self._position.astype(np.float32), float(reward), bool(terminated), False, info

    def render(self) -> np.ndarray | None:
        """A top-down view: goal in red, particle in blue, the goal square outlined."""
        if self.render_mode != "rgb_array":
            return None
        size, extent = 128, 1.2 * max(abs(self.low), abs(self.high))
        image = np.full((size, size, 3), 255, dtype=np.uint8)

        def pixel(xy: np.ndarray) -> tuple[int, int]:
            col, row = (np.clip(xy, -extent, extent) / extent + 1.0) / 2.0 * (size - 1)
            return int(size - 1 - row), int(col)

        (r0, c0), (r1, c1) = pixel(np.array([self.low] * 2)), pixel(np.array([self.high] * 2))
        image[r1 : r0 + 1, [c0, c1]] = 180
        image[[r0, r1], c0 : c1 + 1] = 180
        goal = np.asarray(self.task["goal"])
        for xy, color in ((goal, (220, 40, 40)), (self._position, (40, 80, 220))):
            r, c = pixel(xy)
            image[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3] = color
        return image


class Particles2DVectorEnv(BatchedTaskVectorEnv):
    """Particles2D for ``num_envs`` envs at once in numpy (the registered vector entry point)."""

    def __init__(self, num_envs: int, max_episode_steps: int | None = None, **kwargs: Any) -> None:
        single = Particles2DEnv(**kwargs)
        self.max_speed = single.max_speed
        self._position = np.zeros((num_envs, 2))
        super().__init__(single, num_envs, max_episode_steps)

    def _tasks_changed(self) -> None:
        self._goals = np.array([t["goal"] for t in self._tasks], dtype=np.float64)

    def _reset_envs(self, which: np.ndarray) -> np.ndarray:
        self._position[which] = 0.0
        return self._position[which].astype(np.float32)

    def _step_envs(self, actions: np.ndarray, active: np.ndarray):
        actions = np.clip(actions.astype(np.float64), -self.max_speed, self.max_speed)
        self._position = np.where(active[:, None], self._position + actions, self._position)
        reward, terminated = _distance(self._position, self._goals)
        return self._position.astype(np.float32), reward, terminated, {"distance": -reward}
