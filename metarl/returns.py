"""Discounted returns, generalized advantage estimation and normalization over masked batches.

Tensors are shaped ``[..., H]`` over time with a ``mask`` that is 1.0 on steps that happened (a
prefix of each episode's row) and 0.0 after. Every function is a single backward pass over the
horizon: linear in ``H`` and vectorized over all episodes.

Truncated episodes (time limits) are not terminal: a caller that wants to bootstrap them passes
``bootstrap`` values, the value estimate of the observation after each episode's last step, zero
for episodes that terminated.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["discounted_returns", "gae", "normalize"]


def _check(name: str, x: Tensor, like: Tensor) -> None:
    if x.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(x.shape)}")


def _bootstrap(bootstrap: Tensor | None, rewards: Tensor) -> Tensor:
    if bootstrap is None:
        return torch.zeros_like(rewards[..., 0])
    _check("bootstrap", bootstrap, rewards[..., 0])
    return bootstrap.to(rewards.dtype)


def discounted_returns(
    rewards: Tensor, mask: Tensor, gamma: float, bootstrap: Tensor | None = None
) -> Tensor:
    """Discounted return-to-go ``R_t = sum_{k>=t} gamma^(k-t) r_k`` within each episode.

    Args:
        rewards: ``[..., H]``.
        mask: ``[..., H]``, 1.0 on valid steps.
        gamma: discount factor in ``[0, 1]``.
        bootstrap: ``[...]`` value after each episode's last step (0 for terminated episodes);
            ``None`` for 0 everywhere.

    Returns:
        ``[..., H]`` returns, 0 on padding steps.
    """
    _check("mask", mask, rewards)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    out = torch.zeros_like(rewards)
    running = _bootstrap(bootstrap, rewards)
    horizon = rewards.shape[-1]
    for t in reversed(range(horizon)):
        valid = mask[..., t]
        following = mask[..., t + 1] if t + 1 < horizon else torch.zeros_like(valid)
        # After an episode's last step the continuation is its bootstrap value.
        nxt = torch.where(following > 0, running, _bootstrap(bootstrap, rewards))
        running = valid * (rewards[..., t] + gamma * nxt)
        out[..., t] = running
    return out


def gae(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    gamma: float,
    lam: float,
    bootstrap: Tensor | None = None,
) -> Tensor:
    """Generalized advantage estimates (Schulman et al. 2016).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = sum_k (gamma * lam)^k delta_{t+k}``
    within each episode, with ``V`` after the last step equal to ``bootstrap`` (0 by default).
    With ``lam = 1`` this is ``discounted_returns - values``.

    Args:
        rewards: ``[..., H]``.
        values: ``[..., H]`` value estimates of the observations.
        mask: ``[..., H]``, 1.0 on valid steps.
        gamma: discount factor in ``[0, 1]``.
        lam: GAE parameter in ``[0, 1]``.
        bootstrap: ``[...]`` value after each episode's last step, or ``None``.

    Returns:
        ``[..., H]`` advantages, 0 on padding steps.

    References:
        Schulman, Moritz, Levine, Jordan, Abbeel. "High-Dimensional Continuous Control Using
        Generalized Advantage Estimation." ICLR 2016.
    """
    _check("values", values, rewards)
    _check("mask", mask, rewards)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must be in [0, 1], got {gamma} and {lam}")
    boot = _bootstrap(bootstrap, rewards)
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(boot)
    horizon = rewards.shape[-1]
    for t in reversed(range(horizon)):
        valid = mask[..., t]
        following = mask[..., t + 1] if t + 1 < horizon else torch.zeros_like(valid)
        next_value = torch.where(following > 0, values[..., t + 1 if t + 1 < horizon else t], boot)
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        running = valid * (delta + gamma * lam * following * running)
        out[..., t] = running
    return out


def normalize(
    x: Tensor, mask: Tensor, dims: tuple[int, ...] = (-2, -1), eps: float = 1e-8
) -> Tensor:
    """Zero mean, unit variance over the valid entries along ``dims``; padding stays 0.

    With the default ``dims`` on ``[T, E, H]`` tensors each task is normalized on its own.
    """
    _check("mask", mask, x)
    count = mask.sum(dims, keepdim=True).clamp(min=1.0)
    mean = (x * mask).sum(dims, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dims, keepdim=True) / count
    return (x - mean) / (var.sqrt() + eps) * mask
