"""Fairness targets: the constrained form of the paper's eq. (8), |F| ≤ ε, instead of a penalty weight ρ.

The paper states its problem with tolerances (eq. 8) and solves the penalty form (11) for convenience;
a practitioner asks for "|SPD| ≤ 0.05", not for "ρ = 10". :func:`fit_to_target` solves

    min_θ ℓ_r(θ)  subject to  |G(θ)| ≤ target

on a set of rows by a search over the penalty path θ(ρ) = argmin ℓ_r + ρ/2·F(θ)² (F the fairness
measure, :mod:`fedsynth.core.fairness`): the smallest ρ whose solution meets the target, found by
growing ρ tenfold until the target is met and then bisecting ρ on a log scale between the last ρ that
missed and the first that met it. G, the quantity the target bounds (:data:`TARGET_METRICS`), is

* ``spd``: the statistical parity difference (4) of the hard predictions on the rows (for k > 2
  groups the largest gap of the groups' positive rates, fairlearn's ``demographic_parity_difference``);
* ``eod``: the equal-opportunity difference (true-positive rates) on the rows (for k > 2 groups the
  largest gap, fairlearn's ``equal_opportunity_difference``);
* ``measure``: F itself, in its own units (e.g. the covariance (2)).

The constraint is met with the least penalty, so with the least accuracy given up: as ρ grows, |F|
(and with it the SPD, for a measure that aims at it) falls along the path. The clients use it on their
training rows for ``method.fairness_target`` (ρ_o of Algorithm 1), the server on the union of synthetic
rows for ``method.server_fairness_target`` (its ``server_rho``), and the centralized baseline on the
pooled rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedsynth.core.fairness import BoundMeasure, FairnessMeasure
from fedsynth.core.model import InnerSolution, LogisticModel, LogisticObjective
from fedsynth.data.types import TabularData

TARGET_METRICS = ("spd", "eod", "measure")
"""What a fairness target bounds: the hard SPD, the hard EOD, or the measure F in its own units."""

RHO_START = 0.1
"""The first penalty weight tried after ρ = 0; each further try is ten times the last."""
RHO_MAX = 1e6
"""The largest penalty weight tried; a target not met there is reported as missed."""
BISECTION_STEPS = 8
"""Bisections of log ρ between the last ρ that missed and the first that met the target (ρ to ±15 %)."""


@dataclass(frozen=True)
class TargetFit:
    """The result of :func:`fit_to_target`: the solution, the penalty weight ρ that gave it, the
    achieved value of the bounded quantity (signed) and whether |achieved| ≤ target."""

    solution: InnerSolution
    rho: float
    achieved: float
    met: bool


def check_target(target: float | None, metric: str) -> None:
    """Raise ``ValueError`` naming the key when a target or its metric is invalid (``None``: no target)."""
    if metric not in TARGET_METRICS:
        raise ValueError(f"target_metric must be one of {list(TARGET_METRICS)}, got {metric!r}")
    if target is not None and not (math.isfinite(target) and target >= 0):
        raise ValueError(f"a fairness target must be a finite number >= 0 (or null for none), got {target}")


def fairness_value(
    metric: str,
    theta: torch.Tensor,
    a: torch.Tensor,
    s: torch.Tensor,
    y: torch.Tensor,
    measure: BoundMeasure,
    weight: torch.Tensor | None = None,
    num_groups: int = 2,
) -> float:
    """The quantity ``metric`` (:data:`TARGET_METRICS`) of the model θ on the rows (design ``a``,
    groups ``s`` of ``num_groups``, labels ``y``, optional row ``weight``): the SPD or EOD of the
    predictions 1[a_iᵀθ ≥ 0] (weighted rates; two groups: signed, s = 1 minus s = 0, 0 where a
    group is empty; k > 2 groups: the largest gap over the groups with rows, 0 with fewer than two),
    or F(θ) of the bound ``measure``."""
    if metric == "measure":
        return float(measure(theta)[0])
    positive = ((a @ theta) >= 0).double()
    rows = torch.ones_like(s, dtype=torch.bool) if metric == "spd" else y > 0
    w = torch.ones_like(s) if weight is None else weight
    rates = []
    for group in (1.0, 0.0) if num_groups == 2 else range(num_groups):
        member = rows & (s == group)
        total = float(w[member].sum())
        if total > 0:
            rates.append(float((w * positive)[member].sum()) / total)
        elif num_groups == 2:
            return 0.0
    if num_groups == 2:
        return rates[0] - rates[1]
    return max(rates) - min(rates) if len(rates) >= 2 else 0.0


def fit_to_target(
    data: TabularData,
    model: LogisticModel,
    measure: FairnessMeasure,
    target: float,
    *,
    metric: str = "spd",
    sample_weight: torch.Tensor | None = None,
) -> TargetFit:
    """argmin_θ ℓ_r(θ) subject to |G(θ)| ≤ ``target`` on ``data``'s rows (eq. 8's constraint in
    place of a penalty weight; see the module docstring): the solution of the penalty path
    ℓ_r + ρ/2·F² with the smallest ρ that meets the target (ρ = 0, the plain fit, when it already
    does). When no ρ up to :data:`RHO_MAX` meets it (a measure that cannot pin the SPD down, e.g.
    the covariance on some data), the largest ρ's solution with ``met = False``."""
    check_target(target, metric)
    a = model.design(data.x, data.s, data.num_groups)
    objective: LogisticObjective = model.objective(a, data.y, sample_weight)
    bound = measure.bind(a, data.s, data.y, weight=objective.weight)
    solver = model.inner_solver(data.num_features, dtype=a.dtype, num_groups=data.num_groups)
    weight = objective.weight

    def solve(rho: float, start: torch.Tensor | None) -> TargetFit:
        solution = solver.solve(objective, start, penalty=None if rho == 0 else (rho, bound))
        value = fairness_value(metric, solution.theta, a, data.s, data.y, bound, weight, data.num_groups)
        return TargetFit(solution, rho, value, abs(value) <= target)

    missed = solve(0.0, None)
    if missed.met:
        return missed
    met: TargetFit | None = None
    rho = RHO_START
    while rho <= RHO_MAX:
        trial = solve(rho, missed.solution.theta)
        if trial.met:
            met = trial
            break
        missed = trial
        rho *= 10.0
    if met is None:
        return missed
    for _ in range(BISECTION_STEPS if missed.rho > 0 else 0):
        middle = math.sqrt(missed.rho * met.rho)
        trial = solve(middle, missed.solution.theta)
        if trial.met:
            met = trial
        else:
            missed = trial
    return met
