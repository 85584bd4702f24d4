"""The differentially private synthesis: one release of noisy sufficient statistics, then Algorithm 1
as post-processing of it.

:func:`private_synthesize` releases the client's statistics once
(:func:`fedsynth.privacy.statistics.release_statistics`, the only step that reads its rows) and
runs :func:`fedsynth.core.synthesis.synthesize` on a table without rows, from the release
(:class:`StatisticsSummary`): the ``proportional`` labels' (s, y) counts, the ``gaussian`` start's
feature moments and the real-data terms of P, ℓ̃(θ) + ρ_o/2·(c̄ᵀθ)² with the loss surrogate ℓ̃ of
the release. Everything the client then sends (x̂, ŝ, ŷ; N_s is fixed by the configuration) is a
function of the release, so it is (ε, δ)-DP with the release's guarantee.
"""

from __future__ import annotations

import math

import torch

from fedsynth.core.fairness import BoundMeasure
from fedsynth.core.synthesis import SynthesisConfig, SynthesisResult, summary_synthetic_size, synthesize
from fedsynth.data.types import TabularData
from fedsynth.privacy.accounting import PrivacyStatement, Release, noise_multiplier
from fedsynth.privacy.budget import ClippedBudget
from fedsynth.privacy.statistics import STATISTICS_MEASURES, NoisyStatistics, model_terms, release_statistics


class QuadraticLoss:
    """The loss surrogate ℓ̃(θ) = log 2 − gᵀθ + ½ θᵀHθ of a release, with the interface of
    :class:`~fedsynth.core.model.LogisticObjective` that the outer objective's real-data terms use
    (``at(θ).value()``, ``at(θ).gradient(plus=)``)."""

    def __init__(self, hessian: torch.Tensor, linear: torch.Tensor) -> None:
        self.hessian = hessian
        self.linear = linear

    def at(self, theta: torch.Tensor) -> _QuadraticPoint:
        """The surrogate at θ."""
        return _QuadraticPoint(self, theta)


class _QuadraticPoint:
    """:class:`QuadraticLoss` at one θ: Hθ computed once."""

    def __init__(self, loss: QuadraticLoss, theta: torch.Tensor) -> None:
        self.loss = loss
        self.theta = theta
        self.curvature = loss.hessian @ theta

    def value(self) -> torch.Tensor:
        """ℓ̃(θ) = log 2 − gᵀθ + ½ θᵀHθ."""
        return math.log(2.0) - self.loss.linear.dot(self.theta) + 0.5 * self.theta.dot(self.curvature)

    def gradient(self, scale: float = 1.0, *, plus: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
        """``scale`` · (Hθ − g), plus β v with ``plus = (v, β)``."""
        grad = (self.curvature - self.loss.linear).mul_(scale)
        return grad if plus is None else grad.add_(plus[0], alpha=plus[1])


class LinearMeasure(BoundMeasure):
    """A linear fairness measure F(θ) = cᵀθ known from a release, not from rows (so it has no
    per-row terms)."""

    def __init__(self, direction: torch.Tensor) -> None:
        self.direction = direction

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cᵀθ, c)."""
        return self.direction.dot(theta), self.direction

    def row_gradients(self, theta: torch.Tensor) -> torch.Tensor:
        """Refused: a release holds sums, not rows."""
        raise ValueError("a measure from a release has no per-row terms")


class StatisticsSummary:
    """A :class:`~fedsynth.core.synthesis.RealDataSummary` of a client from its noisy statistics."""

    def __init__(self, stats: NoisyStatistics) -> None:
        self.stats = stats

    def group_counts(self) -> torch.Tensor:
        """The four noisy (s, y) counts (:meth:`NoisyStatistics.group_counts`), at least 1 in all."""
        counts = self.stats.group_counts()
        return counts if float(counts.sum()) > 0 else torch.ones(4, dtype=counts.dtype)

    def feature_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The noisy means and standard deviations of the (clipped) features."""
        return self.stats.feature_moments()

    def real_terms(self, config: SynthesisConfig) -> tuple[QuadraticLoss, LinearMeasure]:
        """The real-data terms of P from the release, in the layout of ``config``'s model
        (:func:`~fedsynth.privacy.statistics.model_terms`): the loss surrogate ℓ̃ and F(θ) = c̄ᵀθ."""
        hessian, linear, direction = model_terms(self.stats, config.fairness, config.fit_intercept)
        return QuadraticLoss(hessian, linear), LinearMeasure(direction)


def check_private_config(config: SynthesisConfig) -> None:
    """``ValueError`` naming the key for a synthesis setting the private path cannot honour: N_s = N,
    labels or a start that need the rows (:func:`~fedsynth.core.synthesis.summary_synthetic_size`),
    a fairness measure that is not linear in θ (the release determines only ``covariance`` and
    ``eo_covariance``)."""
    summary_synthetic_size(config)
    if config.fairness not in STATISTICS_MEASURES:
        raise ValueError(
            f"fairness must be one of {STATISTICS_MEASURES} with privacy on (the released statistics "
            f"determine linear measures only), got {config.fairness!r}"
        )


def private_statement(budget: ClippedBudget) -> PrivacyStatement:
    """What a client of the private synthesis spends: one Gaussian release of its statistics."""
    z = noise_multiplier(budget.epsilon, budget.delta, accountant=budget.accountant)
    return PrivacyStatement(budget, (Release("sufficient statistics", z),))


def private_synthesize(
    train: TabularData,
    config: SynthesisConfig,
    budget: ClippedBudget,
    *,
    seed: int,
    client_id: int,
    progress=None,
) -> tuple[SynthesisResult, PrivacyStatement]:
    """The private Algorithm 1: release ``train``'s statistics once with ``budget``'s noise (drawn
    from :meth:`~fedsynth.privacy.budget.PrivacyBudget.noise_generator` of ``client_id``), then
    synthesize from the release alone (``seed`` seeds the post-processing: labels' order, x̂_0).
    Returns the result and the client's privacy statement."""
    check_private_config(config)
    statement = private_statement(budget)
    stats = release_statistics(
        train,
        clip=budget.clip,
        noise_multiplier=statement.releases[0].noise_multiplier,
        generator=budget.noise_generator(client_id),
        equal_opportunity=config.fairness == "eo_covariance",
    )
    return synthesize_from_release(stats, config, train.feature_names, seed=seed, progress=progress), statement


def synthesize_from_release(
    stats: NoisyStatistics, config: SynthesisConfig, feature_names: tuple[str, ...], *, seed: int, progress=None
) -> SynthesisResult:
    """Algorithm 1 from a release alone (post-processing): :func:`~fedsynth.core.synthesis.synthesize`
    on a table with the client's columns and no rows, with :class:`StatisticsSummary` of ``stats``."""
    no_rows = TabularData(
        torch.zeros(0, len(feature_names), dtype=torch.float64),
        torch.zeros(0, dtype=torch.float64),
        torch.zeros(0, dtype=torch.float64),
        tuple(feature_names),
    )
    return synthesize(no_rows, config, seed=seed, progress=progress, summary=StatisticsSummary(stats))
