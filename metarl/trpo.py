"""Trust-region pieces: conjugate gradient, Fisher-vector products and a KL line search.

References:
    Schulman, Levine, Moritz, Jordan, Abbeel. "Trust Region Policy Optimization." ICML 2015.
    Nocedal, Wright. "Numerical Optimization", 2nd ed., Algorithm 5.2. Springer 2006.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from metarl._cherry import hessian_vector_product
from metarl.records import Rejection

__all__ = [
    "LineSearchResult",
    "conjugate_gradient",
    "conjugate_gradient_with_product",
    "fisher_vector_product",
    "fisher_vector_product_through",
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
    return conjugate_gradient_with_product(matvec, b, iterations, residual_tol)[0]


def conjugate_gradient_with_product(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    iterations: int = 10,
    residual_tol: float = 1e-10,
) -> tuple[Tensor, Tensor]:
    """:func:`conjugate_gradient`, also returning ``A x`` (as ``b`` minus the final residual).

    TRPO scales its step by ``x^T A x``; this saves the extra product (a second-order pass) that
    computing ``A x`` anew would cost.
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
    return x, b - r


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


def fisher_vector_product_through(
    kl: Callable[[dict[str, Tensor]], Tensor],
    adapted: Mapping[str, Tensor],
    params: Sequence[Tensor],
    damping: float = 1e-5,
) -> Callable[[Tensor], Tensor]:
    """``v -> (J^T F J + damping * I) v``: adapted policies' Fisher, pulled back to ``params``.

    ``adapted`` are tensors computed from ``params`` (MAML's adapted parameters, with their
    adaptation graph), ``J`` their Jacobian and ``F`` the Hessian of ``kl`` with respect to them.
    Where ``kl``'s two policies coincide (its gradient is 0 there), ``J^T F J`` is exactly the
    Hessian of ``kl(adapted(params))`` that :func:`fisher_vector_product` takes through the graph
    (the other term of the chain rule multiplies that zero gradient), and a test checks both
    against an explicit Hessian. It is cheaper: each product is a Jacobian-vector product through
    the adaptation (two backward passes, via a vector-Jacobian product of a dummy vector), one
    Hessian-vector product of ``kl`` alone, and one vector-Jacobian product; no third derivatives
    of the inner loss, and ``kl`` may use fewer samples than the adaptation did.

    Args:
        kl: maps tensors shaped like ``adapted`` to the scalar mean KL from the policies that
            sampled (``kl(adapted)`` must be at its minimum, 0).
        adapted: the adapted tensors, differentiable with respect to ``params``; their graph is
            kept (the caller's graph may be shared: it is never freed here).
        params: the tensors to differentiate with respect to.
        damping: added multiple of the identity.
    """
    params = list(params)
    names = list(adapted)
    outputs = [adapted[k] for k in names]
    points = [t.detach().requires_grad_(True) for t in outputs]
    kl_value = kl(dict(zip(names, points, strict=True)))
    if kl_value.dim() != 0:
        raise ValueError(f"kl must return a scalar, got shape {tuple(kl_value.shape)}")
    kl_grad = torch.autograd.grad(kl_value, points, create_graph=True)
    # J^T u for a dummy u, kept as a graph: differentiating it with respect to u gives J v.
    dummies = [torch.zeros_like(t, requires_grad=True) for t in outputs]
    jt_dummy = torch.autograd.grad(
        outputs, params, dummies, create_graph=True, retain_graph=True, allow_unused=True
    )
    linked = [i for i, g in enumerate(jt_dummy) if g is not None and g.requires_grad]
    if not linked:  # nothing in ``adapted`` depends on ``params``
        return lambda v: damping * v

    def product(v: Tensor) -> Tensor:
        pieces = torch.split(v, [p.numel() for p in params])
        vs = [pieces[i].view_as(params[i]) for i in linked]
        jv = torch.autograd.grad(
            [jt_dummy[i] for i in linked], dummies, vs, retain_graph=True, allow_unused=True
        )
        gv = sum((g * u).sum() for g, u in zip(kl_grad, jv, strict=True) if u is not None)
        fjv = torch.autograd.grad(gv, points, retain_graph=True, allow_unused=True)
        fjv = [torch.zeros_like(t) if f is None else f for t, f in zip(points, fjv, strict=True)]
        jtfjv = torch.autograd.grad(outputs, params, fjv, retain_graph=True, allow_unused=True)
        flat = [
            torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
            for p, g in zip(params, jtfjv, strict=True)
        ]
        return torch.cat(flat) + damping * v

    return product


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
