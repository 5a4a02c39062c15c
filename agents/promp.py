"""ProMP: LVC inner steps, a clipped-ratio outer objective with a KL penalty, several outer steps.

Per meta-iteration, after sampling pre- and post-adaptation episodes once, ProMP takes
``outer_steps`` Adam steps on

    - E_post[min(r A, clip(r, 1 - eps, 1 + eps) A)] + kl_penalty * KL(pi_theta_o || pi_theta)

where ``r = pi_{theta'(theta)} / pi_{theta'_o}`` is the ratio of the re-adapted policy to the one
that sampled the post-adaptation episodes, and the KL is between the pre-update policies (before
and during this iteration's outer steps) on the pre-adaptation episodes. The inner step uses the
LVC surrogate with importance weights ``pi_theta / pi_theta_o``, whose Hessian is the
low-variance part of the true one (``tests/test_dice.py``).

References:
    Rothfuss, Lee, Clavera, Asfour, Abbeel. "ProMP: Proximal Meta-Policy Search." ICLR 2019.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from agents.base import AgentConfig, OuterAdamAgent, require_positive, require_unit
from metarl.dice import lvc_objective
from metarl.episodes import Episodes
from metarl.maml import detach_params
from metarl.records import StepMetrics
from metarl.returns import masked_task_mean
from metarl.tasks import Task

__all__ = ["ProMP", "ProMPConfig", "clipped_surrogate"]


@dataclasses.dataclass
class ProMPConfig(AgentConfig):
    """ProMP settings (defaults: the ProMP paper's).

    Attributes:
        outer_lr: Adam learning rate of the outer steps.
        outer_steps: outer (Adam) steps per batch of samples.
        clip_eps: ratio clipping range epsilon.
        kl_penalty: weight of the KL penalty between pre-update policies.
    """

    outer_lr: float = 1e-3
    outer_steps: int = 5
    clip_eps: float = 0.3
    kl_penalty: float = 5e-4

    def validate(self) -> None:
        super().validate()
        require_positive(self, "outer_lr", "outer_steps")
        require_unit(self, "clip_eps")
        if self.kl_penalty < 0:
            raise ValueError(f"--kl-penalty must be >= 0, got {self.kl_penalty}")


def clipped_surrogate(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor, eps: float
) -> Tensor:
    """``[T]`` PPO-clip objective ``mean_t min(r A, clip(r, 1-eps, 1+eps) A)`` per task.

    References:
        Schulman, Wolski, Dhariwal, Radford, Klimov. "Proximal Policy Optimization Algorithms."
        2017.
    """
    if not log_probs.shape == old_log_probs.shape == advantages.shape == mask.shape:
        raise ValueError("log_probs, old_log_probs, advantages and mask must share a shape")
    ratio = torch.exp(log_probs - old_log_probs.detach())
    objective = torch.min(ratio * advantages, ratio.clamp(1.0 - eps, 1.0 + eps) * advantages)
    return masked_task_mean(objective, mask)


class ProMP(OuterAdamAgent):
    """Proximal meta-policy search; see the module docstring."""

    config: ProMPConfig

    def inner_loss(
        self, episodes: Episodes, params: Mapping[str, Tensor], targets: Tensor
    ) -> Tensor:
        """Sum over tasks of the LVC loss per valid step, importance-weighted to the sampler."""
        logp = self.log_probs(episodes, params)
        per_episode = lvc_objective(
            logp, targets, episodes.mask, reduction="none", behaviour_log_probs=episodes.log_probs
        )
        return -(per_episode.sum(1) / episodes.mask.sum((1, 2)).clamp(min=1.0)).sum()

    def step(self, tasks: Sequence[Task]) -> StepMetrics:
        """One meta-iteration: sample once, then ``outer_steps`` Adam steps."""
        cfg = self.config
        batch = self.collect(tasks)
        post, post_adv = batch.post, batch.post_advantages
        pre = batch.steps[0].episodes
        theta_old = detach_params(self.policy.params())
        adapted_old = detach_params(batch.adapted)
        rejected = None
        losses = []
        for k in range(cfg.outer_steps):
            adapted = (
                batch.adapted
                if k == 0
                else self.readapt(self.policy.params(), batch.steps, create_graph=True)
            )
            logp = self.log_probs(post, adapted)
            surrogate = clipped_surrogate(logp, post.log_probs, post_adv, post.mask, cfg.clip_eps)
            kl_pre = kl_divergence(
                self.policy(pre.observations, theta_old),
                self.policy(pre.observations, self.policy.params()),
            )
            loss = -surrogate.mean() + cfg.kl_penalty * masked_task_mean(kl_pre, pre.mask).mean()
            losses.append(loss.item())
            rejected = self.apply_gradient(loss)
            if rejected:
                break
        new = self.readapt(self.policy.params(), batch.steps, create_graph=False)
        with torch.no_grad():
            kl = kl_divergence(
                self.policy(post.observations, adapted_old), self.policy(post.observations, new)
            )
            kl_post = masked_task_mean(kl, post.mask).mean().item()
        return batch.finish(losses[0], losses[-1], kl_post, rejected)
