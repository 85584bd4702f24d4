"""FAIR-FATE (Salazar et al., ICCS 2023): FedAvg with fairness-aware server momentum.

Rounds as in FedAvg (one ``train`` exchange each; clients send θ_k and n_k). The server holds a
validation set with the sensitive attribute, here a held-out share (``validation_fraction``) of every
client's training rows that the harness gives it (:func:`fedsynth.data.hold_out`; the clients train
on the rest). In round t, with Δ_k = θ_k − θ^t and the FedAvg step Δ_avg = Σ_k n_k Δ_k / Σ_k n_k:

1. fairness F of the global θ^t and of every θ_k on the validation set: F = 1 − |SPD| (or 1 − |EOD|,
   ``fairness_metric``), min–max normalized over {θ^t, θ_1, …, θ_K};
2. fair update: Δ_F = Σ_{k: F_k > F_global} F_k Δ_k / Σ_{k: F_k > F_global} F_k (0 when no client
   is fairer than the global model);
3. momentum m ← β_t m + (1 − β_t) Δ_F with the decaying β_t = β₀(1 − t/R) / ((1 − β₀) + β₀(1 − t/R));
4. θ^{t+1} = θ^t + λ_t m / (1 − β_t^t) + (1 − λ_t) Δ_avg, λ_t = min(λ₀(1 + ρ)^t, λ_max).

λ₀ = 0 is FedAvg. Written from the paper's description and its authors' reference implementation
(github.com/teresalazar13/FAIR-FATE, ``FairFateAggregation``); the round count R replaces its fixed
100 in β_t. The model is the paper-wide logistic model ℓ_r (eq. 11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np
from flwr.app import RecordDict

from fedsynth.data import DatasetSpec, hold_out, load_partition
from fedsynth.data.types import ClientPartition, TabularData
from fedsynth.methods.base import Communicator, ServerResult, received_theta
from fedsynth.methods.fedavg import FedAvg
from fedsynth.metrics import evaluation_counts, metrics_from_counts

FAIRNESS_METRICS = ("spd", "eod")


@dataclass(kw_only=True, eq=False)
class FairFate(FedAvg):
    """FAIR-FATE over FedAvg's rounds (see the module docstring for the update).

    Args:
        lambda0: λ₀, the initial weight of the fair momentum (0 gives FedAvg).
        lambda_growth: ρ, λ_t = λ₀(1 + ρ)^t.
        max_lambda: λ_max, the cap of λ_t (at most 1).
        beta0: β₀, the initial momentum coefficient.
        fairness_metric: ``spd`` or ``eod``: F = 1 − |metric| on the validation set.
        validation_fraction: share of every client's training rows held out for the server.
        dataset, partition, data_dir: the experiment's dataset config, partition settings and data
            folder, from which the server draws the held-out rows (the harness's privilege).
        **FedAvg's arguments** (rounds, local_epochs, lr, batch_size, lambda_theta, fit_intercept,
            seed, min_clients).
    """

    name = "fair_fate"
    lambda0: float = 0.5
    lambda_growth: float = 0.05
    max_lambda: float = 1.0
    beta0: float = 0.9
    fairness_metric: str = "spd"
    validation_fraction: float = 0.1
    dataset: Optional[dict] = None
    partition: Optional[dict] = None
    data_dir: Optional[str] = None
    _validation: Optional[TabularData] = field(default=None, init=False, repr=False)
    _momentum: Optional[np.ndarray] = field(default=None, init=False, repr=False)
    _history: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("lambda0", "lambda_growth"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a finite number >= 0, got {value}")
        if not 0 <= self.max_lambda <= 1:
            raise ValueError(f"max_lambda must be in [0, 1], got {self.max_lambda}")
        if not 0 <= self.beta0 < 1:
            raise ValueError(f"beta0 must be in [0, 1), got {self.beta0}")
        if self.fairness_metric not in FAIRNESS_METRICS:
            raise ValueError(f"fairness_metric must be one of {FAIRNESS_METRICS}, got {self.fairness_metric!r}")
        if self.lambda0 > 0 and not self.validation_fraction > 0:
            raise ValueError("fair_fate with lambda0 > 0 needs validation_fraction > 0 (the server's validation set)")

    # ------------------------------------------------------------------ server
    def server_validation_set(self) -> TabularData:
        """The rows (x, s, y) the server validates on: every client's held-out share, pooled."""
        if self.dataset is None or self.partition is None:
            raise ValueError("fair_fate needs method.dataset and method.partition (conf/method/fair_fate.yaml sets them)")
        spec = DatasetSpec.from_config(self.dataset)
        shares = []
        for client_id in range(spec.num_clients):
            part = load_partition(
                spec,
                client_id,
                seed=self.seed,
                scheme=self.partition["scheme"],
                test_fraction=self.partition["test_fraction"],
                dirichlet_alpha=self.partition["dirichlet_alpha"],
                data_dir=self.data_dir,
            )
            shares.append(hold_out(part.train, self.validation_fraction, seed=self.seed, client_id=client_id)[1])
        return TabularData.concat(shares)

    def run_server(self, comm: Communicator) -> ServerResult:
        """FedAvg's rounds with the fair momentum, from a fresh momentum and validation set."""
        self._momentum, self._history = None, []
        self._validation = self.server_validation_set() if self.lambda0 > 0 else None
        return super().run_server(comm)

    def fairness(self, theta: np.ndarray) -> float:
        """F = 1 − |SPD| (or 1 − |EOD|) of θ on the server's validation set."""
        assert self._validation is not None
        metrics = metrics_from_counts(evaluation_counts(self.model, theta, self._validation))
        return 1.0 - abs(metrics[self.fairness_metric])

    def global_update(self, server_round: int, theta: np.ndarray | None, updates: Mapping[int, RecordDict]) -> np.ndarray:
        """θ^{t+1} = (1 − λ_t) θ_avg + λ_t (θ^t + m̂), θ_avg FedAvg's aggregate (module docstring)."""
        average = self.average(server_round, updates)
        if self.lambda0 == 0:
            return average
        start = np.zeros_like(average) if theta is None else theta
        nodes = sorted(updates)
        local = {node: received_theta(updates[node]) for node in nodes}
        raw = [self.fairness(start)] + [self.fairness(local[node]) for node in nodes]
        low, high = min(raw), max(raw)
        scaled = [0.0 if high == low else (value - low) / (high - low) for value in raw]
        global_fairness, client_fairness = scaled[0], dict(zip(nodes, scaled[1:]))
        fairer = [node for node in nodes if client_fairness[node] > global_fairness]
        fair_step = np.zeros_like(average)
        if fairer:
            total = sum(client_fairness[node] for node in fairer)
            for node in fairer:
                fair_step += client_fairness[node] / total * (local[node] - start)
        progress = 1.0 - server_round / self.rounds
        beta = self.beta0 * progress / ((1.0 - self.beta0) + self.beta0 * progress)
        momentum = np.zeros_like(average) if self._momentum is None else self._momentum
        self._momentum = beta * momentum + (1.0 - beta) * fair_step
        lam = min(self.lambda0 * (1.0 + self.lambda_growth) ** server_round, self.max_lambda)
        corrected = self._momentum / (1.0 - beta**server_round)
        self._history.append(
            {
                "round": server_round,
                "lambda": lam,
                "beta": beta,
                "fairness_global": raw[0],
                "fairer_clients": [str(node) for node in fairer],
            }
        )
        return (1.0 - lam) * average + lam * (start + corrected)

    def round_info(self) -> dict[str, Any]:
        """The settings, the server's validation privilege and, per round, λ_t, β_t, the global
        model's validation fairness and which clients counted as fairer."""
        validation = 0 if self._validation is None else len(self._validation)
        return {
            "lambda0": self.lambda0,
            "beta0": self.beta0,
            "fairness_metric": self.fairness_metric,
            "server_validation_rows": validation,
            "server_privileges": [f"validation rows (x, s, y): {validation}"] if validation else [],
            "fair_fate_rounds": self._history,
        }

    # ------------------------------------------------------------------ client
    def train(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """FedAvg's client on the training rows the server did not take for validation."""
        if self.lambda0 > 0:
            kept, _ = hold_out(data.train, self.validation_fraction, seed=self.seed, client_id=data.client_id)
            data = ClientPartition(data.client_id, kept, data.test)
        return super().train(content, data, state)
