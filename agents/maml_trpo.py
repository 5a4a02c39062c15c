"""MAML-TRPO: vanilla policy-gradient inner steps, a TRPO step on the post-adaptation surrogate.

One meta-iteration (Finn et al. 2017, section 5.3):

1. sample episodes of every task with the shared policy, fit the baseline, adapt per task with the
   REINFORCE loss (differentiable, all tasks in one backward pass);
2. sample episodes of every task with its adapted policy;
3. outer step: the importance-sampled surrogate of the post-adaptation episodes through the
   adaptation graph; conjugate gradient on the Hessian of the mean KL between the adapted policies
   before and after the step (Fisher-vector products on a subsample of the tasks, each adapted
   exactly as for the gradient; rllab's TRPO subsamples its Fisher data too); a backtracking
   line search accepts a step only if the surrogate improves and the
   mean KL stays within ``max_kl``, and restores the parameters otherwise.

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
from metarl.records import InnerStep, Rejection, StepMetrics
from metarl.returns import masked_task_mean
from metarl.tasks import Task
from metarl.trpo import conjugate_gradient, fisher_vector_product, line_search

__all__ = ["MAMLTRPO", "MAMLTRPOConfig"]


@dataclasses.dataclass
class MAMLTRPOConfig(AgentConfig):
    """MAML-TRPO settings (defaults: the MAML paper's).

    Attributes:
        max_kl: trust region: largest mean KL between adapted policies before/after a step.
        cg_iterations: conjugate-gradient iterations.
        cg_damping: damping added to the Fisher-vector products.
        line_search_steps: candidate step sizes tried.
        line_search_backtrack: shrink factor between candidates.
        fisher_subsample: fraction of the tasks whose episodes give the Fisher-vector products
            (1.0: all). The line search still checks the KL on every task and episode.
        fisher_min_tasks: the Fisher uses at least this many tasks (all when there are fewer):
            the curvature of one or two tasks can be near singular in the directions that
            matter to the others, and no step along such a direction passes the line search.
        activation: hidden activation of the policy (ReLU, as rllab's and learn2learn's MAML).
    """

    activation: str = "relu"

    max_kl: float = 0.01
    cg_iterations: int = 10
    cg_damping: float = 1e-5
    line_search_steps: int = 15
    line_search_backtrack: float = 0.8
    fisher_subsample: float = 0.2
    fisher_min_tasks: int = 5

    def validate(self) -> None:
        super().validate()
        require_positive(self, "max_kl", "cg_iterations", "line_search_steps", "fisher_min_tasks")
        require_unit(self, "fisher_subsample", "line_search_backtrack")
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
        grads = torch.autograd.grad(loss, theta)
        grad = torch.cat([g.reshape(-1) for g in grads])
        old_params = detach_params(adapted)
        loss_before = loss.item()

        if not (math.isfinite(loss_before) and torch.isfinite(grad).all()):
            # Nothing reaches the parameters; the run logs the reason and goes on.
            reason, frac, evals = Rejection.NON_FINITE, 0.0, 0
            kl_after, loss_after = 0.0, loss_before
        else:
            fvp = self._fisher(steps, post, old_params)
            direction = conjugate_gradient(fvp, -grad, cfg.cg_iterations)
            shs = 0.5 * torch.dot(direction, fvp(direction))
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

    def _fisher(self, steps: Sequence[InnerStep], post: Episodes, old: Mapping[str, Tensor]):
        """Fisher-vector product of the adapted policies' KL, on a subsample of the tasks.

        Each kept task is re-adapted on all its pre-adaptation episodes, so its curvature is taken
        at exactly the adapted policy the gradient was taken at. (Subsampling episodes instead
        would re-adapt on fewer episodes and move the adapted policy itself; keeping every task's
        full adaptation graph costs about three times the whole outer step.)
        """
        num = post.num_tasks
        keep = max(round(num * self.config.fisher_subsample), self.config.fisher_min_tasks, 1)
        if keep < num:
            idx = sorted(self.rng.choice(num, keep, replace=False).tolist())
            steps = [InnerStep(s.episodes.select_tasks(idx), s.targets[idx]) for s in steps]
            post = post.select_tasks(idx)
            old = {k: v[idx] for k, v in old.items()}
        adapted = self.readapt(self.policy.params(), steps, create_graph=True)
        kl = self._kl(detach_params(old), adapted, post)
        return fisher_vector_product(kl, self.outer_parameters(), self.config.cg_damping)
