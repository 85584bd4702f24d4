"""The server's role in Algorithm 1 (lines 18–21): fit ℓ_r on the union of synthetic data, eq. (15),
optionally weighing each client's rows by its size and with a fairness penalty or target on that union
(beyond the paper)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fedsynth.core.fairness import Covariance, FairnessMeasure
from fedsynth.core.model import InnerSolution, LogisticModel
from fedsynth.core.targets import fit_to_target
from fedsynth.data.types import TabularData


@dataclass(frozen=True)
class ServerFit:
    """The server's model: the solution, the fairness penalty weight it was fitted with (``rho``: the
    given one, or the one a target asked for) and, with a target, the achieved value on the union and
    whether it met the target."""

    solution: InnerSolution
    rho: float
    achieved: float | None = None
    met: bool | None = None

    @property
    def theta(self) -> torch.Tensor:
        """The server model's θ."""
        return self.solution.theta


def union_weights(datasets: Sequence[TabularData], sizes: Sequence[float] | None) -> torch.Tensor | None:
    """Row weights of the union that give client c the total weight ``sizes[c]`` (its rows share it
    equally): Σ_c sizes[c]/N_s,c Σ_{i ∈ c} ℓ_i, the pooled data's weighing of clients of N_c rows.
    ``None`` (every row weighs the same, the paper's union) when ``sizes`` is None."""
    if sizes is None:
        return None
    if len(sizes) != len(datasets):
        raise ValueError(f"need one size per client dataset, got {len(sizes)} for {len(datasets)}")
    return torch.cat(
        [torch.full((len(data),), float(size) / len(data), dtype=torch.float64) for data, size in zip(datasets, sizes)]
    )


def fit_server_model(
    datasets: Sequence[TabularData],
    model: LogisticModel,
    *,
    sizes: Sequence[float] | None = None,
    rho: float = 0.0,
    fairness: FairnessMeasure = Covariance(),
    target: float | None = None,
    target_metric: str = "spd",
) -> ServerFit:
    """Train the global model on the concatenated client datasets.

    ``rho = 0``, no ``sizes``: θ = argmin_θ ℓ_r on the union, the paper's eq. (15) (the same
    regularized logistic model as the clients' inner problem, no fairness term). ``sizes`` (one per
    dataset, e.g. each client's N or a noisy N) weighs client c's rows by sizes[c]/N_s,c
    (:func:`union_weights`), in ℓ_r and in F alike. ``rho > 0``: argmin_θ ℓ_r + ρ/2·F(θ)², F the
    measure ``fairness`` bound to the union's rows with the (ŝ, ŷ) they carry. ``target``: instead
    of ``rho``, the smallest ρ whose solution has |G| ≤ target on the union, G the SPD, the EOD or F
    (``target_metric``; :func:`~fedsynth.core.targets.fit_to_target`).
    """
    if not datasets:
        raise ValueError("the server needs at least one client dataset")
    union = TabularData.concat(datasets)
    weight = union_weights(datasets, sizes)
    if target is not None:
        result = fit_to_target(union, model, fairness, target, metric=target_metric, sample_weight=weight)
        return ServerFit(result.solution, result.rho, result.achieved, result.met)
    return ServerFit(model.fit(union, rho=rho, fairness=fairness, sample_weight=weight), rho)
