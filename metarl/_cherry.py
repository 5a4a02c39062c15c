"""The one module of metarl that loads cherry-rl.

cherry-rl 0.2.0 imports the legacy ``gym`` package, which prints a deprecation notice on import;
it is silenced here. Only the pieces that our tests show to be right are re-exported:

* ``policy_loss``: the TRPO importance-sampled surrogate ``-mean(exp(logp - old_logp) * A)``
  (``tests/test_trpo.py::test_cherry_policy_loss_matches_formula``); it is the reference that
  ``agents.maml_trpo.surrogate_loss`` (one masked mean over all tasks, no per-task selection that
  would synchronize a GPU) is tested against.
* ``hessian_vector_product``: Pearlmutter's Hessian-vector product
  (``tests/test_trpo.py::test_fisher_vector_product_matches_explicit_fisher``).

Pieces we do *not* use, and why (tests in ``tests/test_trpo.py`` and ``tests/test_returns.py``
document each):

* ``cherry.algorithms.trpo.conjugate_gradient`` aliases ``r``, ``p`` and ``b`` and updates them in
  place, so it overwrites its input ``b`` and converges to a wrong solution; see
  :func:`metarl.trpo.conjugate_gradient`.
* ``cherry.td.discount`` allocates a batch-sized accumulator per step (quadratic in the horizon)
  and treats every ``done`` as terminal, so a time limit cannot be bootstrapped; see
  :mod:`metarl.returns`.
* ``cherry.models.robotics.LinearValue`` counts its time feature over the whole flattened batch
  instead of per episode; see :mod:`metarl.baselines`.
"""

from __future__ import annotations

import contextlib
import io
import warnings

with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
    warnings.simplefilter("ignore")
    import cherry
    from cherry.algorithms import trpo as _cherry_trpo

__all__ = ["cherry", "hessian_vector_product", "policy_loss"]

policy_loss = _cherry_trpo.policy_loss
hessian_vector_product = _cherry_trpo.hessian_vector_product
