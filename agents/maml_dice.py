"""MAML-DiCE: inner and outer objectives are DiCE surrogates, the outer step is Adam.

The inner step differentiates the DiCE surrogate of the pre-adaptation episodes, whose magic boxes
keep the dependence of the sampled data on the parameters; so the meta-gradient through the
adapted parameters includes the terms that MAML-TRPO's REINFORCE inner loss drops
(``tests/test_dice.py`` shows them by exact enumeration). Both objectives use the linear baseline
in Mao et al.'s form, which lowers variance without bias at any derivative order.

References:
    Foerster et al. "DiCE: The Infinitely Differentiable Monte-Carlo Estimator." ICML 2018.
    Mao et al. "A Baseline for Any Order Gradient Estimation in Stochastic Computation Graphs."
    ICML 2019.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from agents.base import AgentConfig, OuterAdamAgent, require_positive
from metarl.dice import dice_objective
from metarl.episodes import Episodes
from metarl.records import StepMetrics
from metarl.returns import discounted_returns
from metarl.tasks import Task

__all__ = ["MAMLDiCE", "MAMLDiCEConfig", "dice_task_loss"]


@dataclasses.dataclass
class MAMLDiCEConfig(AgentConfig):
    """MAML-DiCE settings.

    Attributes:
        outer_lr: Adam learning rate of the outer step.
    """

    outer_lr: float = 1e-3

    def validate(self) -> None:
        super().validate()
        require_positive(self, "outer_lr")


def dice_task_loss(log_probs: Tensor, episodes: Episodes, values: Tensor, gamma: float) -> Tensor:
    """``[T]`` negative DiCE surrogate per task, per valid step (sum over episodes / steps).

    Scaling by the number of steps instead of episodes keeps the inner learning rate on the
    same scale as MAML-TRPO's per-step REINFORCE loss.
    """
    per_episode = dice_objective(
        log_probs, episodes.rewards, episodes.mask, gamma, values=values, reduction="none"
    )
    return -per_episode.sum(1) / episodes.mask.sum((1, 2)).clamp(min=1.0)


class MAMLDiCE(OuterAdamAgent):
    """MAML with DiCE inner and outer objectives; see the module docstring."""

    config: MAMLDiCEConfig

    def inner_targets(self, episodes: Episodes) -> Tensor:
        """Baseline values of the observations (fit per task to the discounted returns)."""
        with torch.no_grad():
            returns = discounted_returns(episodes.rewards, episodes.mask, self.config.gamma)
            return self.baseline.fit_predict(episodes.observations, returns, episodes.mask)

    def inner_loss(
        self, episodes: Episodes, params: Mapping[str, Tensor], targets: Tensor
    ) -> Tensor:
        """Sum over tasks of the DiCE loss (``targets``: baseline values)."""
        logp = self.log_probs(episodes, params)
        return dice_task_loss(logp, episodes, targets, self.config.gamma).sum()

    def step(self, tasks: Sequence[Task]) -> StepMetrics:
        """One meta-iteration: DiCE adaptation, then Adam on the post-adaptation DiCE loss."""
        batch = self.collect(tasks)
        post = batch.post
        logp = self.log_probs(post, batch.adapted)
        loss = dice_task_loss(logp, post, self.inner_targets(post), self.config.gamma).mean()
        # No trust region, so no KL to report (StepMetrics.kl stays None).
        return batch.finish(loss.item(), rejected=self.apply_gradient(loss))
