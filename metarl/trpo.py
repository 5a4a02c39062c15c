"""Trust-region pieces: conjugate gradient, Fisher-vector products and a KL line search.

References:
    Schulman, Levine, Moritz, Jordan, Abbeel. "Trust Region Policy Optimization." ICML 2015.
    Nocedal, Wright. "Numerical Optimization", 2nd ed., Algorithm 5.2. Springer 2006.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from metarl._cherry import hessian_vector_product
from metarl.records import Rejection

__all__ = [
    "LineSearchResult",
    "conjugate_gradient",
    "fisher_vector_product",
    "line_search",
]


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    iterations: int = 10,
    residual_tol: float = 1e-10,
) -> Tensor:
    """Solve ``A x = b`` for symmetric positive-definite ``A`` given only ``x -> A x``.

    ``b`` is never modified (cherry's version aliases ``b``, the residual and the search direction
    and updates them in place, which both overwrites ``b`` and breaks convergence).

    Args:
        matvec: computes ``A v``.
        b: right-hand side, a flat vector.
        iterations: maximum number of iterations (``>= 1``).
        residual_tol: stop when the squared residual norm falls below this.

    Returns:
        The approximate solution ``x``.
    """
    if b.dim() != 1:
        raise ValueError(f"conjugate_gradient needs a flat vector b, got shape {tuple(b.shape)}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iterations):
        if rr.item() < residual_tol:
            break
        ap = matvec(p)
        alpha = rr / torch.dot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(
    kl: Tensor, params: Sequence[Tensor], damping: float = 1e-5
) -> Callable[[Tensor], Tensor]:
    """``v -> (H + damping * I) v`` with ``H`` the Hessian of ``kl`` with respect to ``params``.

    At the point where the KL's first argument equals its second, this Hessian is the Fisher
    information of the policy (through any adaptation graph between ``params`` and the policy).
    The gradient graph is built once; each product is one more backward pass (Pearlmutter's trick,
    via cherry's ``hessian_vector_product``).

    Args:
        kl: scalar mean KL divergence, differentiable in ``params``.
        params: the tensors to differentiate with respect to.
        damping: added multiple of the identity.
    """
    if kl.dim() != 0:
        raise ValueError(f"kl must be a scalar, got shape {tuple(kl.shape)}")
    return hessian_vector_product(kl, list(params), damping=damping)


@dataclasses.dataclass
class LineSearchResult:
    """Outcome of :func:`line_search`.

    Attributes:
        accepted: whether a step was taken.
        fraction: the accepted fraction of the full step (0.0 when rejected).
        loss: surrogate loss at the final parameters.
        kl: mean KL at the final parameters (0.0 when rejected).
        evaluations: number of candidate steps evaluated.
        reason: why the search gave up (None when accepted).
    """

    accepted: bool
    fraction: float
    loss: float
    kl: float
    evaluations: int
    reason: Rejection | None = None


def line_search(
    params: Sequence[Tensor],
    full_step: Tensor,
    evaluate: Callable[[], tuple[float, float]],
    loss_before: float,
    max_kl: float,
    max_steps: int = 15,
    backtrack: float = 0.8,
) -> LineSearchResult:
    """Backtracking line search under a KL constraint; restores ``params`` when it gives up.

    Tries ``params + backtrack^k * full_step`` for ``k = 0 .. max_steps-1`` and accepts the first
    candidate whose loss is finite and below ``loss_before`` and whose mean KL is finite and at
    most ``max_kl``.

    Args:
        params: the parameter tensors, updated in place.
        full_step: flat step vector (already pointing downhill).
        evaluate: returns ``(loss, kl)`` for the current values of ``params``.
        loss_before: loss at the starting parameters.
        max_kl: trust-region size.
        max_steps: number of candidates.
        backtrack: shrink factor in ``(0, 1)``.
    """
    if not 0.0 < backtrack < 1.0:
        raise ValueError(f"backtrack must be in (0, 1), got {backtrack}")
    if not max_kl > 0:
        raise ValueError(f"max_kl must be positive, got {max_kl}")
    params = list(params)
    with torch.no_grad():
        start = parameters_to_vector(params).clone()
    reason = Rejection.NO_IMPROVEMENT
    if not torch.isfinite(full_step).all():
        reason = Rejection.NON_FINITE
        max_steps = 0
    for k in range(max_steps):
        fraction = backtrack**k
        with torch.no_grad():
            vector_to_parameters(start + fraction * full_step, params)
        loss, kl = evaluate()
        if math.isfinite(loss) and math.isfinite(kl) and loss < loss_before and kl <= max_kl:
            return LineSearchResult(True, fraction, loss, kl, k + 1)
    with torch.no_grad():
        vector_to_parameters(start, params)
    return LineSearchResult(False, 0.0, loss_before, 0.0, max_steps, reason)
