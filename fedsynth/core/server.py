"""The server's role in Algorithm 1 (lines 18–21): fit ℓ_r on the union of synthetic data, eq. (15)."""

from __future__ import annotations

from typing import Sequence

from fedsynth.core.model import InnerSolution, InnerSolverConfig, design_matrix, fit_logistic
from fedsynth.data.types import TabularData


def fit_server_model(
    datasets: Sequence[TabularData],
    *,
    lambda_theta: float,
    fit_intercept: bool,
    solver: InnerSolverConfig = InnerSolverConfig(),
) -> InnerSolution:
    """Train the global model θ({d̂_{i,c}}) = argmin_θ ℓ_r on the concatenated client datasets,
    eq. (15): the same regularized logistic model as the clients' inner problem, no fairness term."""
    if not datasets:
        raise ValueError("the server needs at least one client dataset")
    union = TabularData.concat(datasets)
    return fit_logistic(
        design_matrix(union.x, union.s, fit_intercept), union.y, lambda_theta, union.num_features + 1, solver=solver
    )
