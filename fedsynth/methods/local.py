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

from dataclasses import dataclass

import numpy as np
from flwr.app import RecordDict

from fedsynth.core import LogisticModel
from fedsynth.data.types import ClientPartition
from fedsynth.methods._baselines import ExactFitMethod
from fedsynth.methods.base import Communicator, ServerResult

_STATE_THETA = "local_theta"


@dataclass(kw_only=True, eq=False)
class Local(ExactFitMethod):
    """Each client's own model (see the module docstring); the settings are
    :class:`~fedsynth.methods._baselines.ExactFitMethod`'s (``variant``: ``plain`` or ``fair``)."""

    name = "local"

    def run_server(self, comm: Communicator) -> ServerResult:
        """No exchange: the server learns nothing and has no model."""
        return ServerResult(
            theta=np.zeros(0),
            info={"variant": self.variant, "global_model": False},
        )

    def evaluated_model(
        self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]
    ) -> tuple[LogisticModel, np.ndarray]:
        """The client's own model, fitted once on its training data; the received θ is ignored."""
        if _STATE_THETA not in state:
            state[_STATE_THETA] = self.fit(data.train)
        return self.model, state[_STATE_THETA]
