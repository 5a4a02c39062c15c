"""What every meta-RL agent shares: policy, baseline, sampler, advantages, inner loop, evaluation.

A concrete agent (one module per learner) subclasses :class:`MetaAgent`, adds its config fields
by subclassing :class:`AgentConfig` (and checks them in its ``validate``), and implements
:meth:`MetaAgent.step` (one meta-iteration, reported as a :class:`~metarl.records.StepMetrics`);
it may override :meth:`MetaAgent.inner_loss` and :meth:`MetaAgent.inner_targets`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metarl.baselines import LinearFeatureBaseline
from metarl.episodes import Episodes
from metarl.evaluation import AdaptationResult, adaptation_lrs, evaluate_adaptation
from metarl.maml import (
    Params,
    adapt_params,
    detach_params,
    is_per_task,
    meta_sgd_rates,
    per_task,
    rates_by_name,
)
from metarl.policies import make_policy
from metarl.records import InnerStep, MetaBatch, Rejection, StepMetrics
from metarl.returns import discounted_returns, gae, masked_task_mean, normalize
from metarl.samplers import Sampler
from metarl.tasks import Task

__all__ = [
    "AgentConfig",
    "MetaAgent",
    "OuterAdamAgent",
    "require_positive",
    "require_unit",
]


def require_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")


def require_unit(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")


@dataclasses.dataclass
class AgentConfig:
    """Settings shared by every agent.

    Attributes:
        hidden_sizes: hidden layer widths of the policy MLP.
        activation: hidden activation, ``tanh`` or ``relu``.
        init_std: initial standard deviation of a Gaussian policy.
        inner_lr: learning rate of each inner (adaptation) step.
        inner_steps: inner gradient steps per task during meta-training; every step samples fresh
            episodes with the current adapted policy.
        first_order: drop second-order terms of the meta-gradient (first-order MAML).
        gamma: discount factor.
        gae_lambda: GAE parameter (1.0: returns minus baseline, as in MAML).
        normalize_advantages: normalize advantages per task before each loss.
        bootstrap_truncated: bootstrap time-limit truncations with the baseline value. Off by
            default: the meta-RL objective is the return over the fixed horizon, so the value
            after the last step is 0 (the terminated/truncated flags are still kept apart).
        meta_sgd: learn a per-parameter inner learning rate (Meta-SGD), starting at inner_lr.
    """

    hidden_sizes: tuple[int, ...] = (100, 100)
    activation: str = "tanh"
    init_std: float = 1.0
    inner_lr: float = 0.1
    inner_steps: int = 1
    first_order: bool = False
    gamma: float = 0.99
    gae_lambda: float = 1.0
    normalize_advantages: bool = True
    bootstrap_truncated: bool = False
    meta_sgd: bool = False

    def validate(self) -> None:
        """Reject impossible settings before any work, naming the option to fix.

        Subclasses check their own fields and call ``super().validate()``.

        Raises:
            ValueError: for a non-positive size or rate, or a factor out of range.
        """
        require_positive(self, "inner_lr", "init_std", "inner_steps")
        require_unit(self, "gamma", "gae_lambda")
        if any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"--hidden-sizes must be positive, got {self.hidden_sizes}")
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"--activation must be tanh or relu, got {self.activation!r}")


class MetaAgent:
    """Base class of the meta-RL learners.

    Args:
        sampler: the multi-task sampler (its device is the agent's device).
        config: the agent's config.
        seed: seeds the policy initialization and the agent's own random choices.

    Raises:
        ValueError: for a bad setting in ``config`` or spaces the policies do not support.
    """

    config: AgentConfig

    def __init__(self, sampler: Sampler, config: AgentConfig, seed: int = 0) -> None:
        config.validate()
        self.sampler = sampler
        self.config = config
        self.device = sampler.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = make_policy(
                sampler.observation_space,
                sampler.action_space,
                config.hidden_sizes,
                config.activation,
                config.init_std,
            )
        self.policy.to(self.device)
        # Meta-SGD's learnable rates (none without Meta-SGD; the checkpoint keeps the key).
        empty = torch.nn.ParameterDict()
        self.lrs = meta_sgd_rates(self.policy, config.inner_lr) if config.meta_sgd else empty
        self.baseline = LinearFeatureBaseline()
        self.rng = np.random.default_rng(seed)

    def inner_lr(self) -> float | dict[str, Tensor]:
        """The inner learning rate: a number, or Meta-SGD's per-parameter rates."""
        if not self.config.meta_sgd:
            return self.config.inner_lr
        return rates_by_name(self.lrs, self.policy)

    def outer_parameters(self) -> list[Tensor]:
        """What the outer step updates: the policy's parameters (and Meta-SGD's rates)."""
        return [*self.policy.parameters(), *self.lrs.values()]

    def inner_targets(self, episodes: Episodes) -> Tensor:
        """What :meth:`inner_loss` weighs log-probabilities with (advantages by default)."""
        return self.advantages(episodes)

    # -- advantages and the inner loop ---------------------------------------------------------

    def advantages(self, episodes: Episodes) -> Tensor:
        """Baseline-corrected (normalized) advantages ``[T, E, H]``, detached."""
        cfg = self.config
        with torch.no_grad():
            boot = None
            if cfg.bootstrap_truncated:
                returns = discounted_returns(episodes.rewards, episodes.mask, cfg.gamma)
                weights = self.baseline.fit(episodes.observations, returns, episodes.mask)
                boot = self.baseline.predict(
                    weights, episodes.last_observations, episodes.lengths
                ) * (~episodes.terminated.any(-1)).to(returns.dtype)
            returns = discounted_returns(episodes.rewards, episodes.mask, cfg.gamma, boot)
            values = self.baseline.fit_predict(episodes.observations, returns, episodes.mask)
            adv = gae(episodes.rewards, values, episodes.mask, cfg.gamma, cfg.gae_lambda, boot)
            if cfg.normalize_advantages:
                adv = normalize(adv, episodes.mask)
        return adv

    def log_probs(self, episodes: Episodes, params: Mapping[str, Tensor]) -> Tensor:
        """``[T, E, H]`` log-probabilities of the episodes' actions under ``params``."""
        return self.policy(episodes.observations, params).log_prob(episodes.actions)

    def inner_loss(
        self, episodes: Episodes, params: Mapping[str, Tensor], targets: Tensor
    ) -> Tensor:
        """Sum over tasks of each task's inner loss (so per-task gradients stay separate).

        The default is the REINFORCE loss ``-mean_t log pi(a_t|s_t) A_t`` of MAML, with
        ``targets`` the advantages from :meth:`inner_targets`.
        """
        logp = self.log_probs(episodes, params)
        return -masked_task_mean(logp * targets, episodes.mask).sum()

    def inner_step(
        self, params: Params, step: InnerStep, lr: Any = None, create_graph: bool = True
    ) -> Params:
        """One inner step of every task: the one place the inner loop's maths happens.

        Args:
            params: per-task parameters ``[T, ...]`` to step from.
            step: the episodes and targets of the step.
            lr: learning rate or Meta-SGD rates (:meth:`inner_lr` by default).
            create_graph: keep the graph through the step, so the outer step differentiates
                it (second order unless the config is first-order); False for evaluation and
                line-search candidates.

        Returns:
            Per-task adapted parameters ``[T, ...]``.
        """
        loss = self.inner_loss(step.episodes, params, step.targets)
        first_order = self.config.first_order or not create_graph
        return adapt_params(loss, params, self.inner_lr() if lr is None else lr, first_order)

    def readapt(
        self, theta: Mapping[str, Tensor], steps: Sequence[InnerStep], create_graph: bool = True
    ) -> Params:
        """Adapt per-task copies of ``theta`` again on already-sampled inner steps.

        Used by outer steps that need the adapted policies at other outer parameters (a line
        search's candidates, a Fisher on a subsample of tasks, ProMP's later epochs).
        """
        params = per_task(theta, steps[0].episodes.num_tasks)
        for step in steps:
            params = self.inner_step(params, step, create_graph=create_graph)
        return params

    def adapt(
        self,
        episodes: Episodes,
        params: Mapping[str, Tensor] | None = None,
        lr: float | Mapping[str, Tensor] | None = None,
    ) -> Params:
        """One inner step on ``episodes``, without a graph (for evaluation and deployment).

        Args:
            episodes: episodes of every task, sampled with ``params``.
            params: shared or per-task parameters to start from (the policy's own by default).
            lr: learning rate, or per-parameter rates (:meth:`test_lr` by default).

        Returns:
            Detached per-task adapted parameters ``[T, ...]``.
        """
        step = InnerStep(episodes, self.inner_targets(episodes))
        own = self.policy.params()
        start = own if params is None else params
        with torch.enable_grad():
            start = {k: v.detach().requires_grad_(True) for k, v in start.items()}
            if not is_per_task(start, own):
                start = per_task(start, episodes.num_tasks)
            lr = self.test_lr() if lr is None else lr
            adapted = self.inner_step(start, step, lr, create_graph=False)
        return detach_params(adapted)

    def collect(self, tasks: Sequence[Task]) -> MetaBatch:
        """One meta-iteration's data: sample and adapt ``inner_steps`` times keeping the graph
        from the policy's parameters, then sample the adapted policies."""
        started = time.perf_counter()
        steps_before, sample_time_before = self.sampler.total_steps, self.sampler.total_time
        params: Params = per_task(self.policy.params(), len(tasks))
        steps: list[InnerStep] = []
        returns, successes = [], []
        for _ in range(self.config.inner_steps):
            episodes = self.sampler.sample(
                self.policy, tasks, detach_params(params) if steps else None
            )
            steps.append(InnerStep(episodes, self.inner_targets(episodes)))
            returns.append(episodes.episode_returns().mean().item())
            successes.append(episodes.success_rate())
            params = self.inner_step(params, steps[-1])
        post = self.sampler.sample(self.policy, tasks, detach_params(params))
        post_advantages = self.advantages(post)
        returns.append(post.episode_returns().mean().item())
        successes.append(post.success_rate())
        sampling = self.sampler.total_time - sample_time_before
        return MetaBatch(
            adapted=params,
            steps=steps,
            post=post,
            post_advantages=post_advantages,
            returns=returns,
            env_steps=self.sampler.total_steps - steps_before,
            time_sampling=sampling,
            time_adaptation=time.perf_counter() - started - sampling,
            started=started,
            success_rates=None if None in successes else successes,
        )

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate(
        self,
        sampler: Sampler,
        tasks: Sequence[Task],
        adapt_steps: int,
        lr: float | None = None,
        later_lr_scale: float = 0.5,
    ) -> AdaptationResult:
        """Returns on held-out ``tasks`` before and after each of ``adapt_steps`` steps.

        The literature's protocol (:mod:`metarl.evaluation`): fresh episodes every step, the
        first step at ``lr``, later steps at ``lr * later_lr_scale``.

        Args:
            sampler: a sampler sized for ``len(tasks)`` tasks.
            tasks: held-out tasks.
            adapt_steps: number of adaptation steps ``K``.
            lr: first-step learning rate; ``None`` uses the training inner lr (Meta-SGD: the
                learned rates).
            later_lr_scale: factor of the learning rate of steps 2..K.
        """
        first = self.test_lr() if lr is None else lr
        lrs = adaptation_lrs(first, adapt_steps, later_lr_scale)
        return evaluate_adaptation(self, sampler, tasks, lrs)

    def test_lr(self) -> float | dict[str, Tensor]:
        """The inner learning rate without a graph (Meta-SGD: detached learned rates)."""
        lr = self.inner_lr()
        return {k: v.detach() for k, v in lr.items()} if isinstance(lr, dict) else lr

    # -- learning ------------------------------------------------------------------------------

    def step(self, tasks: Sequence[Task]) -> StepMetrics:
        """One meta-iteration on ``tasks``; returns its metrics."""
        raise NotImplementedError

    # -- persistence ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training identically."""
        return {
            "policy": self.policy.state_dict(),
            "lrs": self.lrs.state_dict(),
            "rng": self.rng.bit_generator.state,
            "sampler": self.sampler.state_dict(),
        }

    def load_policy_state(self, state: Mapping[str, Any]) -> None:
        """Restore only the learned parameters (policy and Meta-SGD rates), e.g. to evaluate."""
        self.policy.load_state_dict(state["policy"])
        self.lrs.load_state_dict(state["lrs"])

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.load_policy_state(state)
        self.rng.bit_generator.state = state["rng"]
        self.sampler.load_state_dict(state["sampler"])


class OuterAdamAgent(MetaAgent):
    """A meta-agent whose outer step is Adam on a differentiable meta-objective.

    The config needs an ``outer_lr`` field (checked in its ``validate``).
    """

    def __init__(self, sampler: Sampler, config: AgentConfig, seed: int = 0) -> None:
        super().__init__(sampler, config, seed)
        self.optimizer = torch.optim.Adam(self.outer_parameters(), lr=config.outer_lr)

    def apply_gradient(self, loss: Tensor) -> Rejection | None:
        """Back-propagate ``loss`` and take an Adam step; never steps on non-finite values.

        Returns:
            None when the step was taken, else why it was rejected.
        """
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return Rejection.NON_FINITE
        loss.backward()
        grads = [p.grad for p in self.outer_parameters() if p.grad is not None]
        if not all(torch.isfinite(g).all() for g in grads):
            self.optimizer.zero_grad(set_to_none=True)
            return Rejection.NON_FINITE
        self.optimizer.step()
        return None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
