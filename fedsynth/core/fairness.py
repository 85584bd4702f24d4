"""Fairness measures F(θ; rows) that the penalty terms ρ/2·F² square (eq. 11, with eq. (2) as the default).

A measure is a small object (as a constraint is in fairlearn's reductions): its constructor takes
its parameters as plain keyword arguments (the smooth gaps' temperature τ), and :meth:`~FairnessMeasure.bind`
binds it to a set of rows (design matrix a, group s, labels y ∈ {−1, +1}), giving a
:class:`BoundMeasure`: θ ↦ (F(θ), ∇_θ F(θ)). The value is built from torch operations on ``a``
and ``θ``, so autograd differentiates it in both (the synthetic-data term depends on x̂ through â);
the θ-gradient is the closed form that the real-data term of P and the penalized fits use.

* :class:`Covariance`                  F = (1/N) Σ_i (s_i − s̄) m_i                  (eq. 2, statistical parity, linear)
* :class:`EqualOpportunityCovariance`  the same over the rows with y_i = +1           (equal opportunity, linear)
* :class:`DemographicParityGap`        F = mean_{s=1} σ(m_i/τ) − mean_{s=0} σ(m_i/τ)  (smooth SPD; τ → 0 gives eq. 4)
* :class:`EqualOpportunityGap`         the same over the rows with y_i = +1           (smooth EOD)

and for a sensitive attribute with k ≥ 2 groups (s_i ∈ {0, .., k−1} the group index):

* :class:`GroupCovariance`             F = (½ Σ_g c_g²)^½, c_g = (1/N) Σ_i (1[s_i = g] − N_g/N) m_i
                                        (eq. 2 per group indicator; |eq. 2| for k = 2)
* :class:`EqualOpportunityGroupCovariance`  the same over the rows with y_i = +1
* :class:`LargestDemographicParityGap` F = max_g r_g − min_g r_g, r_g = mean_{s=g} σ(m_i/τ)
                                        (the largest pairwise gap of the smooth rates; |dp_gap| for k = 2)
* :class:`LargestEqualOpportunityGap`  the same over the rows with y_i = +1

with m_i = a_iᵀθ the decision value. For two groups each k-group measure is the absolute value of
its binary counterpart, so the penalty ρ/2·F² is the same function of θ. The config chooses one by name (``method.fairness``, with
``method.fairness_temperature``); :func:`fairness_from_config` is the one place those keys become an
object.

``s`` is a group index per row (0 and 1 for the binary sensitive attribute; 0..k−1 for k groups),
and a measure always gives ONE scalar F with its gradient, so the penalty ρ/2·F² and every caller
stay as they are. The binary measures read s as the 0/1 attribute (eq. 2 needs s̄); the k-group
measures read it as a group index and reduce their groups to the one scalar: the norm of the
per-group-indicator covariances (F² = ½ Σ_g c_g², so ρ·F·∇F = ½ρ Σ_g c_g ∇c_g) or the largest gap
of the smooth rates. Groups without rows among the bound ones are left out (their c_g is 0, they
have no rate).

Adding a measure is one class here plus its name in :data:`FAIRNESS_MEASURES`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch


class BoundMeasure(ABC):
    """A fairness measure bound to a set of N rows: θ ↦ (F(θ), ∇_θ F(θ)) (:meth:`__call__`), and
    the per-row terms of that gradient (:meth:`row_gradients`)."""

    @abstractmethod
    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """F(θ) (a 0-dim tensor, differentiable in θ and in the bound design matrix) and ∇_θ F(θ)
        (a d-vector, closed form)."""

    @abstractmethod
    def row_gradients(self, theta: torch.Tensor) -> torch.Tensor:
        """An N × d matrix whose row i is row i's term of ∇_θ F(θ) (their sum is ∇_θ F; rows the
        measure does not look at have zero rows). For the covariances the terms hold the group
        shares s̄ of all the bound rows, so a row's term is not a function of that row alone."""


class _RowsMeasure(BoundMeasure):
    """A measure over the rows ``rows`` (a mask, all when None) of a bound design matrix of
    ``num_rows`` rows: its per-row gradient terms are scattered back to all of them."""

    def __init__(self, a: torch.Tensor, rows: torch.Tensor | None) -> None:
        self.a = a if rows is None else a[rows]
        self.rows = rows
        self.num_rows = a.shape[0]

    def _per_row(self, coefficients: torch.Tensor) -> torch.Tensor:
        """The N × d terms coefficient_i · a_i, zero outside ``rows``."""
        terms = self.a.detach() * coefficients.unsqueeze(1)
        if self.rows is None:
            return terms
        full = torch.zeros(self.num_rows, terms.shape[1], dtype=terms.dtype)
        full[self.rows] = terms
        return full


class _Linear(_RowsMeasure):
    """F(θ) = cᵀθ with c = ((s − s̄) @ A) / N over the measured rows (eq. 2's arithmetic); with row
    weights w (summing to 1 over those rows) c = Σ_i w_i (s_i − s̄_w) a_i, s̄_w = Σ_i w_i s_i."""

    def __init__(self, a: torch.Tensor, s: torch.Tensor, rows: torch.Tensor | None, weight: torch.Tensor | None) -> None:
        super().__init__(a, rows)
        if weight is None:
            self.coefficients = (s - s.mean()) / len(s)
            self.direction = ((s - s.mean()) @ self.a) / len(s)
        else:
            self.coefficients = weight * (s - weight.dot(s))
            self.direction = self.coefficients @ self.a

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.direction.dot(theta), self.direction

    def row_gradients(self, theta: torch.Tensor) -> torch.Tensor:
        return self._per_row(self.coefficients)


class _SmoothGap(_RowsMeasure):
    """F(θ) = Σ_i w_i σ(a_iᵀθ/τ) over the measured rows, ∇_θ F = (1/τ) Σ_i w_i p_i (1 − p_i) a_i."""

    def __init__(self, a: torch.Tensor, weights: torch.Tensor, rows: torch.Tensor | None, temperature: float) -> None:
        super().__init__(a, rows)
        self.weights = weights
        self.temperature = temperature

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.sigmoid((self.a @ theta) / self.temperature)
        return self.weights.dot(p), self.a.T @ (self.weights * p * (1.0 - p)) / self.temperature

    def row_gradients(self, theta: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid((self.a.detach() @ theta.detach()) / self.temperature)
        return self._per_row(self.weights * p * (1.0 - p) / self.temperature)


class _Zero(BoundMeasure):
    """F ≡ 0: the measure of rows that cannot show the disparity (one group, or no positive row)."""

    def __init__(self, a: torch.Tensor) -> None:
        self.zero = torch.zeros(a.shape[1], dtype=a.dtype)
        self.num_rows = a.shape[0]

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.zero.dot(theta), self.zero

    def row_gradients(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.zeros(self.num_rows, self.zero.shape[0], dtype=self.zero.dtype)


@dataclass(frozen=True)
class FairnessMeasure(ABC):
    """A fairness measure F: its parameters, and :meth:`bind` to a set of rows. ``name`` is its
    ``method.fairness`` value."""

    name: ClassVar[str]
    positives_only: ClassVar[bool] = False
    """Measure over the rows with y = +1 only (the equal-opportunity measures)."""
    many_groups: ClassVar[str | None] = None
    """The name of the measure to use on a sensitive attribute of k > 2 groups: the measure's own
    name when it takes k groups, the name of its k-group form for a measure of two groups (it
    reads s as the 0/1 attribute), None for a measure of two groups without one (the default: a
    new measure is refused on k groups until it says it takes them)."""

    def bind(self, a: torch.Tensor, s: torch.Tensor, y: torch.Tensor, *, weight: torch.Tensor | None = None) -> BoundMeasure:
        """The measure on the rows (design matrix ``a``, group ``s``, labels ``y`` ∈ {−1, +1}):
        θ ↦ (F(θ), ∇_θ F(θ)); F ≡ 0 on rows that cannot show the disparity (one group only, or
        for the equal-opportunity measures no row with y = +1). With ``weight`` (one number ≥ 0 per
        row) every mean over rows is the weighted mean (the server's union of clients of different
        sizes); without, the unweighted formulas."""
        rows = None
        if self.positives_only:
            rows = y > 0
            if not bool(rows.any()):
                return _Zero(a)
            s = s[rows]
            weight = None if weight is None else weight[rows]
        if weight is not None:
            total = float(weight.sum())
            if total <= 0:
                return _Zero(a)
            weight = weight / total
        return self._bind(a, s, rows, weight)

    @abstractmethod
    def _bind(self, a: torch.Tensor, s: torch.Tensor, rows: torch.Tensor | None, weight: torch.Tensor | None) -> BoundMeasure:
        """The measure on the rows ``rows`` of ``a`` (all when None), whose groups are ``s`` and
        row weights ``weight`` (summing to 1 over those rows; None: unweighted)."""


@dataclass(frozen=True)
class Covariance(FairnessMeasure):
    """Decision-boundary covariance, eq. (2): F(θ) = (1/N) Σ_i (s_i − s̄) a_iᵀθ = cᵀθ with
    c = (1/N) Σ_i (s_i − s̄) a_i, so ∇_θ F = c (constant)."""

    name: ClassVar[str] = "covariance"
    many_groups: ClassVar[str | None] = "group_covariance"

    def _bind(self, a: torch.Tensor, s: torch.Tensor, rows: torch.Tensor | None, weight: torch.Tensor | None) -> BoundMeasure:
        return _Linear(a, s, rows, weight)


@dataclass(frozen=True)
class EqualOpportunityCovariance(Covariance):
    """Eq. (2) over the rows with y_i = +1 only (an equal-opportunity relaxation):
    F(θ) = (1/N₊) Σ_{y_i=1} (s_i − s̄₊) a_iᵀθ, ∇_θ F = (1/N₊) Σ_{y_i=1} (s_i − s̄₊) a_i."""

    name: ClassVar[str] = "eo_covariance"
    positives_only: ClassVar[bool] = True
    many_groups: ClassVar[str | None] = "eo_group_covariance"


@dataclass(frozen=True)
class DemographicParityGap(FairnessMeasure):
    """Smooth statistical-parity gap: F(θ) = mean_{s=1} σ(a_iᵀθ/τ) − mean_{s=0} σ(a_iᵀθ/τ) = Σ_i w_i p_i
    with p_i = σ(a_iᵀθ/τ), w_i = s_i/N₁ − (1 − s_i)/N₀; ∇_θ F = (1/τ) Σ_i w_i p_i (1 − p_i) a_i.
    As τ → 0, p_i tends to the hard prediction 1[a_iᵀθ > 0] and F to the SPD of eq. (4).

    Args:
        temperature: τ > 0 (smaller is sharper, closer to the SPD).
    """

    name: ClassVar[str] = "dp_gap"
    many_groups: ClassVar[str | None] = "dp_largest_gap"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")

    def _bind(self, a: torch.Tensor, s: torch.Tensor, rows: torch.Tensor | None, weight: torch.Tensor | None) -> BoundMeasure:
        if weight is None:
            n_privileged = float(s.sum())
            if n_privileged == 0 or n_privileged == len(s):
                return _Zero(a)
            weights = s / n_privileged - (1.0 - s) / (len(s) - n_privileged)
        else:
            privileged, other = float(weight.dot(s)), float(weight.dot(1.0 - s))
            if privileged <= 0 or other <= 0:
                return _Zero(a)
            weights = weight * s / privileged - weight * (1.0 - s) / other
        return _SmoothGap(a, weights, rows, self.temperature)


@dataclass(frozen=True)
class EqualOpportunityGap(DemographicParityGap):
    """:class:`DemographicParityGap` over the rows with y_i = +1 only: a smooth equal-opportunity
    gap (true-positive rate of s = 1 minus that of s = 0 as τ → 0)."""

    name: ClassVar[str] = "eo_gap"
    positives_only: ClassVar[bool] = True
    many_groups: ClassVar[str | None] = "eo_largest_gap"


def _weighted_groups(s: torch.Tensor, weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The row weights w (1/N each when ``weight`` is None) and the N × k' matrix w_i·1[s_i = g] over
    the k' groups of ``s`` with a positive weight (ascending); None when fewer than two groups."""
    w = torch.full_like(s, 1.0 / len(s)) if weight is None else weight
    indicators = (s.unsqueeze(1) == torch.unique(s).unsqueeze(0)).to(s.dtype)
    members = w.unsqueeze(1) * indicators
    members = members[:, members.sum(dim=0) > 0]
    return (w, members) if members.shape[1] >= 2 else None


class _GroupCovarianceNorm(_RowsMeasure):
    """F(θ) = (½ Σ_g c_g²)^½ with c = Dθ, D = Cᵀ A, C_ig = w_i (1[s_i = g] − n̄_g) (row weights w,
    1/N unweighted; group shares n̄_g = Σ_i w_i 1[s_i = g]; row g of D: group g's indicator covariance
    direction); ∇_θ F = Dᵀc / (2F) (0 at F = 0, the norm's subgradient)."""

    def __init__(self, a: torch.Tensor, groups: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor | None) -> None:
        super().__init__(a, rows)
        w, members = groups
        self.coefficients = members - w.unsqueeze(1) * members.sum(dim=0)
        self.directions = self.coefficients.T @ self.a

    def _value(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        covariances = self.directions @ theta
        return torch.linalg.vector_norm(covariances) / math.sqrt(2.0), covariances

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, covariances = self._value(theta)
        scale = 0.0 if float(value.detach()) == 0.0 else 1.0 / (2.0 * float(value.detach()))
        return value, self.directions.detach().T @ covariances.detach() * scale

    def row_gradients(self, theta: torch.Tensor) -> torch.Tensor:
        value, covariances = self._value(theta.detach())
        scale = 0.0 if float(value.detach()) == 0.0 else 1.0 / (2.0 * float(value.detach()))
        return self._per_row(self.coefficients @ covariances.detach() * scale)


class _LargestSmoothGap(_RowsMeasure):
    """F(θ) = max_g r_g − min_g r_g with r_g = mean_{s=g} σ(a_iᵀθ/τ) (the w-weighted mean with row
    weights): the smooth gap of :class:`_SmoothGap` with the weights 1[s_i = g⁺]/N_{g⁺} −
    1[s_i = g⁻]/N_{g⁻} of the groups g⁺, g⁻ with the largest and smallest rate at θ
    (differentiable wherever they are unique)."""

    def __init__(
        self, a: torch.Tensor, groups: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor | None, temperature: float
    ) -> None:
        super().__init__(a, rows)
        _, members = groups
        self.means = (members / members.sum(dim=0)).T  # k' × N: row g averages group g
        self.temperature = temperature

    def _weights(self, p: torch.Tensor) -> torch.Tensor:
        rates = self.means @ p.detach()
        return self.means[int(torch.argmax(rates))] - self.means[int(torch.argmin(rates))]

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.sigmoid((self.a @ theta) / self.temperature)
        weights = self._weights(p)
        return weights.dot(p), self.a.T @ (weights * p * (1.0 - p)) / self.temperature

    def row_gradients(self, theta: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid((self.a.detach() @ theta.detach()) / self.temperature)
        return self._per_row(self._weights(p) * p * (1.0 - p) / self.temperature)


@dataclass(frozen=True)
class GroupCovariance(Covariance):
    """Eq. (2) per group indicator, for k ≥ 2 groups: c_g = (1/N) Σ_i (1[s_i = g] − N_g/N) a_iᵀθ
    and F(θ) = (½ Σ_g c_g²)^½ ≥ 0, ∇_θ F = ½ Σ_g c_g ∇c_g / F. The c_g sum to 0; for two groups
    c_1 = −c_0 is eq. (2), so F = |eq. (2)| and the penalty ρ/2·F² is the binary one."""

    name: ClassVar[str] = "group_covariance"
    many_groups: ClassVar[str | None] = "group_covariance"

    def _bind(self, a: torch.Tensor, s: torch.Tensor, rows: torch.Tensor | None, weight: torch.Tensor | None) -> BoundMeasure:
        groups = _weighted_groups(s, weight)
        return _Zero(a) if groups is None else _GroupCovarianceNorm(a, groups, rows)


@dataclass(frozen=True)
class EqualOpportunityGroupCovariance(GroupCovariance):
    """:class:`GroupCovariance` over the rows with y_i = +1 only."""

    name: ClassVar[str] = "eo_group_covariance"
    many_groups: ClassVar[str | None] = "eo_group_covariance"
    positives_only: ClassVar[bool] = True


@dataclass(frozen=True)
class LargestDemographicParityGap(DemographicParityGap):
    """The largest pairwise gap of the smooth positive rates over k ≥ 2 groups:
    F(θ) = max_g r_g − min_g r_g, r_g = mean_{s_i=g} σ(a_iᵀθ/τ); ∇_θ F = ∇r_{g⁺} − ∇r_{g⁻} for the
    groups g⁺, g⁻ of the largest and smallest rate. As τ → 0 it tends to the largest gap of the
    positive rates (the ``spd`` metric for k > 2, fairlearn's ``demographic_parity_difference``);
    for two groups F = |:class:`DemographicParityGap`|."""

    name: ClassVar[str] = "dp_largest_gap"
    many_groups: ClassVar[str | None] = "dp_largest_gap"

    def _bind(self, a: torch.Tensor, s: torch.Tensor, rows: torch.Tensor | None, weight: torch.Tensor | None) -> BoundMeasure:
        groups = _weighted_groups(s, weight)
        return _Zero(a) if groups is None else _LargestSmoothGap(a, groups, rows, self.temperature)


@dataclass(frozen=True)
class LargestEqualOpportunityGap(LargestDemographicParityGap):
    """:class:`LargestDemographicParityGap` over the rows with y_i = +1 only (the largest gap of the
    smooth true-positive rates)."""

    name: ClassVar[str] = "eo_largest_gap"
    many_groups: ClassVar[str | None] = "eo_largest_gap"
    positives_only: ClassVar[bool] = True


FAIRNESS_MEASURES: dict[str, type[FairnessMeasure]] = {
    measure.name: measure
    for measure in (
        Covariance,
        EqualOpportunityCovariance,
        DemographicParityGap,
        EqualOpportunityGap,
        GroupCovariance,
        EqualOpportunityGroupCovariance,
        LargestDemographicParityGap,
        LargestEqualOpportunityGap,
    )
}
"""The measures ``method.fairness`` can name."""


def fairness_from_config(fairness: str = "covariance", fairness_temperature: float = 1.0) -> FairnessMeasure:
    """The measure that the config keys ``fairness`` (a name in :data:`FAIRNESS_MEASURES`) and
    ``fairness_temperature`` (τ of the smooth gaps; checked for every measure) describe. Raises
    ``ValueError`` naming the key."""
    if fairness not in FAIRNESS_MEASURES:
        raise ValueError(f"fairness must be one of {sorted(FAIRNESS_MEASURES)}, got {fairness!r}")
    if not (math.isfinite(fairness_temperature) and fairness_temperature > 0):
        raise ValueError(f"fairness_temperature must be a finite number > 0, got {fairness_temperature}")
    measure = FAIRNESS_MEASURES[fairness]
    if issubclass(measure, DemographicParityGap):
        return measure(temperature=fairness_temperature)
    return measure()
