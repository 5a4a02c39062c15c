"""What every meta-RL agent shares: policy, baseline, sampler, advantages, adaptation, evaluation.

A concrete agent (one module per learner) subclasses :class:`MetaAgent`, adds its config fields
by subclassing :class:`AgentConfig`, and implements :meth:`MetaAgent.step` (one meta-iteration)
and the inner-loop loss :meth:`MetaAgent.inner_loss`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from metarl.baselines import LinearFeatureBaseline
from metarl.evaluation import AdaptationResult, adaptation_lrs, evaluate_adaptation
from metarl.maml import Params, adapt_params, detach_params, is_per_task, per_task
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy, Policy
from metarl.returns import discounted_returns, gae, normalize
from metarl.rollout import Episodes, MultiTaskSampler
from metarl.tasks import Task

__all__ = ["AgentConfig", "MetaAgent", "MetaBatch", "OuterAdamAgent", "check_config"]


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


def check_config(config: Any) -> None:
    """Reject impossible hyperparameters before any work, naming the option to fix.

    Raises:
        ValueError: for a non-positive size or rate, or a factor out of range.
    """
    positive = {
        "inner_lr",
        "init_std",
        "max_kl",
        "outer_lr",
        "cg_iterations",
        "line_search_steps",
        "inner_steps",
        "outer_steps",
        "fisher_min_tasks",
    }
    unit = {"gamma", "gae_lambda", "fisher_subsample", "line_search_backtrack", "clip_eps"}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        option = "--" + field.name.replace("_", "-")
        if field.name in positive and not value > 0:
            raise ValueError(f"{option} must be positive, got {value}")
        if field.name in unit and not 0.0 <= value <= 1.0:
            raise ValueError(f"{option} must be in [0, 1], got {value}")
    if any(h < 1 for h in config.hidden_sizes):
        raise ValueError(f"--hidden-sizes must be positive, got {config.hidden_sizes}")


def make_policy(
    observation_space: gym.Space, action_space: gym.Space, config: AgentConfig
) -> Policy:
    """The policy an agent uses for these spaces."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"agents need a flat Box observation space, got {observation_space}; "
            "wrap the env with gymnasium.wrappers.FlattenObservation"
        )
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, gym.spaces.Box):
        return GaussianMLPPolicy(
            obs_dim,
            int(np.prod(action_space.shape)),
            config.hidden_sizes,
            config.activation,
            config.init_std,
        )
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalMLPPolicy(
            obs_dim, int(action_space.n), config.hidden_sizes, config.activation
        )
    raise ValueError(f"unsupported action space {action_space}; use Box or Discrete")


def masked_task_mean(x: Tensor, mask: Tensor) -> Tensor:
    """``[T]`` mean of ``x`` over each task's valid steps."""
    return (x * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1.0)


@dataclasses.dataclass
class MetaBatch:
    """What :meth:`MetaAgent.collect` gathers for one meta-iteration.

    Attributes:
        adapted: per-task adapted parameters, differentiable in the outer parameters.
        batches: (episodes, inner targets) of every inner step.
        post: episodes of the adapted policies.
        post_advantages: advantages of ``post``.
        metrics: returns before/after adaptation, env steps, sampling and adaptation times.
        started: ``time.perf_counter()`` at the start of the iteration.
    """

    adapted: Params
    batches: list[tuple[Episodes, Tensor]]
    post: Episodes
    post_advantages: Tensor
    metrics: dict[str, float]
    started: float

    def finish(self, **metrics: float | str) -> dict[str, float]:
        """The iteration's metrics with the outer step's, and total and outer times."""
        now = time.perf_counter()
        out = dict(self.metrics)
        out.update(metrics)
        out["time_iteration"] = now - self.started
        out["time_outer"] = out["time_iteration"] - out["time_sampling"] - out["time_adaptation"]
        return out


class MetaAgent:
    """Base class of the meta-RL learners.

    Args:
        sampler: the multi-task sampler (its device is the agent's device).
        config: the agent's config.
        seed: seeds the policy initialization and the agent's own random choices.
    """

    config: AgentConfig

    def __init__(self, sampler: MultiTaskSampler, config: AgentConfig, seed: int = 0) -> None:
        check_config(config)
        self.sampler = sampler
        self.config = config
        self.device = sampler.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = make_policy(sampler.observation_space, sampler.action_space, config)
        self.policy.to(self.device)
        # Meta-SGD's learnable rates, one tensor per policy parameter ('.' is not allowed in keys).
        self.lrs = torch.nn.ParameterDict(
            {
                k.replace(".", "__"): torch.nn.Parameter(torch.full_like(p, config.inner_lr))
                for k, p in self.policy.named_parameters()
            }
            if config.meta_sgd
            else {}
        )
        self.baseline = LinearFeatureBaseline()
        self.rng = np.random.default_rng(seed)

    def inner_lr(self) -> float | dict[str, Tensor]:
        """The inner learning rate: a number, or Meta-SGD's per-parameter rates."""
        if not self.config.meta_sgd:
            return self.config.inner_lr
        return {k: self.lrs[k.replace(".", "__")] for k, _ in self.policy.named_parameters()}

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

    def adapt_on(
        self,
        theta: Mapping[str, Tensor],
        batches: Sequence[tuple[Episodes, Tensor]],
        lr: float | None = None,
        create_graph: bool = True,
    ) -> Params:
        """Adapt per-task copies of ``theta`` with one inner step per (episodes, targets).

        Args:
            theta: shared parameters (the policy's, or candidates during a line search).
            batches: the episodes and inner targets of each inner step.
            lr: inner learning rate (:meth:`inner_lr` by default).
            create_graph: keep the graph for higher-order gradients (else first-order).

        Returns:
            Per-task adapted parameters ``[T, ...]``.
        """
        params = per_task(theta, batches[0][0].num_tasks)
        for episodes, targets in batches:
            loss = self.inner_loss(episodes, params, targets)
            params = adapt_params(
                loss,
                params,
                self.inner_lr() if lr is None else lr,
                first_order=self.config.first_order or not create_graph,
            )
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
        targets = self.inner_targets(episodes)
        own = self.policy.params()
        start = own if params is None else params
        with torch.enable_grad():
            start = {k: v.detach().requires_grad_(True) for k, v in start.items()}
            if not is_per_task(start, own):
                start = per_task(start, episodes.num_tasks)
            loss = self.inner_loss(episodes, start, targets)
            if lr is None:
                lr = self.test_lr()
            adapted = adapt_params(loss, start, lr, first_order=True)
        return detach_params(adapted)

    def sample_adapted(
        self, tasks: Sequence[Task]
    ) -> tuple[Params, list[tuple[Episodes, Tensor]], list[float]]:
        """Sample and adapt for ``inner_steps`` steps, keeping the graph from the policy.

        Returns:
            The adapted per-task parameters (differentiable in the policy's parameters), the
            episodes and advantages of every inner step, and the mean return before each step.
        """
        theta = self.policy.params()
        params: Params = per_task(theta, len(tasks))
        batches: list[tuple[Episodes, Tensor]] = []
        returns = []
        for _ in range(self.config.inner_steps):
            episodes = self.sampler.sample(
                self.policy, tasks, detach_params(params) if batches else None
            )
            targets = self.inner_targets(episodes)
            batches.append((episodes, targets))
            returns.append(episodes.episode_returns().mean().item())
            loss = self.inner_loss(episodes, params, targets)
            params = adapt_params(loss, params, self.inner_lr(), self.config.first_order)
        return params, batches, returns

    def collect(self, tasks: Sequence[Task]) -> MetaBatch:
        """The data of one meta-iteration: sample, adapt (graph kept), sample adapted policies."""
        started = time.perf_counter()
        steps_before, sample_time_before = self.sampler.total_steps, self.sampler.total_time
        adapted, batches, returns_before = self.sample_adapted(tasks)
        post = self.sampler.sample(self.policy, tasks, detach_params(adapted))
        post_advantages = self.advantages(post)
        sampling = self.sampler.total_time - sample_time_before
        metrics = {f"return_step{k}": r for k, r in enumerate(returns_before)}
        metrics.update(
            return_before=returns_before[0],
            return_after=post.episode_returns().mean().item(),
            env_steps=float(self.sampler.total_steps - steps_before),
            time_sampling=sampling,
            time_adaptation=time.perf_counter() - started - sampling,
        )
        metrics["env_steps_per_s"] = metrics["env_steps"] / max(sampling, 1e-9)
        return MetaBatch(adapted, batches, post, post_advantages, metrics, started)

    # -- evaluation ----------------------------------------------------------------------------

    def evaluate(
        self,
        sampler: MultiTaskSampler,
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

    def step(self, tasks: Sequence[Task]) -> dict[str, float]:
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

    The config needs an ``outer_lr`` field.
    """

    def __init__(self, sampler: MultiTaskSampler, config: AgentConfig, seed: int = 0) -> None:
        super().__init__(sampler, config, seed)
        self.optimizer = torch.optim.Adam(self.outer_parameters(), lr=config.outer_lr)

    def apply_gradient(self, loss: Tensor) -> str:
        """Back-propagate ``loss`` and take an Adam step; never steps on non-finite values.

        Returns:
            ``""`` when the step was taken, else the reason it was rejected.
        """
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return "non-finite loss or gradient"
        loss.backward()
        grads = [p.grad for p in self.outer_parameters() if p.grad is not None]
        if not all(torch.isfinite(g).all() for g in grads):
            self.optimizer.zero_grad(set_to_none=True)
            return "non-finite loss or gradient"
        self.optimizer.step()
        return ""

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
