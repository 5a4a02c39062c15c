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

__all__ = ["discounted_returns", "gae", "masked_task_mean", "normalize"]


def _check(name: str, x: Tensor, like: Tensor) -> None:
    if x.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(x.shape)}")


def _bootstrap(bootstrap: Tensor | None, rewards: Tensor) -> Tensor:
    if bootstrap is None:
        return torch.zeros_like(rewards[..., 0])
    _check("bootstrap", bootstrap, rewards[..., 0])
    return bootstrap.to(rewards.dtype)


def _discount_matrix(gamma: float, horizon: int, like: Tensor) -> Tensor:
    """``U[k, t] = gamma^(k-t)`` for ``k >= t``, else 0: ``(x @ U)_t = sum_{k>=t} gamma^(k-t) x_k``.

    One matrix product instead of a loop over the horizon: a handful of kernels on a GPU rather
    than hundreds of tiny ones (the loop was most of the launches of an adaptation step).
    """
    steps = torch.arange(horizon, device=like.device)
    lag = (steps.unsqueeze(1) - steps.unsqueeze(0)).to(like.dtype)
    return torch.where(lag >= 0, torch.full_like(lag, gamma).pow(lag.clamp(min=0)), 0.0)


def _following(mask: Tensor) -> Tensor:
    """1.0 where the next step of the same episode is valid."""
    return torch.cat([mask[..., 1:], torch.zeros_like(mask[..., :1])], dim=-1)


def discounted_returns(
    rewards: Tensor, mask: Tensor, gamma: float, bootstrap: Tensor | None = None
) -> Tensor:
    """Discounted return-to-go ``R_t = sum_{k>=t} gamma^(k-t) r_k`` within each episode.

    Each row is one episode whose valid steps are a prefix (``mask`` is 1 up to its end, as the
    samplers write it); the value after its last step is ``bootstrap``.

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
    horizon = rewards.shape[-1]
    returns = (rewards * mask) @ _discount_matrix(gamma, horizon, rewards)
    if bootstrap is not None:
        # gamma^(L - t) * bootstrap on the valid steps t < L of an episode of length L
        steps = torch.arange(horizon, device=rewards.device, dtype=rewards.dtype)
        to_end = mask.sum(-1, keepdim=True) - steps
        boot = _bootstrap(bootstrap, rewards).unsqueeze(-1)
        returns = returns + torch.full_like(to_end, gamma).pow(to_end.clamp(min=0)) * boot
    return returns * mask


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
    With ``lam = 1`` this is ``discounted_returns - values``. Each row is one episode whose valid
    steps are a prefix, as in :func:`discounted_returns`.

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
    following = _following(mask)
    next_values = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
    boot = _bootstrap(bootstrap, rewards).unsqueeze(-1)
    next_values = following * next_values + (1.0 - following) * boot
    delta = (rewards + gamma * next_values - values) * mask
    return (delta @ _discount_matrix(gamma * lam, rewards.shape[-1], rewards)) * mask


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


def masked_task_mean(x: Tensor, mask: Tensor) -> Tensor:
    """``[T]`` mean of ``[T, E, H]`` ``x`` over each task's valid steps (``mask`` 1)."""
    _check("mask", mask, x)
    return (x * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1.0)
