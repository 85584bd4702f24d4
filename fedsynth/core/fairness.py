"""Fairness measures F(θ; rows) that the penalty terms ρ/2·F² square (eq. 11, with eq. (2) as the default).

A measure is one function ``measure(a, s, y, temperature)`` of a set of rows (design matrix a, sensitive
attribute s ∈ {0, 1}, labels y ∈ {−1, +1}) that returns the measure bound to those rows: a function
θ ↦ (F(θ), ∇_θ F(θ)). The value is built from torch operations on ``a`` and ``θ``, so autograd
differentiates it in both (the synthetic-data term depends on x̂ through â); the θ-gradient is the
closed form the real-data term of P uses. Every measure here is a weighted sum over rows of a function
of the decision value m_i = a_iᵀθ:

* ``covariance``    F = (1/N) Σ_i (s_i − s̄) m_i                     (eq. 2, statistical parity, linear)
* ``eo_covariance`` the same over the rows with y_i = +1              (equal opportunity, linear)
* ``dp_gap``        F = mean_{s=1} σ(m_i/τ) − mean_{s=0} σ(m_i/τ)     (smooth SPD; τ → 0 gives eq. 4)
* ``eo_gap``        the same over the rows with y_i = +1              (smooth EOD)

Adding a measure is one function here plus its name in :data:`FAIRNESS_MEASURES`.
"""

from __future__ import annotations

from typing import Callable

import torch

BoundMeasure = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""A measure bound to a set of rows: θ ↦ (F(θ), ∇_θ F(θ))."""


def covariance(a: torch.Tensor, s: torch.Tensor, y: torch.Tensor, temperature: float) -> BoundMeasure:
    """Decision-boundary covariance, eq. (2): F(θ) = (1/N) Σ_i (s_i − s̄) a_iᵀθ = cᵀθ with
    c = (1/N) Σ_i (s_i − s̄) a_i, so ∇_θ F = c (constant). ``y`` and ``temperature`` are unused."""
    direction = ((s - s.mean()) @ a) / len(s)
    return lambda theta: (direction.dot(theta), direction)


def eo_covariance(a: torch.Tensor, s: torch.Tensor, y: torch.Tensor, temperature: float) -> BoundMeasure:
    """Eq. (2) over the rows with y_i = +1 only (an equal-opportunity relaxation):
    F(θ) = (1/N₊) Σ_{y_i=1} (s_i − s̄₊) a_iᵀθ, ∇_θ F = (1/N₊) Σ_{y_i=1} (s_i − s̄₊) a_i;
    zero when no row has y = +1."""
    positive = y > 0
    if not bool(positive.any()):
        return _zero_measure(a)
    return covariance(a[positive], s[positive], y[positive], temperature)


def dp_gap(a: torch.Tensor, s: torch.Tensor, y: torch.Tensor, temperature: float) -> BoundMeasure:
    """Smooth statistical-parity gap: F(θ) = mean_{s=1} σ(a_iᵀθ/τ) − mean_{s=0} σ(a_iᵀθ/τ) = Σ_i w_i p_i
    with p_i = σ(a_iᵀθ/τ), w_i = s_i/N₁ − (1 − s_i)/N₀; ∇_θ F = (1/τ) Σ_i w_i p_i (1 − p_i) a_i.
    As τ → 0, p_i tends to the hard prediction 1[a_iᵀθ > 0] and F to the SPD of eq. (4). Zero when a
    group is empty."""
    n_privileged = float(s.sum())
    if n_privileged == 0 or n_privileged == len(s):
        return _zero_measure(a)
    weights = s / n_privileged - (1.0 - s) / (len(s) - n_privileged)

    def bound(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.sigmoid((a @ theta) / temperature)
        return weights.dot(p), a.T @ (weights * p * (1.0 - p)) / temperature

    return bound


def eo_gap(a: torch.Tensor, s: torch.Tensor, y: torch.Tensor, temperature: float) -> BoundMeasure:
    """:func:`dp_gap` over the rows with y_i = +1 only: a smooth equal-opportunity gap (true-positive
    rate of s = 1 minus that of s = 0 as τ → 0); zero when no row has y = +1."""
    positive = y > 0
    if not bool(positive.any()):
        return _zero_measure(a)
    return dp_gap(a[positive], s[positive], y[positive], temperature)


def _zero_measure(a: torch.Tensor) -> BoundMeasure:
    """F ≡ 0: the measure of rows that cannot show the disparity (one group, or no positive row)."""
    zero = torch.zeros(a.shape[1], dtype=a.dtype)
    return lambda theta: (zero.dot(theta), zero)


FAIRNESS_MEASURES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], BoundMeasure]] = {
    "covariance": covariance,
    "eo_covariance": eo_covariance,
    "dp_gap": dp_gap,
    "eo_gap": eo_gap,
}
"""The measures ``method.fairness`` can name."""


def fairness_measure(
    name: str, a: torch.Tensor, s: torch.Tensor, y: torch.Tensor, temperature: float = 1.0
) -> BoundMeasure:
    """The measure called ``name`` (:data:`FAIRNESS_MEASURES`) bound to the rows (a, s, y)."""
    check_fairness(name, temperature)
    return FAIRNESS_MEASURES[name](a, s, y, temperature)


def check_fairness(name: str, temperature: float) -> None:
    """Raise ``ValueError`` naming the key when the measure or its temperature τ is invalid."""
    if name not in FAIRNESS_MEASURES:
        raise ValueError(f"fairness must be one of {sorted(FAIRNESS_MEASURES)}, got {name!r}")
    if not (temperature > 0 and temperature < float("inf")):
        raise ValueError(f"fairness_temperature must be a finite number > 0, got {temperature}")
