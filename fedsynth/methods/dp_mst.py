"""DP synthetic data without fairness: every client sends N_s rows of MST (fedsynth.privacy.mst),
(ε, δ)-DP per client; the server fits the plain model, or with ``server_rho`` > 0 the fair one
(ℓ_r + server_rho/2·F² on the union, as single_shot's server), on the union of the rows.

Server → clients: the method's settings (config key ``request``). Clients → server, once: x̂, ŝ, ŷ,
the same reply as single_shot's (validated by the same :func:`~fedsynth.methods.replies.rows_from_replies`).
Needs the ``dp-synth`` extra (``mbi``, JAX).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
from flwr.app import RecordDict

from fedsynth.core import LogisticModel, fit_server_model
from fedsynth.core.fairness import fairness_from_config
from fedsynth.data.types import ClientPartition, TabularData
from fedsynth.methods._baselines import cast_fields
from fedsynth.methods.base import Communicator, FederatedMethod, ServerResult, make_content
from fedsynth.methods.replies import ROW_ARRAYS, fit_without_culprits, rows_from_replies
from fedsynth.privacy.accounting import PrivacyStatement, Release, noise_multiplier
from fedsynth.privacy.budget import PrivacyBudget, required_budget
from fedsynth.privacy.mst import RELEASES, MSTSettings, mst_synthesize
from fedsynth.schema import from_mapping

log = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class DPMST(FederatedMethod):
    """MST synthetic rows from every client; the server fits on their union.

    Args:
        privacy: ``method.privacy`` (:class:`~fedsynth.privacy.budget.PrivacyBudget`; ``epsilon``
            required).
        synthetic_size: N_s, the rows each client sends.
        mst: ``method.mst`` (:class:`~fedsynth.privacy.mst.MSTSettings`: ``bins``, ``limit``,
            ``iterations``).
        fairness, fairness_temperature: the server's measure F (as single_shot's).
        server_rho: the server's fairness penalty on the union (0: the plain model).
        lambda_theta: λ_θ of the server's ℓ_r.
        fit_intercept: model with an intercept column.
        min_clients: valid replies the server needs.
    """

    name = "dp_mst"
    binary_sensitive_only = True
    payload_arrays: ClassVar[tuple[str, ...]] = ROW_ARRAYS
    synthetic_size: int = 800
    privacy: Mapping[str, Any] = field(default_factory=dict)
    fairness: str = "covariance"
    fairness_temperature: float = 1.0
    server_rho: float = 0.0
    lambda_theta: float = 1e-3
    mst: Mapping[str, Any] = field(default_factory=dict)
    fit_intercept: bool = True
    min_clients: int = 1

    def __post_init__(self) -> None:
        cast_fields(self)
        self.budget = required_budget(PrivacyBudget, self.privacy, "dp_mst")
        self.settings = from_mapping(MSTSettings, dict(self.mst), "method.mst")
        if self.synthetic_size < 4:
            raise ValueError(f"synthetic_size must be at least 4, got {self.synthetic_size}")
        if not (math.isfinite(self.server_rho) and self.server_rho >= 0):
            raise ValueError(f"server_rho must be a finite number >= 0, got {self.server_rho}")
        self.measure = fairness_from_config(self.fairness, self.fairness_temperature)
        if self.min_clients < 1:
            raise ValueError(f"min_clients must be >= 1, got {self.min_clients}")

    @property
    def model(self) -> LogisticModel:
        """The server's logistic model (``lambda_theta``, ``fit_intercept``)."""
        return LogisticModel(lambda_theta=self.lambda_theta, fit_intercept=self.fit_intercept)

    def statement(self) -> PrivacyStatement:
        """What each client spends: MST's three Gaussian releases."""
        budget = self.budget
        z = noise_multiplier(budget.epsilon, budget.delta, steps=RELEASES, accountant=budget.accountant)
        return PrivacyStatement(budget, (Release("mst marginals", z, 1.0, RELEASES),))

    def run_server(self, comm: Communicator) -> ServerResult:
        """One exchange: N_s MST rows from every client; the server's fit on their union."""
        request = make_content(config={"request": "synthesize"})
        replies = comm.send("train", {node: request for node in comm.nodes()})
        size = self.synthetic_size
        tables, failures = rows_from_replies(replies, comm.schema, min_clients=self.min_clients, rows=(size, size))
        theta, dropped = fit_without_culprits(tables, self._fit, self.min_clients)
        failures += dropped
        for failure in failures:
            log.warning("client node %s left out: %s", failure.node, failure.reason)
        statement = self.statement().to_record()
        kept = sorted(node for node in tables if node not in {f.node for f in dropped})
        return ServerResult(theta=theta, failures=failures, info={"privacy": {str(node): statement for node in kept}})

    def _fit(self, tables: Mapping[int, TabularData]) -> np.ndarray:
        """The server's model on the union of the rows, by node (fair with ``server_rho`` > 0)."""
        union = [tables[node] for node in sorted(tables)]
        return fit_server_model(union, self.model, rho=self.server_rho, fairness=self.measure).theta.numpy()

    def train(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """N_s MST rows of the client's training data."""
        rows = mst_synthesize(
            data.train,
            rows=self.synthetic_size,
            noise_multiplier=self.statement().releases[0].noise_multiplier,
            generator=self.budget.noise_generator(data.client_id),
            settings=self.settings,
        )
        return make_content(arrays={k: getattr(rows, k).numpy() for k in ROW_ARRAYS})
