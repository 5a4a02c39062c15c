"""Vectorized multi-task rollouts: every task's episodes step together in one vector env.

:class:`MultiTaskSampler` owns one Gymnasium vector env of ``tasks x episodes_per_task`` copies of a
task env. :meth:`MultiTaskSampler.sample` gives each copy its task (``set_attr("task", ...)``),
resets all of them, and steps them in lock-step; at every step *one* batched policy call evaluates
every task's own parameters on its own observations. The result is an :class:`Episodes` batch of
tensors shaped ``[tasks, episodes, horizon, ...]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.policies import Policy
from metarl.tasks import Task, make_task_env, make_task_vec, resolve_env_id

__all__ = ["Episodes", "MultiTaskSampler", "env_actions"]


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

    def to(self, device: torch.device | str) -> Episodes:
        """A copy with every tensor on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **moved)

    def select_tasks(self, tasks: Sequence[int]) -> Episodes:
        """The episodes of some tasks only (dimension 0), in the order given."""
        index = torch.as_tensor(list(tasks), device=self.rewards.device)
        picked = {
            f.name: getattr(self, f.name)[index]
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return dataclasses.replace(self, **picked, tasks=[self.tasks[i] for i in tasks])


def _generator_device(state: Tensor) -> str:
    """Which device a ``torch.Generator`` state came from (CPU states are 5056 bytes)."""
    cpu_size = torch.Generator().get_state().numel()
    return "cpu" if state.numel() == cpu_size else "cuda"


@contextlib.contextmanager
def _restore_threads(threads: int) -> Iterator[None]:
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class MultiTaskSampler:
    """Samples ``episodes_per_task`` episodes for each of several tasks, all in lock-step.

    Args:
        env_id: a registered task env id (``import envs`` registers the bundled ones).
        num_tasks: tasks per call (``T``).
        episodes_per_task: episodes per task (``E``); the vector env holds ``T * E`` envs.
        horizon: steps per episode; defaults to the env's ``max_episode_steps``.
        vectorization_mode: ``None`` (the env's batched implementation when it has one, else
            ``"sync"``), ``"vector_entry_point"``, ``"sync"`` or ``"async"``.
        device: where the policy runs; observations cross to it once per step.
        seed: seeds the env resets and the action noise.
        env_kwargs: keyword arguments for the env.
        vector_kwargs: keyword arguments for the vector env only (e.g. a batched MuJoCo env's
            ``num_threads``).
        sampling_threads: torch CPU threads while stepping (``None``: leave as is). One by
            default: the per-step policy call is small, and torch's spinning OpenMP threads would
            take the cores from the env's own (e.g. MuJoCo's) worker threads, which costs up to
            5x on a 2-core machine.
        normalize_actions: the policy acts in ``[-1, 1]``, mapped onto the action space's
            bounds (see :func:`env_actions`); actions are clipped to the space either way.

    Raises:
        ValueError: for non-positive sizes or a missing horizon.
    """

    def __init__(
        self,
        env_id: str,
        num_tasks: int,
        episodes_per_task: int,
        horizon: int | None = None,
        vectorization_mode: str | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        env_kwargs: Mapping | None = None,
        vector_kwargs: Mapping | None = None,
        sampling_threads: int | None = 1,
        normalize_actions: bool = False,
    ) -> None:
        for name, value in (("num_tasks", num_tasks), ("episodes_per_task", episodes_per_task)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        env_id = resolve_env_id(env_id)  # "module:EnvId" imports module first
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.vector_kwargs = dict(vector_kwargs or {})
        self.sampling_threads = sampling_threads
        self.normalize_actions = normalize_actions
        self.vectorization_mode = vectorization_mode
        self.device = torch.device(device)
        self.num_tasks = num_tasks
        self.episodes_per_task = episodes_per_task
        self.task_env = make_task_env(env_id, **self.env_kwargs)
        self.vec = make_task_vec(
            env_id,
            num_tasks * episodes_per_task,
            vectorization_mode,
            vector_kwargs=self.vector_kwargs,
            **self.env_kwargs,
        )
        spec_horizon = gym.spec(env_id).max_episode_steps
        self.horizon = horizon if horizon is not None else spec_horizon
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(
                f"{env_id} registers no max_episode_steps; pass a positive horizon explicitly"
            )
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(self.rng.integers(2**62)))
        self.total_steps = 0
        self.total_time = 0.0
        self.last_steps_per_second = float("nan")

    def resized(self, num_tasks: int, episodes_per_task: int, seed: int) -> MultiTaskSampler:
        """A new sampler for the same env and device with other batch sizes and seed."""
        return MultiTaskSampler(
            self.env_id,
            num_tasks,
            episodes_per_task,
            horizon=self.horizon,
            vectorization_mode=self.vectorization_mode,
            device=self.device,
            seed=seed,
            env_kwargs=self.env_kwargs,
            vector_kwargs=self.vector_kwargs,
            sampling_threads=self.sampling_threads,
            normalize_actions=self.normalize_actions,
        )

    def state_dict(self) -> dict:
        """RNG states and counters (everything a resumed run needs to continue identically)."""
        return {
            "rng": self.rng.bit_generator.state,
            "generator": self.generator.get_state(),
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict`.

        A state saved on another device type (a CUDA run resumed on CPU, or the reverse) cannot
        restore the action-noise generator, whose state format is per device: it is reseeded from
        the restored ``rng`` instead (deterministic, but not the stream the run would have had),
        with a warning.
        """
        self.rng.bit_generator.state = state["rng"]
        saved_on = _generator_device(state["generator"])
        if saved_on == self.device.type:
            self.generator.set_state(state["generator"])
        else:
            warnings.warn(
                f"this sampler state was saved with a {saved_on} policy and is loaded on "
                f"{self.device.type}: the action noise is reseeded, so the run continues "
                f"deterministically but not as it would have on {saved_on} (resume with "
                f"--device {saved_on} to continue exactly)",
                RuntimeWarning,
                stacklevel=2,
            )
            self.generator.manual_seed(int(self.rng.integers(2**62)))
        self.total_steps = int(state["total_steps"])

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        """Draw ``n`` tasks from the env's distribution, using only ``rng``."""
        return self.task_env.unwrapped.sample_tasks(n, rng)

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
        T, E, H = self.num_tasks, self.episodes_per_task, self.horizon
        if len(tasks) != T:
            raise ValueError(f"this sampler runs {T} tasks per call, got {len(tasks)}")
        start = time.perf_counter()
        n = T * E
        self.vec.set_attr("task", [tasks[i // E] for i in range(n)])
        obs, _ = self.vec.reset(seed=int(self.rng.integers(2**31 - 1)))
        obs_dim = int(np.prod(self.observation_space.shape))
        dev = self.device
        observations = torch.zeros(T, E, H, obs_dim, device=dev)
        discrete = isinstance(self.action_space, gym.spaces.Discrete)
        act_shape = () if discrete else (int(np.prod(self.action_space.shape)),)
        actions = torch.zeros(
            T, E, H, *act_shape, device=dev, dtype=torch.long if discrete else torch.float32
        )
        log_probs = torch.zeros(T, E, H, device=dev)
        rewards = np.zeros((n, H), dtype=np.float32)
        mask = np.zeros((n, H), dtype=np.float32)
        terminated = np.zeros((n, H), dtype=bool)
        truncated = np.zeros((n, H), dtype=bool)
        last_obs = np.zeros((n, obs_dim), dtype=np.float32)
        alive = np.ones(n, dtype=bool)
        threads = torch.get_num_threads()
        if self.sampling_threads and self.device.type == "cpu":
            torch.set_num_threads(self.sampling_threads)
        with torch.no_grad(), _restore_threads(threads):
            for t in range(H):
                o = torch.as_tensor(obs, dtype=torch.float32).reshape(T, E, obs_dim).to(dev)
                a, logp = policy.sample(o, params, self.generator)
                observations[:, :, t] = o
                actions[:, :, t] = a
                log_probs[:, :, t] = logp
                a_np = a.reshape(n, *act_shape).cpu().numpy()
                a_np = env_actions(self.action_space, a_np, self.normalize_actions)
                obs, r, term, trunc, _ = self.vec.step(a_np)
                mask[alive, t] = 1.0
                rewards[alive, t] = r[alive]
                terminated[alive, t] = term[alive]
                truncated[alive, t] = trunc[alive] & ~term[alive]
                if t == H - 1:
                    truncated[alive, t] |= ~term[alive]
                ended = alive & (term | trunc | (t == H - 1))
                last_obs[ended] = np.asarray(obs, dtype=np.float32).reshape(n, obs_dim)[ended]
                alive &= ~ended
                if not alive.any():
                    break
        log_probs = log_probs * torch.as_tensor(mask, device=dev).reshape(T, E, H)
        steps = int(mask.sum())
        self.total_steps += steps
        elapsed = time.perf_counter() - start
        self.total_time += elapsed
        self.last_steps_per_second = steps / max(elapsed, 1e-9)

        def tensor(x: np.ndarray) -> Tensor:
            return torch.as_tensor(x, device=dev).reshape(T, E, *x.shape[1:])

        return Episodes(
            observations=observations,
            actions=actions,
            log_probs=log_probs,
            rewards=tensor(rewards),
            mask=tensor(mask),
            terminated=tensor(terminated),
            truncated=tensor(truncated),
            last_observations=tensor(last_obs),
            tasks=list(tasks),
        )

    def close(self) -> None:
        """Close the envs."""
        self.vec.close()
        self.task_env.close()
