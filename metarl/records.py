"""Named records that travel between a learner and the training loop.

:class:`InnerStep` is one inner (adaptation) step's data and :class:`MetaBatch` one
meta-iteration's, as ``MetaAgent.collect`` gathers it; :class:`StepMetrics` is what a learner's
``step`` reports, with the outcome of its outer step as a field (:class:`Rejection`), not a string
to compare.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any

from torch import Tensor

from metarl.episodes import Episodes
from metarl.maml import Params

__all__ = ["InnerStep", "MetaBatch", "Rejection", "StepMetrics"]


@dataclasses.dataclass(frozen=True)
class InnerStep:
    """The data of one inner step of every task.

    Attributes:
        episodes: the episodes sampled for the step (``[T, E, H]``).
        targets: what the inner loss weighs the log-probabilities with (advantages, ``[T, E, H]``,
            detached).
    """

    episodes: Episodes
    targets: Tensor


class Rejection(enum.StrEnum):
    """Why a learner did not apply its outer step (the parameters stayed as they were)."""

    NON_FINITE = "non-finite loss or gradient"
    NO_IMPROVEMENT = "no candidate improved the surrogate within the KL limit"


@dataclasses.dataclass
class StepMetrics:
    """One meta-iteration as a learner reports it.

    Attributes:
        returns: mean episode return before each inner step, then after the last
            (``inner_steps + 1`` values; ``returns[0]`` is the pre-adaptation return).
        loss_before: the outer objective before the outer step.
        loss_after: the outer objective after it (None where the learner does not re-evaluate).
        kl: mean KL between the adapted policies before and after the outer step; None for a
            learner without a trust region.
        rejected: why the outer step was not applied; None when it was.
        env_steps: env steps sampled in the iteration.
        time_sampling: seconds spent sampling.
        time_adaptation: seconds spent in inner steps (outside sampling).
        time_iteration: seconds for the whole iteration.
        extra: learner-specific numbers (e.g. MAML-TRPO's ``step_fraction``).
        success_rates: success rate before each inner step, then after the last (aligned with
            ``returns``; each the mean over tasks of a task's fraction of successful episodes);
            None when the env reports no ``info["success"]``.
    """

    returns: list[float]
    loss_before: float
    loss_after: float | None = None
    kl: float | None = None
    rejected: Rejection | None = None
    env_steps: int = 0
    time_sampling: float = 0.0
    time_adaptation: float = 0.0
    time_iteration: float = 0.0
    extra: dict[str, float] = dataclasses.field(default_factory=dict)
    success_rates: list[float] | None = None

    @property
    def step_accepted(self) -> bool:
        """Whether the outer step was applied."""
        return self.rejected is None

    @property
    def return_before(self) -> float:
        return self.returns[0]

    @property
    def return_after(self) -> float:
        return self.returns[-1]

    @property
    def success_before(self) -> float | None:
        return None if self.success_rates is None else self.success_rates[0]

    @property
    def success_after(self) -> float | None:
        return None if self.success_rates is None else self.success_rates[-1]

    @property
    def time_outer(self) -> float:
        return self.time_iteration - self.time_sampling - self.time_adaptation

    @property
    def env_steps_per_s(self) -> float:
        return self.env_steps / max(self.time_sampling, 1e-9)

    def to_row(self) -> dict[str, Any]:
        """A flat JSON row for ``metrics.jsonl`` (the keys ``scripts/plot.py`` reads).

        Optional values (``loss_after``, ``kl``, ``rejected_reason``, ``success_before`` and
        ``success_after``) are left out when they are None.
        """
        row: dict[str, Any] = {f"return_step{k}": r for k, r in enumerate(self.returns[:-1])}
        row.update(
            return_before=self.return_before,
            return_after=self.return_after,
            loss_before=self.loss_before,
            step_accepted=float(self.step_accepted),
            env_steps=float(self.env_steps),
            env_steps_per_s=self.env_steps_per_s,
            time_sampling=self.time_sampling,
            time_adaptation=self.time_adaptation,
            time_outer=self.time_outer,
            time_iteration=self.time_iteration,
        )
        if self.loss_after is not None:
            row["loss_after"] = self.loss_after
        if self.kl is not None:
            row["kl"] = self.kl
        if self.rejected is not None:
            row["rejected_reason"] = str(self.rejected)
        if self.success_rates is not None:
            row.update(success_before=self.success_before, success_after=self.success_after)
        row.update(self.extra)
        return row


@dataclasses.dataclass
class MetaBatch:
    """What :meth:`MetaAgent.collect` gathers for one meta-iteration.

    Attributes:
        adapted: per-task adapted parameters, differentiable in the outer parameters.
        steps: the data of every inner step.
        post: episodes of the adapted policies.
        post_advantages: advantages of ``post``.
        returns: mean return before each inner step and after the last.
        env_steps: env steps sampled.
        time_sampling: seconds spent sampling.
        time_adaptation: seconds spent adapting (outside sampling).
        started: ``time.perf_counter()`` at the start of the iteration.
        success_rates: success rate of every sampled batch, aligned with ``returns`` (see
            :meth:`Episodes.success_rate`); None when the env reports no success.
    """

    adapted: Params
    steps: list[InnerStep]
    post: Episodes
    post_advantages: Tensor
    returns: list[float]
    env_steps: int
    time_sampling: float
    time_adaptation: float
    started: float
    success_rates: list[float] | None = None

    def finish(
        self,
        loss_before: float,
        loss_after: float | None = None,
        kl: float | None = None,
        rejected: Rejection | None = None,
        **extra: float,
    ) -> StepMetrics:
        """The iteration's :class:`StepMetrics`, timed up to now."""
        return StepMetrics(
            returns=self.returns,
            loss_before=loss_before,
            loss_after=loss_after,
            kl=kl,
            rejected=rejected,
            env_steps=self.env_steps,
            time_sampling=self.time_sampling,
            time_adaptation=self.time_adaptation,
            time_iteration=time.perf_counter() - self.started,
            extra=dict(extra),
            success_rates=self.success_rates,
        )
