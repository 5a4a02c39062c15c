"""The batch of episodes every sampler returns, and the policy-to-env action mapping."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.tasks import Task

__all__ = ["Episodes", "env_actions"]


def env_actions(space: gym.Space, actions: np.ndarray, normalized: bool = False) -> np.ndarray:
    """The actions the env steps with, from the policy's actions.

    A Box action is clipped to the space before stepping, as SB3 and CleanRL do, so costs on
    the action (HalfCheetah's control cost) see what the actuators see; the episodes keep the
    policy's unclipped sample, whose log-probability the learners use. With ``normalized`` the
    policy acts in ``[-1, 1]`` per dimension, mapped affinely onto a finite Box's bounds first
    (rllab's ``normalize`` wrapper, which MAML's experiments used): Particles2D's ``±0.1`` would
    otherwise leave most samples of an initial unit-std policy clipped.

    Args:
        space: the env's single action space.
        actions: ``[N, ...]`` policy actions.
        normalized: map ``[-1, 1]`` onto the bounds (finite Boxes only) before clipping.

    Returns:
        ``[N, ...]`` actions inside ``space`` (discrete actions are returned as they are).
    """
    if not isinstance(space, gym.spaces.Box):
        return actions
    low, high = space.low, space.high
    if normalized and np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
        actions = low + (actions + 1.0) * 0.5 * (high - low)
    return np.clip(actions, low, high).astype(space.dtype, copy=False)


@dataclasses.dataclass
class Episodes:
    """A batch of episodes for ``T`` tasks x ``E`` episodes x ``H`` steps.

    Steps after an episode ended are padding: ``mask`` is 0 there and rewards are 0.

    Attributes:
        observations: ``[T, E, H, obs_dim]``, float32.
        actions: ``[T, E, H, act_dim]`` (float) or ``[T, E, H]`` (discrete).
        log_probs: ``[T, E, H]``, log-probability of each action under the sampling policy.
        rewards: ``[T, E, H]``.
        mask: ``[T, E, H]`` float, 1.0 on steps that happened.
        terminated: ``[T, E, H]`` bool, True on the step that reached a terminal state.
        truncated: ``[T, E, H]`` bool, True on the last step of an episode cut by a time limit.
        last_observations: ``[T, E, obs_dim]``, the observation after each episode's last step
            (for bootstrapping truncated episodes).
        tasks: the ``T`` tasks.
        successes: ``[T, E]`` float, 1.0 for an episode in which the env reported
            ``info["success"]`` true on any step (Meta-World's definition of a solved episode);
            ``None`` when the env reported no ``"success"`` in the call.
    """

    observations: Tensor
    actions: Tensor
    log_probs: Tensor
    rewards: Tensor
    mask: Tensor
    terminated: Tensor
    truncated: Tensor
    last_observations: Tensor
    tasks: list[Task]
    successes: Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return self.rewards.shape[0]

    @property
    def episodes_per_task(self) -> int:
        return self.rewards.shape[1]

    @property
    def horizon(self) -> int:
        return self.rewards.shape[2]

    @property
    def lengths(self) -> Tensor:
        """``[T, E]`` number of steps in each episode."""
        return self.mask.sum(-1).long()

    @property
    def num_steps(self) -> int:
        """Number of environment steps that really happened."""
        return int(self.mask.sum().item())

    def episode_returns(self) -> Tensor:
        """``[T, E]`` undiscounted return of every episode."""
        return (self.rewards * self.mask).sum(-1)

    def task_success_rates(self) -> Tensor | None:
        """``[T]`` fraction of each task's episodes that succeeded; None without successes."""
        return None if self.successes is None else self.successes.mean(1)

    def success_rate(self) -> float | None:
        """Mean over tasks of each task's fraction of successful episodes; None without
        successes."""
        rates = self.task_success_rates()
        return None if rates is None else rates.mean().item()

    def tensor_fields(self) -> list[str]:
        """Names of the fields that are tensors (every field but ``tasks``, and ``successes``
        only when it is set)."""
        names = (f.name for f in dataclasses.fields(self))
        return [name for name in names if isinstance(getattr(self, name), Tensor)]

    def to(self, device: torch.device | str) -> Episodes:
        """A copy with every tensor on ``device``."""
        moved = {name: getattr(self, name).to(device) for name in self.tensor_fields()}
        return dataclasses.replace(self, **moved)

    def select_tasks(self, tasks: Sequence[int]) -> Episodes:
        """The episodes of some tasks only (dimension 0), in the order given."""
        index = torch.as_tensor(list(tasks), device=self.rewards.device)
        picked = {name: getattr(self, name)[index] for name in self.tensor_fields()}
        return dataclasses.replace(self, **picked, tasks=[self.tasks[i] for i in tasks])

    def first_episodes(self, count: int) -> Episodes:
        """The first ``count`` episodes of every task (dimension 1; views, no copy)."""
        picked = {name: getattr(self, name)[:, :count] for name in self.tensor_fields()}
        return dataclasses.replace(self, **picked)

    @staticmethod
    def concat(parts: Sequence[Episodes], device: torch.device | str) -> Episodes:
        """The parts' tasks in one batch (dimension 0, in order), on ``device``.

        ``successes`` is set when any part has them; a part whose env reported none counts as
        no success (``None`` when no part has them).
        """
        names = dict.fromkeys(name for p in parts for name in p.tensor_fields())
        joined = {
            name: torch.cat([_field_or_zeros(p, name) for p in parts]).to(device) for name in names
        }
        return Episodes(**joined, tasks=[t for p in parts for t in p.tasks])


def _field_or_zeros(episodes: Episodes, name: str) -> Tensor:
    """A tensor field, or zeros of ``successes``' shape where it is None."""
    value = getattr(episodes, name)
    if value is None:  # only the optional successes can be None
        return episodes.rewards.new_zeros(episodes.rewards.shape[:2])
    return value
