"""The server's role in Algorithm 1 (lines 18–21): fit ℓ_r on the union of synthetic data, eq. (15),
optionally with a fairness penalty on that union (beyond the paper)."""

from __future__ import annotations

from typing import Sequence

import torch

from fedsynth.core.fairness import fairness_measure
from fedsynth.core.model import InnerSolution, InnerSolverConfig, design_matrix, fit_logistic, regularized_loss
from fedsynth.data.types import TabularData


def fit_server_model(
    datasets: Sequence[TabularData],
    *,
    lambda_theta: float,
    fit_intercept: bool,
    solver: InnerSolverConfig = InnerSolverConfig(),
    rho: float = 0.0,
    fairness: str = "covariance",
    fairness_temperature: float = 1.0,
) -> InnerSolution:
    """Train the global model on the concatenated client datasets.

    ``rho = 0``: θ = argmin_θ ℓ_r on the union, the paper's eq. (15) (the same regularized logistic
    model as the clients' inner problem, no fairness term). ``rho > 0``: argmin_θ ℓ_r + ρ/2·F(θ)²,
    F the measure ``fairness`` on the union's rows with the (ŝ, ŷ) they carry (:func:`fit_fair_logistic`).
    """
    if not datasets:
        raise ValueError("the server needs at least one client dataset")
    union = TabularData.concat(datasets)
    a = design_matrix(union.x, union.s, fit_intercept)
    n = union.num_features + 1
    plain = fit_logistic(a, union.y, lambda_theta, n, solver=solver)
    if rho == 0:
        return plain
    return fit_fair_logistic(
        a, union.s, union.y, lambda_theta, n,
        rho=rho, fairness=fairness, fairness_temperature=fairness_temperature, solver=solver, theta0=plain.theta,
    )


def fit_fair_logistic(
    a: torch.Tensor,
    s: torch.Tensor,
    y: torch.Tensor,
    lambda_theta: float,
    n: int,
    *,
    rho: float,
    fairness: str = "covariance",
    fairness_temperature: float = 1.0,
    solver: InnerSolverConfig = InnerSolverConfig(),
    theta0: torch.Tensor,
) -> InnerSolution:
    """argmin_θ ℓ_r(θ) + ρ/2 · F(θ; a, s, y)² (eq. 11's ℓ_r plus the real-data penalty of P, eq. 11,
    with F any :mod:`fedsynth.core.fairness` measure) by L-BFGS with a strong Wolfe line search from
    ``theta0`` (the plain ℓ_r solution). Strongly convex for the linear measures; for the gap measures
    (non-convex in θ) it returns the local minimum reached from ``theta0``."""
    if not (rho >= 0 and rho < float("inf")):
        raise ValueError(f"rho must be a finite number >= 0, got {rho}")
    measure = fairness_measure(fairness, a, s, y, fairness_temperature)
    theta = theta0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=solver.max_iter,
        tolerance_grad=solver.tolerance_grad,
        tolerance_change=solver.tolerance_change,
        history_size=solver.history_size,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = regularized_loss(a, y, theta, lambda_theta, n) + 0.5 * rho * measure(theta)[0] ** 2
        value.backward()
        return value

    optimizer.step(closure)
    iterations = int(optimizer.state[theta].get("n_iter", 0))
    closure()
    grad_norm = float(theta.grad.abs().max())
    return InnerSolution(theta.detach().clone(), iterations, grad_norm, grad_norm <= solver.tolerance_grad)
