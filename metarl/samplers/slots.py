"""One sample call split in two: drawing its randomness, and running slots deterministically.

A sample call of ``T`` tasks x ``E`` episodes has ``T * E`` *slots* (vector-env copies; slot ``i``
runs task ``i // E``). All of its randomness is drawn first, on the learner, by
:func:`draw_randomness`: the reset seed from the sampler's ``rng`` (slot ``i`` is reset with
``seed + i``), then the policy's action noise for every step of every slot from its
``generator``, one ``[T, E, ...]`` draw per step in step order, exactly the draws the policy's own
``sample`` would make. :func:`run_slots` then steps any contiguous run of whole tasks given those
draws, with no randomness of its own, so the local sampler (all tasks in one vector env) and a
remote sampler (one slice of tasks per worker) produce the same episodes.

The noise of all ``H`` steps is drawn even when every episode ends before the horizon, so an env
with early termination sees a different random stream than before this split (envs that never end
early, such as Particles2D and HalfCheetah, see the same one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.episodes import Episodes, env_actions
from metarl.policies import Policy
from metarl.tasks import Task

__all__ = [
    "SampleDraws",
    "draw_randomness",
    "run_slots",
    "step_successes",
]


@dataclasses.dataclass
class SampleDraws:
    """The randomness of one sample call.

    Attributes:
        reset_seed: slot ``i`` is reset with ``reset_seed + i``.
        noise: ``[H, T, E, ...]`` action noise (see :meth:`metarl.policies.Policy.draw_noise`).
    """

    reset_seed: int
    noise: Tensor

    def tasks(self, start: int, stop: int, episodes_per_task: int) -> SampleDraws:
        """The draws of tasks ``start:stop`` only (their slots start at ``start * E``)."""
        seed = self.reset_seed + start * episodes_per_task
        return SampleDraws(seed, self.noise[:, start:stop])


def draw_randomness(sampler: Any, policy: Policy) -> SampleDraws:
    """Draw a call's reset seed from ``sampler.rng`` and its noise from ``sampler.generator``.

    Args:
        sampler: has ``rng``, ``generator``, ``device``, ``num_tasks``, ``episodes_per_task`` and
            ``horizon``.
        policy: the policy that will act.
    """
    seed = int(sampler.rng.integers(2**31 - 1))
    batch = (sampler.num_tasks, sampler.episodes_per_task)
    # One draw per step (not one [H, ...] draw): torch's CPU normal sampler fills large tensors
    # differently from small ones, and per step is the stream the samplers have always used.
    steps = [
        policy.draw_noise(batch, sampler.generator, sampler.device) for _ in range(sampler.horizon)
    ]
    return SampleDraws(seed, torch.stack(steps))


def run_slots(
    vec: gym.vector.VectorEnv,
    policy: Policy,
    tasks: Sequence[Task],
    params: Mapping[str, Tensor] | None,
    draws: SampleDraws,
    device: torch.device,
    normalize_actions: bool,
    first_task: int = 0,
    call_tasks: int | None = None,
) -> Episodes:
    """Step ``vec`` (``len(tasks) * E`` envs) through one call, with no randomness of its own.

    Args:
        vec: the vector env; env ``i`` runs task ``i // E``.
        policy: the policy to act with (evaluated without gradients).
        tasks: the tasks of these slots.
        params: ``None``, shared parameters, or per-task parameters for all ``call_tasks``.
        draws: these slots' draws (``noise`` is ``[H, len(tasks), E, ...]``).
        device: where the policy runs and the episodes are returned.
        normalize_actions: see :func:`metarl.episodes.env_actions`.
        first_task: where these tasks start among the call's tasks.
        call_tasks: the call's number of tasks (``None``: these tasks are all of them).

    Returns:
        The episodes of these tasks, with ``successes`` when the env reported
        ``info["success"]`` (see :func:`step_successes`; only steps of a live episode count).
    """
    H, T, E = draws.noise.shape[:3]
    n = T * E
    # A slice evaluates the policy on the whole call's shape (other tasks' rows are zeros): a
    # matrix product's rounding depends on its shape, and equal shapes make every row's actions
    # bit-identical to the local sampler's.
    total = T if call_tasks is None else call_tasks
    rows = slice(first_task, first_task + T)
    vec.set_attr("task", [tasks[i // E] for i in range(n)])
    obs, _ = vec.reset(seed=draws.reset_seed)
    obs_space, act_space = vec.single_observation_space, vec.single_action_space
    obs_dim = int(np.prod(obs_space.shape))
    dev = torch.device(device)
    noise = draws.noise.to(dev)
    observations = torch.zeros(T, E, H, obs_dim, device=dev)
    discrete = isinstance(act_space, gym.spaces.Discrete)
    act_shape = () if discrete else (int(np.prod(act_space.shape)),)
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
    # A vector env that can pause envs (metarl.vector.BatchedTaskVectorEnv) stops stepping a slot
    # whose episode ended: with early termination (AntDir) most of the physics would go to
    # episodes that are never read. Others keep stepping (autoreset) until the last one ends.
    pause_envs = getattr(vec, "pause_envs", None)
    successes = None  # [n, H] bool once the env reports "success" (set on live steps only)
    with torch.no_grad():
        for t in range(H):
            o = torch.as_tensor(obs, dtype=torch.float32).reshape(T, E, obs_dim).to(dev)
            if total == T:
                a, logp = policy.sample_given(o, params, noise[t])
            else:
                full_o = o.new_zeros(total, E, obs_dim)
                full_o[rows] = o
                full_noise = noise.new_zeros(total, *noise.shape[2:])
                full_noise[rows] = noise[t]
                a, logp = policy.sample_given(full_o, params, full_noise)
                a, logp = a[rows], logp[rows]
            observations[:, :, t] = o
            actions[:, :, t] = a
            log_probs[:, :, t] = logp
            a_np = env_actions(act_space, a.reshape(n, *act_shape).cpu().numpy(), normalize_actions)
            obs, r, term, trunc, info = vec.step(a_np)
            reported = step_successes(info, n)
            if reported is not None:
                if successes is None:
                    successes = np.zeros((n, H), dtype=bool)
                successes[alive, t] = reported[alive]
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
            if pause_envs is not None and ended.any():
                pause_envs(ended)
    live = torch.as_tensor(mask, device=dev).reshape(T, E, H) > 0
    log_probs = log_probs * live
    # Padding is zeros: an ended env may keep stepping until the call's last episode ends, and a
    # Ray slice stops at its own last one, so anything else would differ between samplers.
    observations = torch.where(live.unsqueeze(-1), observations, 0.0)
    actions = torch.where(live.reshape(T, E, H, *(1,) * len(act_shape)), actions, 0)

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
        # Meta-World's rule: an episode succeeded if any of its steps did.
        successes=None if successes is None else tensor(successes.any(1).astype(np.float32)),
    )


def step_successes(info: Mapping[str, Any], num_envs: int) -> np.ndarray | None:
    """Which envs reported ``info["success"]`` true in one vector step.

    Gymnasium's vector info holds a key's values for every env with a ``"_key"`` mask of the envs
    that reported it (an env reset in this step reports its reset info instead).

    Args:
        info: the info dict of ``vec.step``.
        num_envs: the number of envs.

    Returns:
        ``[num_envs]`` bool, True where an env reported a true (non-zero) success; None when no
        env reported ``"success"``.
    """
    if "success" not in info:
        return None
    values = np.asarray(info["success"]).reshape(num_envs) != 0
    reported = np.asarray(info.get("_success", np.ones(num_envs, dtype=bool)), dtype=bool)
    return values & reported
