"""Linear feature baseline, fit per task by ridge regression.

Features of an observation ``s`` at step ``t`` *of its own episode*:
``[s, s^2, t/100, (t/100)^2, (t/100)^3, 1]`` with ``s`` clipped to ``[-10, 10]``
(Duan et al. 2016). The time index restarts at 0 in every episode (cherry's ``LinearValue``
counts it over the flattened batch instead, which is why this is our own).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LinearFeatureBaseline"]


class LinearFeatureBaseline:
    """Per-task linear regression of returns on observation and time features.

    Args:
        reg_coeff: initial ridge coefficient; multiplied by 10 until the matrix factors and the
            solve is finite.

    References:
        Duan, Chen, Houthooft, Schulman, Abbeel. "Benchmarking Deep Reinforcement Learning for
        Continuous Control." ICML 2016.
    """

    def __init__(self, reg_coeff: float = 1e-5) -> None:
        if not reg_coeff > 0:
            raise ValueError(f"reg_coeff must be positive, got {reg_coeff}")
        self.reg_coeff = reg_coeff

    @staticmethod
    def features(observations: Tensor, times: Tensor) -> Tensor:
        """Feature vectors ``[..., 2 * obs_dim + 4]`` for observations ``[..., obs_dim]``.

        ``times`` (same leading shape) is each observation's step index within its episode.
        """
        obs = observations.clamp(-10.0, 10.0)
        al = (times.to(obs.dtype) / 100.0).unsqueeze(-1)
        return torch.cat([obs, obs**2, al, al**2, al**3, torch.ones_like(al)], dim=-1)

    def fit(self, observations: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
        """Fit one weight vector per task.

        Args:
            observations: ``[T, E, H, obs_dim]``.
            returns: ``[T, E, H]`` regression targets.
            mask: ``[T, E, H]``, 1.0 on valid steps (padding is excluded from the fit).

        Returns:
            ``[T, F]`` weights (float64); NaN when the data is not finite (e.g. episodes of an
            adapted policy whose parameters overflowed), so that the values, the advantages and
            the learner's loss are NaN and the learner's non-finite check rejects the step.

        Raises:
            FloatingPointError: if the fit of finite data does not converge.
        """
        if returns.shape != mask.shape or observations.shape[:-1] != returns.shape:
            raise ValueError(
                "fit needs observations [T, E, H, d] with returns and mask [T, E, H]; got "
                f"{tuple(observations.shape)}, {tuple(returns.shape)}, {tuple(mask.shape)}"
            )
        horizon = returns.shape[-1]
        times = torch.arange(horizon, device=returns.device).expand_as(returns)
        x = self.features(observations.double(), times) * mask.double().unsqueeze(-1)
        y = (returns.double() * mask.double()).unsqueeze(-1)
        x = x.flatten(1, 2)  # [T, E*H, F]
        y = y.flatten(1, 2)
        if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
            return torch.full((x.shape[0], x.shape[-1]), math.nan, dtype=x.dtype, device=x.device)
        xtx = x.transpose(1, 2) @ x
        xty = x.transpose(1, 2) @ y
        eye = torch.eye(xtx.shape[-1], dtype=xtx.dtype, device=xtx.device)
        reg = self.reg_coeff
        for _ in range(5):
            # Cholesky, not torch.linalg.solve: the matrix is symmetric positive definite, and
            # torch 2.13's batched LU solve fails on CPU with two or more threads once the
            # features number about 200 (Ant's 214: "Pivots given to lu_solve ...").
            factor, info = torch.linalg.cholesky_ex(xtx + reg * eye)
            if not info.any():
                weights = torch.cholesky_solve(xty, factor).squeeze(-1)
                if torch.isfinite(weights).all():
                    return weights
            reg *= 10.0
        raise FloatingPointError(
            "linear baseline fit did not converge on finite data; check the observation scale"
        )

    def predict(self, weights: Tensor, observations: Tensor, times: Tensor) -> Tensor:
        """Values for observations ``[T, ..., obs_dim]`` at step indices ``times`` ``[T, ...]``."""
        feats = self.features(observations.double(), times)
        w = weights.reshape(weights.shape[0], *([1] * (feats.dim() - 2)), weights.shape[-1])
        return (feats * w).sum(-1).to(observations.dtype)

    def fit_predict(self, observations: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
        """Fit on the batch and return its values ``[T, E, H]`` (0 on padding)."""
        weights = self.fit(observations, returns, mask)
        times = torch.arange(returns.shape[-1], device=returns.device).expand_as(returns)
        return self.predict(weights, observations, times) * mask
