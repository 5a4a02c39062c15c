"""DiCE magic box and the DiCE and LVC surrogate objectives for policy-gradient meta-learning.

A surrogate objective is a function of the policy's log-probabilities on *sampled* trajectories
whose derivatives, of the orders that matter, are unbiased estimates of the derivatives of the
expected return ``J(theta) = E_{tau ~ p_theta}[sum_t gamma^t r_t]``.

* :func:`dice_objective` (Foerster et al. 2018) is correct for derivatives of *every* order: its
  Hessian estimates the whole ``∇²J``, including the terms through which the sampled trajectories
  depend on the parameters. With a baseline it uses the form of Mao et al. 2019, equivalently
  Loaded DiCE with ``lambda = 1`` (Farquhar et al. 2019), which leaves all derivative orders
  unbiased.
* :func:`lvc_objective` is ProMP's low-variance curvature surrogate (Rothfuss et al. 2019): exact
  gradient, and a Hessian that keeps only the low-variance part of ``∇²J``.
* The vanilla policy-gradient surrogate ``sum_t log pi(a_t|s_t) * A_t`` of MAML-TRPO's inner step
  has the exact gradient but a Hessian estimating only ``H2`` (see below).

With ``l_t = log pi(a_t|s_t)`` and ``G_t = sum_{t' >= t} gamma^t' r_t'`` ProMP splits the true
Hessian into ``∇²J = H1 + H2 + H12 + H12^T`` with ``H1 = E[sum_t ∇l_t ∇l_t^T G_t]``,
``H2 = E[sum_t ∇²l_t G_t]`` and ``H12 = E[sum_t ∇l_t (gamma^t ∇Q_t(s_t, a_t))^T]``. In expectation
DiCE's Hessian is all four terms, LVC's is ``H1 + H2`` and the vanilla surrogate's is ``H2``;
``tests/test_dice.py`` checks all three by exact enumeration of a small MDP.

Trajectory tensors are shaped ``[..., H]`` (usually ``[tasks, episodes, horizon]``) with a mask
that is nonzero on valid steps. Rewards, values and advantages are treated as constants (detached).

References:
    Foerster, Farquhar, Al-Shedivat, Rocktäschel, Xing, Whiteson. "DiCE: The Infinitely
    Differentiable Monte-Carlo Estimator." ICML 2018.
    Farquhar, Whiteson, Foerster. "Loaded DiCE: Trading off Bias and Variance in Any-Order Score
    Function Estimators for Reinforcement Learning." NeurIPS 2019.
    Mao, Foerster, Rocktäschel, Al-Shedivat, Farquhar, Whiteson. "A Baseline for Any Order Gradient
    Estimation in Stochastic Computation Graphs." ICML 2019.
    Rothfuss, Lee, Clavera, Asfour, Abbeel. "ProMP: Proximal Meta-Policy Search." ICLR 2019.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "Reduction",
    "dice_loss",
    "dice_objective",
    "lvc_loss",
    "lvc_objective",
    "magic_box",
]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


def magic_box(x: Tensor) -> Tensor:
    """The DiCE magic box ``□(x) = exp(x - ⊥(x))``, where ``⊥`` stops gradients.

    Evaluates to 1 while ``∇□(x) = □(x) ∇x``, so ``□(sum of log-probabilities) * cost`` has the
    score-function estimator as its derivative, at every order.

    Args:
        x: a tensor, usually a sum of log-probabilities of sampled actions.

    Returns:
        A tensor of ones with the shape of ``x`` that carries the derivatives described above.

    References:
        Foerster et al. "DiCE: The Infinitely Differentiable Monte-Carlo Estimator." ICML 2018.

    Example:
        >>> x = torch.tensor(0.3, requires_grad=True)
        >>> y = magic_box(x)
        >>> y.item(), torch.autograd.grad(y, x)[0].item()
        (1.0, 1.0)
    """
    return torch.exp(x - x.detach())


def _check_trajectory(log_probs: Tensor, mask: Tensor, fn: str, **others: Tensor | None) -> Tensor:
    """Validate ``[..., H]`` trajectory tensors against ``log_probs``; return the validity mask."""
    if not isinstance(log_probs, Tensor) or not log_probs.is_floating_point():
        raise ValueError(f"{fn}: log_probs must be a floating-point tensor shaped [..., H]")
    if log_probs.dim() < 1 or log_probs.numel() == 0:
        raise ValueError(
            f"{fn}: log_probs must be shaped [..., H] with at least one episode and one step, "
            f"got shape {tuple(log_probs.shape)}"
        )
    for name, tensor in {"mask": mask, **others}.items():
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{fn}: {name} must be a tensor, got {type(tensor).__name__}")
        if tensor.shape != log_probs.shape:
            raise ValueError(
                f"{fn}: {name} has shape {tuple(tensor.shape)} but log_probs has shape "
                f"{tuple(log_probs.shape)}; every trajectory tensor must be shaped [..., H] alike "
                "(pad finished episodes and mark the padding with mask = 0)"
            )
    return mask != 0


def _check_gamma(gamma: float, fn: str) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"{fn}: gamma must be a number in [0, 1], got {gamma!r}")
    return float(gamma)


def _reduce(per_episode: Tensor, reduction: Reduction, fn: str) -> Tensor:
    if reduction == "mean":
        return per_episode.mean()
    if reduction == "sum":
        return per_episode.sum()
    if reduction == "none":
        return per_episode
    raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def dice_objective(
    log_probs: Tensor,
    rewards: Tensor,
    mask: Tensor,
    gamma: float,
    values: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """DiCE surrogate of the expected discounted return, correct for derivatives of any order.

    With ``c_t = sum_{t' <= t} log pi(a_t'|s_t')`` (valid steps only) and ``c_{-1} = 0``, each
    episode contributes::

        sum_t □(c_t) gamma^t r_t  +  sum_t (□(c_{t-1}) - □(c_t)) gamma^t b_t

    The first sum is DiCE (Foerster et al. 2018) for a trajectory: the reward at ``t``
    depends on the actions up to ``t`` only. The second is present only when ``values`` gives
    baselines ``b_t = b(s_t)``: Mao et al. (2019)'s baseline term
    ``sum_t (1 - □(l_t)) □(c_{t-1}) gamma^t b_t``, which is Loaded DiCE with ``lambda = 1``
    (Farquhar et al. 2019). Its derivatives of every order have zero expectation, so the baseline
    never biases the estimates; unlike DiCE's original ``sum_t (1 - □(l_t)) b_t`` it also acts as
    a control variate for the second- and higher-order terms. The forward value is the episode's
    discounted return ``sum_t gamma^t r_t`` (every magic box evaluates to 1).

    Computed in O(H) with a cumulative sum over time.

    Args:
        log_probs: ``[..., H]`` log-probabilities ``log pi_theta(a_t|s_t)`` of the sampled actions,
            differentiable with respect to the policy parameters.
        rewards: ``[..., H]`` rewards ``r_t`` (treated as constants).
        mask: ``[..., H]`` nonzero on valid steps, 0 on padding after an episode ended; padded
            entries of the other tensors are ignored, even when they are NaN.
        gamma: discount factor in ``[0, 1]``.
        values: optional ``[..., H]`` baseline values ``b(s_t)`` of the states the actions were
            taken in, estimating the return-to-go ``sum_{t' >= t} gamma^(t'-t) r_t'`` (the
            ``gamma^t`` factor is applied here); treated as constants.
        reduction: ``"mean"`` (default) averages the per-episode surrogates over all leading
            dimensions, ``"sum"`` adds them, ``"none"`` returns them shaped ``[...]``. For
            per-task inner steps (:func:`metarl.maml.per_task`), use ``"none"`` and take
            ``.mean(-1).sum()`` so that each task gets its own episode-mean gradient.

    Returns:
        The reduced surrogate (a scalar unless ``reduction="none"``); maximise it, or minimise
        :func:`dice_loss`.

    Raises:
        ValueError: if a tensor is not shaped like ``log_probs``, ``log_probs`` is empty or not
            floating point, ``gamma`` is outside ``[0, 1]`` or ``reduction`` is unknown.

    References:
        Foerster et al. "DiCE: The Infinitely Differentiable Monte-Carlo Estimator." ICML 2018.
        Mao et al. "A Baseline for Any Order Gradient Estimation in Stochastic Computation
        Graphs." ICML 2019.
        Farquhar, Whiteson, Foerster. "Loaded DiCE: Trading off Bias and Variance in Any-Order
        Score Function Estimators for Reinforcement Learning." NeurIPS 2019.

    Example:
        >>> log_probs = torch.log(torch.full((4, 3), 0.5)).requires_grad_()
        >>> rewards, mask = torch.ones(4, 3), torch.ones(4, 3)
        >>> dice_objective(log_probs, rewards, mask, gamma=0.5).item()
        1.75
    """
    fn = "dice_objective"
    valid = _check_trajectory(log_probs, mask, fn, rewards=rewards, values=values)
    gamma = _check_gamma(gamma, fn)
    zero = log_probs.new_zeros(())
    # torch.where rather than a product with the mask: padding may hold NaN or inf, and 0 * nan
    # would poison the sum and its gradient.
    log_probs = torch.where(valid, log_probs, zero)
    discount = gamma ** torch.arange(
        log_probs.shape[-1], dtype=log_probs.dtype, device=log_probs.device
    )
    deps = torch.cumsum(log_probs, dim=-1)
    box = magic_box(deps)
    discounted_rewards = torch.where(valid, rewards.detach().to(log_probs.dtype), zero) * discount
    per_step = box * discounted_rewards
    if values is not None:
        discounted_values = torch.where(valid, values.detach().to(log_probs.dtype), zero) * discount
        # □(c_{t-1}) - □(c_t): forward value 0; c_{t-1} = c_t - l_t is the exclusive cumsum.
        per_step = per_step + (magic_box(deps - log_probs) - box) * discounted_values
    return _reduce(per_step.sum(dim=-1), reduction, fn)


def dice_loss(
    log_probs: Tensor,
    rewards: Tensor,
    mask: Tensor,
    gamma: float,
    values: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """``-dice_objective(...)``: the loss to minimise (e.g. with :func:`metarl.maml.adapt_params`).

    See :func:`dice_objective` for the formula, arguments and errors.
    """
    return -dice_objective(log_probs, rewards, mask, gamma, values=values, reduction=reduction)


def lvc_objective(
    log_probs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    reduction: Reduction = "mean",
    behaviour_log_probs: Tensor | None = None,
) -> Tensor:
    """ProMP's low-variance curvature (LVC) surrogate for the inner adaptation step.

    Each episode contributes ``sum_t □(log pi(a_t|s_t)) A_t``, i.e. ProMP's
    ``J^LVC(tau) = sum_t pi_theta(a_t|s_t) / ⊥(pi_theta(a_t|s_t)) * A_t``: a per-step likelihood
    ratio (magic box of that step's log-probability only) times the advantage or return-to-go.

    Its gradient is the policy gradient ``sum_t ∇l_t A_t`` (exact in expectation when
    ``A_t = sum_{t' >= t} gamma^t' r_t'``, optionally minus a state baseline ``gamma^t b(s_t)``).
    Its Hessian is ``sum_t (∇l_t ∇l_t^T + ∇²l_t) A_t``, whose expectation is ``H1 + H2`` of the
    decomposition ``∇²J = H1 + H2 + H12 + H12^T`` (module docstring): LVC drops the
    high-variance cross terms ``H12 + H12^T`` through which earlier actions change later
    returns, so it is a biased but low-variance estimate of ``∇²J`` (Rothfuss et al. 2019).
    A state-dependent baseline leaves both expectations unchanged.

    Computed in O(H).

    Args:
        log_probs: ``[..., H]`` log-probabilities ``log pi_theta(a_t|s_t)``, differentiable.
        advantages: ``[..., H]`` advantages or returns-to-go ``A_t`` (treated as constants).
            Include the ``gamma^t`` factor for the exact gradient of the discounted return; the
            common practice (ProMP, MAML-TRPO) of leaving it out weights late steps more.
        mask: ``[..., H]`` nonzero on valid steps, 0 on padding (ignored, even when NaN).
        reduction: ``"mean"`` (default) over the leading dimensions, ``"sum"``, or ``"none"``
            (per-episode surrogates shaped ``[...]``); see :func:`dice_objective`.
        behaviour_log_probs: optional ``[..., H]`` log-probabilities of the policy that sampled
            the actions. When the parameters have moved since sampling (ProMP's several outer
            steps per batch), the per-step weight becomes the importance ratio
            ``pi_theta / pi_behaviour`` (ProMP eq. 8); at the sampling parameters it equals
            the magic box.

    Returns:
        The reduced surrogate; its forward value is the (reduced) sum of ``A_t``. Maximise it, or
        minimise :func:`lvc_loss`.

    Raises:
        ValueError: if ``advantages`` or ``mask`` is not shaped like ``log_probs``, ``log_probs``
            is empty or not floating point, or ``reduction`` is unknown.

    References:
        Rothfuss, Lee, Clavera, Asfour, Abbeel. "ProMP: Proximal Meta-Policy Search." ICLR 2019.
    """
    fn = "lvc_objective"
    valid = _check_trajectory(
        log_probs, mask, fn, advantages=advantages, behaviour_log_probs=behaviour_log_probs
    )
    zero = log_probs.new_zeros(())
    log_probs = torch.where(valid, log_probs, zero)
    advantages = torch.where(valid, advantages.detach().to(log_probs.dtype), zero)
    if behaviour_log_probs is None:
        weights = magic_box(log_probs)
    else:
        behaviour = torch.where(valid, behaviour_log_probs.detach().to(log_probs.dtype), zero)
        weights = torch.exp(log_probs - behaviour)
    return _reduce((weights * advantages).sum(dim=-1), reduction, fn)


def lvc_loss(
    log_probs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    reduction: Reduction = "mean",
    behaviour_log_probs: Tensor | None = None,
) -> Tensor:
    """``-lvc_objective(...)``: the inner-step loss to minimise.

    See :func:`lvc_objective` for the formula, arguments and errors.
    """
    return -lvc_objective(
        log_probs, advantages, mask, reduction=reduction, behaviour_log_probs=behaviour_log_probs
    )
