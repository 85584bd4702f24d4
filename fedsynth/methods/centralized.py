"""Centralized learning as a federated plugin: every client uploads its raw training rows once.

One ``train`` exchange. Server → clients: an empty message. Clients → server: their training rows
(x, s, y), everything there is. The server fits on the union, by ``variant``:

* ``plain``: regularized logistic regression ℓ_r (eq. 11), the accuracy ceiling of the model;
* ``fair``: ℓ_r + ρ/2 · F(θ)², F the fairness measure ``fairness`` on the pooled rows as a penalty
  (by default the decision-boundary covariance (2), Zafar et al. 2017 style; the same term the
  paper's clients put on their real data; any :mod:`fedsynth.core.fairness` measure);
* ``exponentiated_gradient``: fairlearn's ``ExponentiatedGradient(LogisticRegression,
  DemographicParity)`` (Agarwal et al. 2018), an independent fair reference. Its result is a
  *randomized* classifier: predictor j (a linear model θ_j) is used with probability w_j. The
  server sends the whole mixture as its θ, laid out flat as ``[w_1..w_J, θ_1, ..., θ_J]``; each
  client evaluates it exactly in expectation: the expected counts are Σ_j w_j counts(θ_j) (every
  count is a sum of per-row predictions), so accuracy, SPD and EOD are those of the randomized
  classifier's expected predictions; the covariance is that of the mixture's mean decision value.

fairlearn and scikit-learn are imported only for ``exponentiated_gradient``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import RecordDict

from fedsynth.data.types import ClientPartition, TabularData
from fedsynth.core import LogisticMixture, LogisticModel
from fedsynth.methods._baselines import ExactFitMethod
from fedsynth.methods.replies import ROW_ARRAYS, rows_from_replies
from fedsynth.methods.base import Communicator, ServerResult, make_content, received_theta

log = logging.getLogger(__name__)

VARIANTS = ("plain", "fair", "exponentiated_gradient")


def fit_exponentiated_gradient(
    data: TabularData, model: LogisticModel, *, eps: float, max_iter: int, C: float
) -> LogisticMixture:
    """fairlearn's ExponentiatedGradient with DemographicParity over LogisticRegression on the
    features a = (x, s) (the sensitive attribute is both a feature, as in every model here, and
    the constraint's group). Returns the predictors with non-zero weight as rows θ_j of the
    ``model`` (its ``fit_intercept``) and their weights w_j (summing to 1)."""
    from fairlearn.reductions import DemographicParity, ExponentiatedGradient
    from sklearn.linear_model import LogisticRegression

    features = data.a.numpy()
    labels = (data.y.numpy() > 0).astype(int)
    reduction = ExponentiatedGradient(
        LogisticRegression(C=C, fit_intercept=model.fit_intercept, max_iter=1000),
        DemographicParity(),
        eps=eps,
        max_iter=max_iter,
    )
    reduction.fit(features, labels, sensitive_features=data.s.numpy())
    thetas, weights = [], []
    for index, weight in reduction.weights_.items():
        if weight <= 0:
            continue
        predictor = reduction.predictors_[index]
        coef = predictor.coef_.ravel()
        thetas.append(np.concatenate([coef, predictor.intercept_]) if model.fit_intercept else coef)
        weights.append(float(weight))
    weights_array = np.asarray(weights)
    return LogisticMixture(np.vstack(thetas), weights_array / weights_array.sum())


@dataclass(kw_only=True, eq=False)
class Centralized(ExactFitMethod):
    """Centralized learning (see the module docstring). Besides
    :class:`~fedsynth.methods._baselines.ExactFitMethod`'s settings (``variant``: ``plain``,
    ``fair`` or ``exponentiated_gradient``; ``max_iter`` of the plain and fair fits):

    Args:
        eg_eps: allowed demographic-parity violation of ExponentiatedGradient (its ``eps``).
        eg_max_iter: ExponentiatedGradient iterations.
        eg_C: inverse L2 strength of its LogisticRegression.
        min_clients: valid uploads the server needs.
        max_rows: most rows one client may upload.
    """

    name = "centralized"
    payload_arrays = ROW_ARRAYS
    variants = VARIANTS
    eg_eps: float = 0.01
    eg_max_iter: int = 50
    eg_C: float = 1.0
    min_clients: int = 1
    max_rows: int = 1_000_000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_clients < 1:
            raise ValueError(f"min_clients must be >= 1, got {self.min_clients}")

    def run_server(self, comm: Communicator) -> ServerResult:
        """Collect every client's training rows, fit the variant on their union."""
        replies = comm.send("train", {node: make_content() for node in comm.nodes()})
        tables, failures = rows_from_replies(replies, comm.schema, min_clients=self.min_clients, rows=(1, self.max_rows))
        for failure in failures:
            log.warning("client node %s left out: %s", failure.node, failure.reason)
        pooled = TabularData.concat([tables[node] for node in sorted(tables)])
        info: dict[str, Any] = {"variant": self.variant, "rows": {node: len(t) for node, t in tables.items()}}
        if self.variant == "exponentiated_gradient":
            mixture = fit_exponentiated_gradient(
                pooled, self.model, eps=self.eg_eps, max_iter=self.eg_max_iter, C=self.eg_C
            )
            info.update({"mixture_size": len(mixture.weights), "theta_layout": "[w_1..w_J, theta_1, ..., theta_J]"})
            theta = mixture.pack()
        else:
            theta = self.fit(pooled)
        return ServerResult(theta=theta, failures=failures, info=info)

    def train(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Upload the training rows."""
        return make_content(arrays={k: getattr(data.train, k).numpy() for k in ROW_ARRAYS})

    def evaluated_model(
        self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]
    ) -> tuple[LogisticModel, np.ndarray | LogisticMixture]:
        """The received model: θ, or for ``exponentiated_gradient`` the mixture it packs (whose
        counts are expected counts)."""
        theta = received_theta(content)
        if self.variant == "exponentiated_gradient":
            return self.model, LogisticMixture.unpack(theta, self.model.num_weights(data.test.num_features, data.test.num_groups))
        return self.model, theta
