"""MLP policies evaluated functionally, for one set of parameters or one set per task.

A policy is an ``nn.Module`` whose ``forward(obs, params=None)`` returns an action distribution.
``params`` is a parameter dict (see :mod:`metarl.maml`): either shaped like the module's own
parameters (shared by every observation), or with a leading task dimension ``T`` (from
:func:`metarl.maml.per_task` or an adaptation step), in which case ``obs`` is ``[T, ...]`` and each
task's observations go through that task's own parameters in one batched call (``baddbmm``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

__all__ = [
    "ACTIVATIONS",
    "CategoricalMLPPolicy",
    "GaussianMLPPolicy",
    "Policy",
    "make_policy",
    "mlp_forward",
]

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def _linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    # Per-task weights [T, out, in] against x [T, N, in]: one batched matmul for all tasks.
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def mlp_forward(
    x: Tensor, params: Mapping[str, Tensor], num_layers: int, activation: str = "tanh"
) -> Tensor:
    """Evaluate an MLP stored as ``layers.{i}.weight`` / ``layers.{i}.bias`` entries.

    Args:
        x: inputs ``[..., in]``; with per-task parameters ``[T, ..., in]``.
        params: the parameter dict (shared, or with a leading task dimension).
        num_layers: number of linear layers.
        activation: hidden activation, one of :data:`ACTIVATIONS`.

    Returns:
        Outputs ``[..., out]`` (``[T, ..., out]`` for per-task parameters).
    """
    act = ACTIVATIONS[activation]
    batched = params["layers.0.weight"].dim() == 3
    shape = x.shape
    if batched:
        num_tasks = params["layers.0.weight"].shape[0]
        if shape[0] != num_tasks:
            raise ValueError(
                f"per-task parameters for {num_tasks} tasks need observations shaped "
                f"[{num_tasks}, ..., obs_dim], got {tuple(shape)}"
            )
        x = x.reshape(num_tasks, -1, shape[-1])
    for i in range(num_layers):
        x = _linear(x, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
        if i < num_layers - 1:
            x = act(x)
    return x.reshape(*shape[:-1], x.shape[-1])


class Policy(nn.Module):
    """Base class: an MLP policy over flat observations with functional evaluation."""

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        hidden_sizes: Sequence[int] = (100, 100),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        if obs_dim < 1 or out_dim < 1 or any(h < 1 for h in hidden_sizes):
            raise ValueError(
                f"layer sizes must be positive: obs_dim={obs_dim}, out_dim={out_dim}, "
                f"hidden_sizes={tuple(hidden_sizes)}"
            )
        sizes = [obs_dim, *hidden_sizes, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.activation = activation
        self.obs_dim = obs_dim
        for layer in self.layers:
            # Xavier-uniform weights and zero biases, as in the MAML-RL reference code.
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def params(self) -> dict[str, Tensor]:
        """The module's parameters as a dict (the starting point of adaptation)."""
        return dict(self.named_parameters())

    def _features(self, obs: Tensor, params: Mapping[str, Tensor] | None) -> tuple[Tensor, Mapping]:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"observations must end in {self.obs_dim} features, got {tuple(obs.shape)}"
            )
        p = self.params() if params is None else params
        return mlp_forward(obs, p, len(self.layers), self.activation), p

    def sample(
        self,
        obs: Tensor,
        params: Mapping[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Sample actions and their log-probabilities, drawing only from ``generator``."""
        noise = self.draw_noise(obs.shape[:-1], generator, obs.device)
        return self.sample_given(obs, params, noise)

    def draw_noise(
        self, batch_shape: Sequence[int], generator: torch.Generator | None, device: torch.device
    ) -> Tensor:
        """The randomness of one :meth:`sample` call for observations ``[*batch_shape, obs_dim]``.

        Drawn apart from the policy evaluation so that a sampler can draw every step's noise on
        the learner and have workers act with it deterministically (:meth:`sample_given`).
        The base class draws nothing, for a policy that overrides only :meth:`sample`.
        """
        return torch.zeros((*batch_shape, 0), device=device)

    def sample_given(
        self, obs: Tensor, params: Mapping[str, Tensor] | None, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Actions and log-probabilities, given the noise :meth:`draw_noise` drew for ``obs``.

        Subclasses override this and :meth:`draw_noise`. A policy that overrides only
        :meth:`sample` (a deterministic test policy) is called with ``generator=None`` instead.

        Raises:
            NotImplementedError: when the subclass overrides neither this nor :meth:`sample`.
        """
        if type(self).sample is Policy.sample:
            raise NotImplementedError(f"{type(self).__name__} must override sample_given")
        return self.sample(obs, params, None)


class GaussianMLPPolicy(Policy):
    """Diagonal Gaussian policy: MLP mean, state-independent log standard deviation.

    Log-probabilities are summed over action dimensions.

    Args:
        obs_dim: observation size.
        act_dim: action size.
        hidden_sizes: hidden layer widths.
        activation: ``"tanh"`` or ``"relu"``.
        init_std: initial standard deviation.
        min_std: lower bound on the standard deviation.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (100, 100),
        activation: str = "tanh",
        init_std: float = 1.0,
        min_std: float = 1e-6,
    ) -> None:
        super().__init__(obs_dim, act_dim, hidden_sizes, activation)
        if not init_std > min_std > 0:
            raise ValueError(f"need init_std > min_std > 0, got {init_std} and {min_std}")
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self.min_log_std = math.log(min_std)

    def mean_std(
        self, obs: Tensor, params: Mapping[str, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean ``[..., act_dim]`` and standard deviation (broadcastable to the mean)."""
        mean, p = self._features(obs, params)
        log_std = p["log_std"].clamp(min=self.min_log_std)
        if log_std.dim() == 2:  # per-task [T, act_dim] against mean [T, ..., act_dim]
            log_std = log_std.reshape(log_std.shape[0], *([1] * (mean.dim() - 2)), -1)
        return mean, log_std.exp()

    def forward(self, obs: Tensor, params: Mapping[str, Tensor] | None = None) -> Distribution:
        mean, std = self.mean_std(obs, params)
        return Independent(Normal(mean, std.expand_as(mean), validate_args=False), 1)

    def draw_noise(
        self, batch_shape: Sequence[int], generator: torch.Generator | None, device: torch.device
    ) -> Tensor:
        """Standard normal noise ``[*batch_shape, act_dim]``."""
        shape = (*batch_shape, self.log_std.shape[-1])
        return torch.randn(shape, generator=generator, device=device, dtype=self.log_std.dtype)

    def sample_given(
        self, obs: Tensor, params: Mapping[str, Tensor] | None, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        mean, std = self.mean_std(obs, params)
        actions = mean + std * noise
        log_probs = Normal(mean, std.expand_as(mean), validate_args=False).log_prob(actions)
        return actions, log_probs.sum(-1)


class CategoricalMLPPolicy(Policy):
    """Softmax policy over ``num_actions`` discrete actions with MLP logits."""

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int] = (100, 100),
        activation: str = "tanh",
    ) -> None:
        super().__init__(obs_dim, num_actions, hidden_sizes, activation)

    def forward(self, obs: Tensor, params: Mapping[str, Tensor] | None = None) -> Distribution:
        logits, _ = self._features(obs, params)
        return Categorical(logits=logits, validate_args=False)

    def draw_noise(
        self, batch_shape: Sequence[int], generator: torch.Generator | None, device: torch.device
    ) -> Tensor:
        """Uniform ``[0, 1)`` draws ``batch_shape``, one per action."""
        return torch.rand(tuple(batch_shape), generator=generator, device=device)

    def sample_given(
        self, obs: Tensor, params: Mapping[str, Tensor] | None, noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        # Inverse CDF on a pre-drawn uniform rather than torch.multinomial, so the draw can be
        # made apart from the policy evaluation (a remote sampler's workers act with it).
        dist = self(obs, params)
        cdf = dist.probs.cumsum(-1)
        actions = torch.searchsorted(cdf, noise.unsqueeze(-1).to(cdf.dtype), right=True)
        actions = actions.squeeze(-1).clamp(max=cdf.shape[-1] - 1)
        return actions, dist.log_prob(actions)


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int],
    activation: str = "tanh",
    init_std: float = 1.0,
) -> Policy:
    """The MLP policy for these spaces: Gaussian for a ``Box`` action space, categorical for
    ``Discrete``.

    Raises:
        ValueError: for an observation space that is not a flat ``Box``, or another action space.
    """
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"agents need a flat Box observation space, got {observation_space}; "
            "wrap the env with gymnasium.wrappers.FlattenObservation"
        )
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, gym.spaces.Box):
        actions = int(np.prod(action_space.shape))
        return GaussianMLPPolicy(obs_dim, actions, hidden_sizes, activation, init_std)
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalMLPPolicy(obs_dim, int(action_space.n), hidden_sizes, activation)
    raise ValueError(f"unsupported action space {action_space}; use Box or Discrete")
