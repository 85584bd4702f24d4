"""Local learning: every client trains alone on its own data; nothing is exchanged.

The protocol makes no exchange (0 round trips, 0 bytes) and the server's θ is empty: there is no
global model. When the harness sends ``evaluate``, each client ignores the θ it receives, fits
its own model on its training data (kept in its state) and reports that model's counts on its own
test data. The run's pooled metrics are therefore the pooled counts of K different models, each
on its own client's test rows (not one model's metrics); per-client metrics are each client's own.

``variant``: ``plain`` (ℓ_r, eq. 11) or ``fair`` (ℓ_r + ρ/2 · cov², the covariance (2) on the
client's own training rows), the same fits as :mod:`fedsynth.methods.centralized`.
"""

from __future__ import annotations

import numpy as np

from fedsynth.data.types import ClientPartition
from fedsynth.methods._baselines import fit_linear_model
from fedsynth.methods.replies import StatisticsLedger
from fedsynth.methods.base import Communicator, FederatedMethod, Payload, ServerResult
from fedsynth.metrics import evaluation_counts

VARIANTS = ("plain", "fair")
_STATE_THETA = "local_theta"


class Local(FederatedMethod):
    """Each client's own model (see the module docstring).

    Args:
        variant: ``plain`` or ``fair``.
        rho: ρ of the ``fair`` variant.
        lambda_theta: λ_θ of ℓ_r.
        max_iter: L-BFGS iterations.
        fit_intercept: model with an intercept column.
    """

    name = "local"

    def __init__(
        self,
        *,
        variant: str = "plain",
        rho: float = 10.0,
        lambda_theta: float = 1e-3,
        max_iter: int = 500,
        fit_intercept: bool = True,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.rho = float(rho)
        self.lambda_theta = float(lambda_theta)
        self.max_iter = int(max_iter)
        self.fit_intercept = bool(fit_intercept)

    def run_server(self, comm: Communicator) -> ServerResult:
        """No exchange: the server learns nothing and has no model."""
        return ServerResult(
            theta=np.zeros(0),
            info={"variant": self.variant, "global_model": False, **StatisticsLedger(()).info()},
        )

    def handle_client(
        self, action: str, payload: Payload, data: ClientPartition, state: dict[str, np.ndarray]
    ) -> Payload:
        """``evaluate``: fit (once) and evaluate the client's own model on its test data."""
        if action != "evaluate":
            raise ValueError(f"local clients answer only 'evaluate', not {action!r}")
        if _STATE_THETA not in state:
            state[_STATE_THETA] = fit_linear_model(
                data.train,
                rho=self.rho if self.variant == "fair" else 0.0,
                lambda_theta=self.lambda_theta,
                fit_intercept=self.fit_intercept,
                max_iter=self.max_iter,
            )
        return Payload(metrics=evaluation_counts(state[_STATE_THETA], data.test, self.fit_intercept))
