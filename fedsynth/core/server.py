"""The server's role in Algorithm 1 (lines 18–21): fit ℓ_r on the union of synthetic data, eq. (15),
optionally with a fairness penalty on that union (beyond the paper)."""

from __future__ import annotations

from typing import Sequence

from fedsynth.core.fairness import Covariance, FairnessMeasure
from fedsynth.core.model import InnerSolution, LogisticModel
from fedsynth.data.types import TabularData


def fit_server_model(
    datasets: Sequence[TabularData],
    model: LogisticModel,
    *,
    rho: float = 0.0,
    fairness: FairnessMeasure = Covariance(),
) -> InnerSolution:
    """Train the global model on the concatenated client datasets.

    ``rho = 0``: θ = argmin_θ ℓ_r on the union, the paper's eq. (15) (the same regularized logistic
    model as the clients' inner problem, no fairness term). ``rho > 0``: argmin_θ ℓ_r + ρ/2·F(θ)²,
    F the measure ``fairness`` bound to the union's rows with the (ŝ, ŷ) they carry (:meth:`LogisticModel.fit`).
    """
    if not datasets:
        raise ValueError("the server needs at least one client dataset")
    union = TabularData.concat(datasets)
    return model.fit(union, rho=rho, fairness=fairness)
