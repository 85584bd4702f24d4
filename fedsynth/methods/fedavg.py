"""FedAvg (McMahan et al. 2017) for the paper's logistic model: R rounds of local SGD and averaging.

Each round is one ``train`` exchange. Server → clients: the global θ (absent in round 1: clients
start from θ = 0) and the round's settings (``server-round``, ``local-epochs``, ``lr``,
``batch-size``). Clients → server: their locally trained θ_k and ``num-examples`` = n_k, their
training-set size, which the weighted average needs (a client statistic that leaves the client
every round). The server aggregates the replies as received with Flower's own FedAvg aggregation,
:func:`flwr.serverapp.strategy.strategy_utils.aggregate_arrayrecords` (through
:mod:`fedsynth.flower`) weighted by their
``num-examples`` (what ``flwr.serverapp.strategy.FedAvg.aggregate_train`` calls):
θ = Σ_k n_k θ_k / Σ_k n_k.

Flower's ``FedAvg.start`` loop itself is not used: it drives a Flower ``Grid`` directly, which
would bypass the measured :class:`~fedsynth.methods.base.Communicator` (bytes, round trips) and
the in-process engine. :class:`~fedsynth.methods.fairfed.FairFed` is this class with other
aggregation weights, :class:`~fedsynth.methods.fair_fate.FairFate` with another global update.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
from flwr.app import RecordDict

from fedsynth.core import LogisticModel
from fedsynth.flower import aggregate_arrayrecords
from fedsynth.data.types import ClientPartition, TabularData
from fedsynth.methods._baselines import cast_fields, local_sgd, seed_for
from fedsynth.methods.base import THETA, ClientFailure, Communicator, FederatedMethod, ServerResult, usable_replies
from fedsynth.methods.base import arrays_of, config_of, make_content, metrics_of

log = logging.getLogger(__name__)

NUM_EXAMPLES = "num-examples"  # Flower's weighting key


@dataclass(kw_only=True, eq=False)
class FedAvg(FederatedMethod):
    """FedAvg of the linear logistic model ℓ_r (eq. 11).

    Args:
        rounds: R, the number of communication rounds.
        local_epochs: SGD epochs per round on each client.
        lr: SGD learning rate.
        batch_size: SGD mini-batch size.
        lambda_theta: λ_θ of ℓ_r (the same regularization as single_shot's model).
        fit_intercept: model with an intercept column.
        seed: client ``k`` shuffles its rows in round ``t`` with ``seed_for(seed, t, k)``.
        min_clients: valid replies the server needs in every round.
    """

    name = "fedavg"
    payload_arrays: ClassVar[tuple[str, ...]] = (THETA,)
    rounds: int = 20
    local_epochs: int = 1
    lr: float = 0.1
    batch_size: int = 64
    lambda_theta: float = 1e-3
    fit_intercept: bool = True
    seed: int = 0
    min_clients: int = 1

    @property
    def model(self) -> LogisticModel:
        """The logistic model of ℓ_r the rounds train (``lambda_theta``, ``fit_intercept``)."""
        return LogisticModel(lambda_theta=self.lambda_theta, fit_intercept=self.fit_intercept)

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.local_epochs < 1 or self.batch_size < 1 or not 0 < self.lr < math.inf:
            raise ValueError(
                f"need rounds >= 1, local_epochs >= 1, batch_size >= 1, a finite lr > 0; got "
                f"{self.rounds}, {self.local_epochs}, {self.batch_size}, {self.lr}"
            )
        if self.min_clients < 1:
            raise ValueError(f"min_clients must be >= 1, got {self.min_clients}")
        cast_fields(self)

    # ------------------------------------------------------------------ server
    def round_request(self, server_round: int, theta: np.ndarray | None) -> RecordDict:
        """The ``train`` message of one round: θ (from round 2 on) and the local settings."""
        return make_content(
            arrays=None if theta is None else {THETA: theta},
            config={
                "server-round": server_round,
                "local-epochs": self.local_epochs,
                "lr": self.lr,
                "batch-size": self.batch_size,
            },
        )

    def statistic_keys(self, num_groups: int) -> tuple[str, ...]:
        """Metrics a client sends each round besides ``num-examples``, on a sensitive attribute of
        ``num_groups`` groups (none for FedAvg; FairFed adds its own)."""
        return ()

    def validate_update(self, content: RecordDict, width: int, num_groups: int = 2) -> None:
        """A round's reply: exactly array θ of ``width`` finite float64 weights, metrics
        ``num-examples`` > 0 and :meth:`statistic_keys` of ``num_groups`` (finite, >= 0), no config."""
        arrays, config, metrics = arrays_of(content), config_of(content), metrics_of(content)
        expected = {NUM_EXAMPLES, *self.statistic_keys(num_groups)}
        if set(arrays) != {THETA} or set(metrics) != expected or config:
            raise ValueError(
                f"expected array {THETA!r} and metrics {sorted(expected)}, got arrays "
                f"{sorted(arrays)}, metrics {sorted(metrics)}, config {sorted(config)}"
            )
        theta = arrays[THETA]
        if theta.shape != (width,) or theta.dtype != np.float64 or not np.isfinite(theta).all():
            raise ValueError(f"θ must hold {width} finite float64 numbers, got shape {theta.shape}, dtype {theta.dtype}")
        values = np.array([metrics[key] for key in sorted(expected)], dtype=np.float64)
        if not (np.isfinite(values).all() and (values >= 0).all()) or metrics[NUM_EXAMPLES] <= 0:
            raise ValueError(f"metrics must be finite and >= 0 with {NUM_EXAMPLES} > 0: {metrics}")

    def average(self, server_round: int, updates: Mapping[int, RecordDict]) -> np.ndarray:
        """FedAvg's weighted mean Σ_k n_k θ_k / Σ_k n_k of the round's validated replies, as
        received: Flower's :func:`aggregate_arrayrecords` weighted by their ``num-examples``
        (clients in node order). FairFed overrides the weights."""
        return aggregate_arrayrecords([updates[node] for node in sorted(updates)], NUM_EXAMPLES)[THETA].numpy()

    def round_info(self) -> dict[str, Any]:
        """Extra ``ServerResult.info`` entries (FairFed's weight history)."""
        return {}

    def global_update(self, server_round: int, theta: np.ndarray | None, updates: Mapping[int, RecordDict]) -> np.ndarray:
        """The next global θ from the round's updates: :meth:`average` (FAIR-FATE adds its fair
        momentum). ``theta`` is the global model the clients started from (None in round 1)."""
        return self.average(server_round, updates)

    def run_server(self, comm: Communicator) -> ServerResult:
        """R rounds: send θ, receive local models, aggregate them."""
        nodes = comm.nodes()
        width = self.model.num_weights(comm.schema.num_features, comm.schema.num_groups)
        theta: np.ndarray | None = None
        failures: list[ClientFailure] = []
        for server_round in range(1, self.rounds + 1):
            replies = comm.send("train", {node: self.round_request(server_round, theta) for node in nodes})
            valid, round_failures = usable_replies(
                replies, lambda content: self.validate_update(content, width, comm.schema.num_groups), self.min_clients
            )
            for failure in round_failures:
                log.warning("round %d: client node %s left out: %s", server_round, failure.node, failure.reason)
                failures.append(ClientFailure(failure.node, f"round {server_round}: {failure.reason}"))
            theta = self.global_update(server_round, theta, valid)
        assert theta is not None
        return ServerResult(theta=theta, failures=failures, info={"rounds": self.rounds, **self.round_info()})

    # ------------------------------------------------------------------ client
    def client_statistics(self, theta: np.ndarray, train: TabularData) -> dict[str, float]:
        """Metrics about the received global θ on the client's training data that go back with
        the update (none for FedAvg)."""
        return {}

    def train(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Local SGD from the received θ (θ = 0 in round 1), reply θ_k and n_k (and
        :meth:`client_statistics` of the received θ)."""
        config, arrays = config_of(content), arrays_of(content)
        start = np.asarray(arrays[THETA], dtype=np.float64) if THETA in arrays else None
        train = data.train
        global_theta = start if start is not None else np.zeros(self.model.num_weights(train.num_features, train.num_groups))
        statistics = self.client_statistics(global_theta, train)
        theta = local_sgd(
            train,
            start,
            epochs=int(config["local-epochs"]),
            lr=float(config["lr"]),
            batch_size=int(config["batch-size"]),
            model=self.model,
            seed=seed_for(self.seed, int(config["server-round"]), data.client_id),
        )
        return make_content(arrays={THETA: theta}, metrics={NUM_EXAMPLES: float(len(train)), **statistics})
