"""MAML, first-order MAML and Meta-SGD over parameter dicts.

Adapted parameters are plain ``dict[str, Tensor]`` evaluated with
:func:`torch.func.functional_call`; no module's parameters are ever overwritten. Two surfaces:

* the functional one that the sampler and agents use: :func:`adapt_params` takes one gradient step
  on a loss, and :func:`per_task` gives every task its own copy of the parameters (a leading task
  dimension), so that *one* backward pass of the summed per-task losses yields every task's own
  gradient and one batched forward evaluates every task's adapted policy;
* the friendly one learn2learn users know::

      maml = MAML(model, lr=0.1)            # or MetaSGD(model, lr=0.1), MAML(..., first_order=True)
      learner = maml.clone()
      learner.adapt(loss_fn(learner(x_support), y_support))
      meta_loss = loss_fn(learner(x_query), y_query)
      meta_loss.backward()   # gradients reach the model's parameters (and Meta-SGD's lrs)

References:
    Finn, Abbeel, Levine. "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks."
    ICML 2017.
    Li, Zhou, Chen, Li. "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning." 2017.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = [
    "MAML",
    "Learner",
    "MetaSGD",
    "Params",
    "adapt_params",
    "detach_params",
    "is_per_task",
    "meta_sgd_rates",
    "per_task",
    "rates_by_name",
    "sgd_step",
]

Params = dict[str, Tensor]
LearningRate = float | Tensor | Mapping[str, Tensor]


def per_task(params: Mapping[str, Tensor], num_tasks: int) -> Params:
    """Give each of ``num_tasks`` tasks its own view of ``params`` (a leading task dimension).

    The views share storage and stay differentiable with respect to ``params``. The gradient of
    ``sum_t loss_t(params_t)`` with respect to the views is every task's own gradient, stacked.
    """
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def is_per_task(params: Mapping[str, Tensor], reference: Mapping[str, Tensor]) -> bool:
    """Whether ``params`` carries a leading task dimension relative to ``reference``."""
    key = next(iter(reference))
    return params[key].dim() == reference[key].dim() + 1


def detach_params(params: Mapping[str, Tensor]) -> Params:
    """Detached copies of the tensors of ``params`` (for sampling with adapted policies)."""
    return {k: v.detach() for k, v in params.items()}


def _lr_for(lr: LearningRate, name: str) -> float | Tensor:
    if isinstance(lr, Mapping):
        return lr[name]
    return lr


def sgd_step(
    params: Mapping[str, Tensor], grads: Mapping[str, Tensor | None], lr: LearningRate
) -> Params:
    """One gradient-descent step ``theta' = theta - lr * g`` per entry.

    Args:
        params: parameters, optionally with a leading task dimension.
        grads: gradients of the same shapes; ``None`` leaves the entry unchanged.
        lr: a scalar, or (Meta-SGD) a mapping of per-parameter learning-rate tensors that broadcast
            against the parameters.
    """
    return {
        k: p if grads.get(k) is None else p - _lr_for(lr, k) * grads[k] for k, p in params.items()
    }


def adapt_params(
    loss: Tensor,
    params: Mapping[str, Tensor],
    lr: LearningRate,
    first_order: bool = False,
) -> Params:
    """One MAML inner step on ``loss``.

    With ``first_order=False`` the step is differentiable (``create_graph=True``), so a later loss
    of the adapted parameters back-propagates through the inner gradient (second-order MAML).
    With ``first_order=True`` the inner gradient is treated as a constant (FOMAML): the adapted
    parameters still depend on ``params`` (and on a Meta-SGD ``lr``), with Jacobian identity.

    Args:
        loss: scalar loss; for per-task parameters (see :func:`per_task`) the *sum* of the tasks'
            losses, so each task's gradient is its own.
        params: the parameters ``loss`` was computed from.
        lr: learning rate (scalar or per-parameter mapping).
        first_order: drop second-order terms.

    Returns:
        The adapted parameters.

    Raises:
        ValueError: if ``loss`` is not a scalar or is not finite.
    """
    if loss.dim() != 0:
        raise ValueError(f"adapt_params needs a scalar loss, got shape {tuple(loss.shape)}")
    names = [k for k, v in params.items() if v.requires_grad]
    grads = torch.autograd.grad(
        loss,
        [params[k] for k in names],
        create_graph=not first_order,
        allow_unused=True,
    )
    named = {
        k: (None if g is None else (g.detach() if first_order else g))
        for k, g in zip(names, grads, strict=True)
    }
    return sgd_step(params, named, lr)


class Learner(nn.Module):
    """A module evaluated with its own (adapted) parameters; see :meth:`MAML.clone`.

    ``learner(x)`` runs the wrapped module functionally with ``learner.params``;
    ``learner.adapt(loss)`` replaces ``learner.params`` with one inner step's result.
    """

    def __init__(
        self, module: nn.Module, params: Params, lr: LearningRate, first_order: bool
    ) -> None:
        super().__init__()
        # Kept out of the module tree: a Learner is a view, not an owner, of its parameters.
        object.__setattr__(self, "_module", module)
        self.params: Params = params
        self.lr = lr
        self.first_order = first_order

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self._module, self.params, args, kwargs, strict=False)

    def adapt(self, loss: Tensor, first_order: bool | None = None) -> Learner:
        """Take one inner gradient step on ``loss`` (in place) and return ``self``."""
        fo = self.first_order if first_order is None else first_order
        self.params = adapt_params(loss, self.params, self.lr, first_order=fo)
        return self

    def clone(self) -> Learner:
        """A learner starting from this one's current (adapted) parameters."""
        return Learner(self._module, dict(self.params), self.lr, self.first_order)


class MAML(nn.Module):
    """Model-agnostic meta-learning wrapper (learn2learn-style surface).

    Args:
        module: the model to meta-learn.
        lr: inner-loop learning rate (> 0).
        first_order: use first-order MAML (no second derivatives).

    Example:
        >>> model = nn.Linear(3, 1)
        >>> maml = MAML(model, lr=0.1)
        >>> learner = maml.clone()
        >>> x, y = torch.randn(5, 3), torch.randn(5, 1)
        >>> _ = learner.adapt(((learner(x) - y) ** 2).mean())
        >>> ((learner(x) - y) ** 2).mean().backward()
    """

    def __init__(self, module: nn.Module, lr: float, first_order: bool = False) -> None:
        super().__init__()
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
            raise ValueError(f"the inner learning rate must be a positive number, got {lr!r}")
        self.module = module
        self.lr = float(lr)
        self.first_order = first_order

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def inner_lr(self) -> LearningRate:
        """The learning rate(s) :func:`adapt_params` uses for this meta-learner."""
        return self.lr

    def clone(self, first_order: bool | None = None) -> Learner:
        """A :class:`Learner` whose parameters are (differentiable functions of) the module's."""
        params = dict(self.module.named_parameters())
        fo = self.first_order if first_order is None else first_order
        return Learner(self.module, params, self.inner_lr(), fo)


def meta_sgd_rates(module: nn.Module, lr: float) -> nn.ParameterDict:
    """Meta-SGD's learnable learning rates: one tensor per parameter of ``module``, all ``lr``.

    Keys are the parameter names with ``.`` written ``__`` (``ParameterDict`` forbids dots);
    :func:`rates_by_name` maps them back.
    """
    return nn.ParameterDict(
        {
            k.replace(".", "__"): nn.Parameter(torch.full_like(p, float(lr)))
            for k, p in module.named_parameters()
        }
    )


def rates_by_name(rates: nn.ParameterDict, module: nn.Module) -> dict[str, Tensor]:
    """The rates of :func:`meta_sgd_rates` keyed by ``module``'s parameter names."""
    return {k: rates[k.replace(".", "__")] for k, _ in module.named_parameters()}


class MetaSGD(MAML):
    """Meta-SGD: MAML with a learnable learning rate for every parameter entry.

    The rates start at ``lr`` and are parameters of this module (``meta_sgd.lrs``), so an outer
    optimizer over ``meta_sgd.parameters()`` learns them together with the model.
    """

    def __init__(self, module: nn.Module, lr: float, first_order: bool = False) -> None:
        super().__init__(module, lr, first_order)
        self.lrs = meta_sgd_rates(module, lr)

    def inner_lr(self) -> LearningRate:
        return rates_by_name(self.lrs, self.module)
