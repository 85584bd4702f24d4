"""FairFed (Ezzeldin et al., AAAI 2023): FedAvg with fairness-aware aggregation weights, SPD.

Round t (one ``train`` exchange, like FedAvg): every client receives the global θ^t, measures it
on its own training data, trains locally from it and replies θ_k with these statistics of θ^t:

* ``num-examples`` = n_k (as in FedAvg),
* ``n_s1``, ``n_s0``: its group sizes; ``positive_s1``, ``positive_s0``: positive predictions of
  θ^t per group (for k > 2 groups ``n_s<g>``, ``positive_s<g>`` of every group g = 0..k−1);
  ``correct``: correct predictions of θ^t.

From them the server computes the local SPD F_k of θ^t on client k, the global SPD F_global of θ^t
over all clients' training data (pooled counts), Δ_k = |F_k − F_global| (|Acc_k − Acc_global|
for a client whose local SPD is undefined because it lacks a group, as FairFed does), and

    ω_k ← ω_k − β (Δ_k − mean_i Δ_i),   ω_k⁰ ∝ n_k,

then aggregates θ^{t+1} = Σ ω_k θ_k / Σ ω_k (:func:`weighted_mean`, a plain weighted mean in the
order of operations of Flower's FedAvg aggregation). β = 0 is FedAvg exactly, to the bit.
For k > 2 groups (not in the paper) F is the largest gap of the groups' positive rates over the
groups with rows (:func:`~fedsynth.metrics.counts.group_gap`, the ``spd`` metric of k groups),
undefined with fewer than two.

Deviations from the paper, both documented in docs/comparison.md: the server sees each
client's statistics (FairFed obtains F_global and the mean Δ through secure aggregation; without
it, as here, the individual counts reach the server), and ω_k is clipped at 0 (large β can drive
a weight negative; the paper leaves that case open). ω is kept in units of examples (ω⁰_k = n_k,
β scaled by Σ n_k), which is the paper's normalized ω up to that constant factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from flwr.app import RecordDict

from fedsynth.data.types import TabularData
from fedsynth.methods.base import Communicator, ServerResult, metrics_of, received_theta
from fedsynth.methods.fedavg import NUM_EXAMPLES, FedAvg
from fedsynth.metrics import evaluation_counts
from fedsynth.metrics.counts import group_gap, group_rates, group_suffixes


def weighted_mean(thetas: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Σ_k w_k θ_k / Σ_k w_k, computed as Flower's ``aggregate_arrayrecords`` computes FedAvg's
    (each w_k / Σ w first, then the weighted θ_k summed in order), so equal weights give FedAvg's
    θ to the bit."""
    total = sum(weights)
    mean = thetas[0] * (weights[0] / total)
    for theta, weight in zip(thetas[1:], weights[1:]):
        mean += theta * (weight / total)
    return mean


def group_keys(num_groups: int) -> tuple[str, ...]:
    """The per-round statistics of θ^t a FairFed client sends besides θ_k and n_k, for an
    attribute of ``num_groups`` groups: ``correct``, then ``n_<g>`` and ``positive_<g>`` of every
    group suffix g (``s1``, ``s0`` for two groups)."""
    groups = group_suffixes(num_groups)
    return ("correct", *(f"n_{g}" for g in groups), *(f"positive_{g}" for g in groups))


def _spd(counts: Mapping[str, float]) -> float:
    """SPD (4) from counts (two groups: signed; k groups: the largest gap); NaN when a group is
    empty (k groups: fewer than two with rows)."""
    return group_gap(group_rates(counts, "positive", "n"))


@dataclass(kw_only=True, eq=False)
class FairFed(FedAvg):
    """FairFed with SPD as the fairness metric.

    Args:
        beta: β, the fairness budget of the weight update (0 gives FedAvg).
        **FedAvg's arguments** (rounds, local_epochs, lr, batch_size, lambda_theta,
            fit_intercept, seed, min_clients).
    """

    name = "fairfed"
    beta: float = 1.0
    _omega: dict[int, float] = field(default_factory=dict, init=False, repr=False)
    _history: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")

    def run_server(self, comm: Communicator) -> ServerResult:
        """FedAvg's rounds, with ω and the round history started afresh."""
        self._omega, self._history = {}, []
        return super().run_server(comm)

    def statistic_keys(self, num_groups: int) -> tuple[str, ...]:
        """:func:`group_keys`: the counts of θ^t the server weighs the clients by."""
        return group_keys(num_groups)

    def client_statistics(self, theta: np.ndarray, train: TabularData) -> dict[str, float]:
        """Counts of the global θ^t on the client's training data (:func:`group_keys`)."""
        counts = evaluation_counts(self.model, theta, train)
        return {key: counts[key] for key in group_keys(train.num_groups)}

    def average(self, server_round: int, updates: Mapping[int, RecordDict]) -> np.ndarray:
        """Σ_k ω_k θ_k / Σ_k ω_k with ω from :meth:`aggregation_weights` (clients in node order)."""
        weights = self.aggregation_weights(server_round, updates)
        nodes = sorted(updates)
        return weighted_mean([received_theta(updates[node]) for node in nodes], [weights[node] for node in nodes])

    def aggregation_weights(self, server_round: int, updates: Mapping[int, RecordDict]) -> dict[int, float]:
        """Update ω from the statistics of θ^t and return it for the clients that replied."""
        stats = {node: metrics_of(update) for node, update in updates.items()}
        total = {key: sum(m[key] for m in stats.values()) for key in next(iter(stats.values()))}
        spd_global = _spd(total)
        acc_global = total["correct"] / total[NUM_EXAMPLES]
        deltas: dict[int, float] = {}
        for node, m in stats.items():
            spd_local = _spd(m)
            if math.isnan(spd_local) or math.isnan(spd_global):
                deltas[node] = abs(m["correct"] / m[NUM_EXAMPLES] - acc_global)
            else:
                deltas[node] = abs(spd_local - spd_global)
        mean_delta = sum(deltas.values()) / len(deltas)
        for node, m in stats.items():
            omega = self._omega.get(node, float(m[NUM_EXAMPLES]))
            self._omega[node] = max(0.0, omega - self.beta * total[NUM_EXAMPLES] * (deltas[node] - mean_delta))
        weights = {node: self._omega[node] for node in stats}
        if sum(weights.values()) <= 0:  # every weight clipped: fall back to FedAvg's
            weights = {node: float(m[NUM_EXAMPLES]) for node, m in stats.items()}
        norm = sum(weights.values())
        self._history.append(
            {
                "round": server_round,
                "spd_global": spd_global,
                "delta": {str(node): deltas[node] for node in sorted(deltas)},
                "weight": {str(node): weights[node] / norm for node in sorted(weights)},
            }
        )
        return weights

    def round_info(self) -> dict[str, Any]:
        """β and, per round, the training-data SPD of θ^t, Δ_k and the normalized weights."""
        return {"beta": self.beta, "fairfed_rounds": self._history}
