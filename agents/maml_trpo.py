"""MAML-TRPO: vanilla policy-gradient inner steps, a TRPO step on the post-adaptation surrogate.

One meta-iteration (Finn et al. 2017, section 5.3):

1. sample episodes of every task with the shared policy, fit the baseline, adapt per task with the
   REINFORCE loss (differentiable, all tasks in one backward pass);
2. sample episodes of every task with its adapted policy;
3. outer step: the importance-sampled surrogate of the post-adaptation episodes through the
   adaptation graph; conjugate gradient on the Hessian of the mean KL between the adapted policies
   before and after the step (Fisher-vector products through the gradient's own adaptation graph,
   every task and every inner episode; see :meth:`MAMLTRPO._fisher`); a backtracking line search
   accepts a step only if the surrogate improves and the mean KL over all episodes stays within
   ``max_kl``, and restores the parameters otherwise.

References:
    Finn, Abbeel, Levine. "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks."
    ICML 2017.
    Schulman et al. "Trust Region Policy Optimization." ICML 2015.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from agents.base import AgentConfig, MetaAgent, require_positive, require_unit
from metarl.episodes import Episodes
from metarl.maml import Params, detach_params
from metarl.records import Rejection, StepMetrics
from metarl.returns import masked_task_mean
from metarl.tasks import Task
from metarl.trpo import (
    conjugate_gradient_with_product,
    fisher_vector_product_through,
    line_search,
)

__all__ = ["MAMLTRPO", "MAMLTRPOConfig"]


@dataclasses.dataclass
class MAMLTRPOConfig(AgentConfig):
    """MAML-TRPO settings (defaults: the MAML paper's, but for ``cg_iterations``).

    Attributes:
        max_kl: trust region: largest mean KL between adapted policies before/after a step.
        cg_iterations: conjugate-gradient iterations (rllab's 10 cost 2.2 s per Particles2D
            iteration on 2 cores with the Fisher through every task's adaptation; 6 take 1.4 s).
        cg_damping: damping added to the Fisher-vector products.
        line_search_steps: candidate step sizes tried.
        line_search_backtrack: shrink factor between candidates.
        fisher_episodes: fraction of each task's post-adaptation episodes on which the
            Fisher-vector products evaluate the KL (at least one per task; 1.0: all). Every task
            and every inner episode stays in the adaptation the products differentiate through;
            the line search checks the KL on every episode.
        activation: hidden activation of the policy (ReLU, as rllab's and learn2learn's MAML).
    """

    activation: str = "relu"

    max_kl: float = 0.01
    cg_iterations: int = 6
    cg_damping: float = 1e-5
    line_search_steps: int = 15
    line_search_backtrack: float = 0.8
    fisher_episodes: float = 0.25

    def validate(self) -> None:
        super().validate()
        require_positive(self, "max_kl", "cg_iterations", "line_search_steps", "fisher_episodes")
        require_unit(self, "fisher_episodes", "line_search_backtrack")
        if self.cg_damping < 0:
            raise ValueError(f"--cg-damping must be >= 0, got {self.cg_damping}")


def surrogate_loss(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor
) -> Tensor:
    """TRPO surrogate ``-E[exp(logp - logp_old) * A]``, averaged per task, then over tasks.

    Per task this is cherry's ``policy_loss`` on the task's valid steps (a test checks it against
    cherry); written as one masked mean so that no per-task selection synchronizes a GPU.
    """
    if not log_probs.shape == old_log_probs.shape == advantages.shape == mask.shape:
        raise ValueError("log_probs, old_log_probs, advantages and mask must share a shape")
    ratio = torch.exp(log_probs - old_log_probs)
    return -masked_task_mean(ratio * advantages, mask).mean()


class MAMLTRPO(MetaAgent):
    """MAML with a TRPO outer step; see the module docstring."""

    config: MAMLTRPOConfig

    def _kl(self, old: Params, new: Params, episodes: Episodes) -> Tensor:
        """Mean over tasks of the masked mean ``KL(pi_old || pi_new)`` on ``episodes``."""
        obs = episodes.observations
        kl = kl_divergence(self.policy(obs, old), self.policy(obs, new))
        return masked_task_mean(kl, episodes.mask).mean()

    def step(self, tasks: Sequence[Task]) -> StepMetrics:
        """One meta-iteration; returns returns before/after adaptation, losses, KL and timings."""
        cfg = self.config
        batch = self.collect(tasks)
        adapted, steps, post = batch.adapted, batch.steps, batch.post
        post_adv = batch.post_advantages
        theta = self.outer_parameters()
        logp = self.log_probs(post, adapted)
        old_logp = logp.detach()
        loss = surrogate_loss(logp, old_logp, post_adv, post.mask)
        # The adaptation graph is kept: the Fisher-vector products differentiate through it.
        grads = torch.autograd.grad(loss, theta, retain_graph=True)
        grad = torch.cat([g.reshape(-1) for g in grads])
        old_params = detach_params(adapted)
        loss_before = loss.item()

        if not (math.isfinite(loss_before) and torch.isfinite(grad).all()):
            # Nothing reaches the parameters; the run logs the reason and goes on.
            reason, frac, evals = Rejection.NON_FINITE, 0.0, 0
            kl_after, loss_after = 0.0, loss_before
        else:
            fvp = self._fisher(adapted, post, old_params)
            direction, fisher_direction = conjugate_gradient_with_product(
                fvp, -grad, cfg.cg_iterations
            )
            shs = 0.5 * torch.dot(direction, fisher_direction)
            full_step = direction * torch.sqrt(cfg.max_kl / shs.clamp(min=1e-12))

            def evaluate() -> tuple[float, float]:
                new = self.readapt(self.policy.params(), steps, create_graph=False)
                with torch.no_grad():
                    new_logp = self.log_probs(post, new)
                    new_loss = surrogate_loss(new_logp, old_logp, post_adv, post.mask)
                    kl = self._kl(old_params, new, post)
                return new_loss.item(), kl.item()

            result = line_search(
                theta,
                full_step,
                evaluate,
                loss_before,
                cfg.max_kl,
                cfg.line_search_steps,
                cfg.line_search_backtrack,
            )
            frac, evals = result.fraction, result.evaluations
            kl_after, loss_after, reason = result.kl, result.loss, result.reason
        return batch.finish(
            loss_before,
            loss_after,
            kl_after,
            reason,
            step_fraction=frac,
            line_search_evaluations=float(evals),
        )

    def _fisher(self, adapted: Params, post: Episodes, old: Mapping[str, Tensor]):
        """Fisher-vector products of the adapted policies' mean KL, through the adaptation.

        ``adapted`` keeps the graph of the gradient's own adaptation, so the curvature is taken at
        exactly the adapted policies the gradient was taken at, for every task.
        :func:`~metarl.trpo.fisher_vector_product_through` forms ``J^T F J`` instead of
        differentiating the KL's gradient through the adaptation once more (the same products,
        without third derivatives of the inner loss), and ``F`` only needs the KL on the first
        ``fisher_episodes`` of each task's post-adaptation episodes (episodes of a task are
        exchangeable).

        What this replaced, measured on HalfCheetahDir (40 tasks x 20 episodes, a checkpoint at
        iteration 110): the first-order gain of the step at the KL bound was 0.026 with the
        Fisher on all tasks, and 0.013 with the earlier default of 8 re-adapted tasks, i.e. half;
        the KL on 2, 5 or 10 of 20 post episodes per task changed it by under 1%, while a
        Jacobian from half the inner episodes lost a third.
        """
        keep = max(1, round(post.episodes_per_task * self.config.fisher_episodes))
        first = post.first_episodes(keep)
        return fisher_vector_product_through(
            lambda new: self._kl(old, new, first),
            adapted,
            self.outer_parameters(),
            self.config.cg_damping,
        )
