"""One-shot DP sufficient statistics: the strongest one-shot private anchor for a linear model.

Server → clients: the method's settings. Clients → server, once: the noisy sums of
:func:`fedsynth.privacy.statistics.release_statistics` (Σ āāᵀ, Σ yā, and Σ ysā for the
equal-opportunity covariance; arrays ``second``, ``label``, ``label_group``), (ε, δ)-DP per client.
The server adds every client's sums (:meth:`NoisyStatistics.pooled`) and solves the quadratically
approximated fair problem in closed form (:func:`fedsynth.privacy.statistics.surrogate_fit`):
argmin_θ ℓ̃(θ) + λ_θ/(2n²)‖θ‖² + ρ/2·F(θ)², ℓ̃ the second-order expansion of the logistic loss at 0
and F the covariance (eq. 2) of the pooled rows. These are the very statistics the private
``single_shot`` synthesizes from, so the two differ only in what the server does with them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from flwr.app import RecordDict

from fedsynth.core import LogisticModel
from fedsynth.data.types import ClientPartition
from fedsynth.methods._baselines import cast_fields
from fedsynth.methods.base import Communicator, FederatedMethod, ServerResult, arrays_of, config_of, make_content
from fedsynth.methods.base import metrics_of, usable_replies
from fedsynth.privacy.accounting import PrivacyStatement, Release, noise_multiplier
from fedsynth.privacy.budget import ClippedBudget, required_budget
from fedsynth.privacy.statistics import STATISTICS_MEASURES, NoisyStatistics, release_blocks, release_statistics
from fedsynth.privacy.statistics import surrogate_fit

log = logging.getLogger(__name__)

STATISTICS_ARRAYS = ("second", "label", "label_group")
"""The arrays of a client's release (``label_group`` only for the equal-opportunity covariance)."""


@dataclass(kw_only=True, eq=False)
class DPSufficientStatistics(FederatedMethod):
    """Noisy sufficient statistics, released once per client; the server solves the fair problem.

    Args:
        privacy: ``method.privacy`` (:class:`~fedsynth.privacy.budget.ClippedBudget`: ``epsilon``
            (required: this method has no non-private mode), ``delta``, ``accountant``, ``clip``
            (the L2 bound of a row's encoded features), ``noise_seed``).
        rho: the server's fairness penalty ρ on F (the front's knob).
        fairness: F, ``covariance`` (eq. 2) or ``eo_covariance``.
        lambda_theta: λ_θ of ℓ_r.
        fit_intercept: model with an intercept column.
        min_clients: valid replies the server needs.
    """

    name = "dp_suffstats"
    binary_sensitive_only = True
    payload_arrays: ClassVar[tuple[str, ...]] = STATISTICS_ARRAYS
    privacy: Mapping[str, Any] = field(default_factory=dict)
    rho: float = 10.0
    fairness: str = "covariance"
    lambda_theta: float = 1e-3
    fit_intercept: bool = True
    min_clients: int = 1

    def __post_init__(self) -> None:
        cast_fields(self)
        self.budget = required_budget(ClippedBudget, self.privacy, "dp_suffstats")
        if self.fairness not in STATISTICS_MEASURES:
            raise ValueError(f"fairness must be one of {STATISTICS_MEASURES} (linear in θ), got {self.fairness!r}")
        if not (math.isfinite(self.rho) and self.rho >= 0):
            raise ValueError(f"rho must be a finite number >= 0, got {self.rho}")
        if self.min_clients < 1:
            raise ValueError(f"min_clients must be >= 1, got {self.min_clients}")

    @property
    def model(self) -> LogisticModel:
        """The logistic model θ is laid out for (``lambda_theta``, ``fit_intercept``)."""
        return LogisticModel(lambda_theta=self.lambda_theta, fit_intercept=self.fit_intercept)

    @property
    def equal_opportunity(self) -> bool:
        """Whether the release holds Σ ysā (the equal-opportunity covariance needs it)."""
        return self.fairness == "eo_covariance"

    def statement(self) -> PrivacyStatement:
        """What each client spends: one Gaussian release of the statistics."""
        budget = self.budget
        z = noise_multiplier(budget.epsilon, budget.delta, accountant=budget.accountant)
        return PrivacyStatement(budget, (Release("sufficient statistics", z),))

    # ------------------------------------------------------------------ server
    def validate_release(self, content: RecordDict, width: int) -> None:
        """A reply: exactly the release's arrays (``second`` width × width, ``label``
        and, for eo_covariance, ``label_group`` of length width), finite float64, nothing else."""
        arrays = arrays_of(content)
        expected = set(STATISTICS_ARRAYS[: release_blocks(self.equal_opportunity)])
        if set(arrays) != expected or config_of(content) or metrics_of(content):
            raise ValueError(f"expected exactly arrays {sorted(expected)}, got {sorted(arrays)}")
        for name, array in arrays.items():
            shape = (width, width) if name == "second" else (width,)
            if array.shape != shape or array.dtype != np.float64 or not np.isfinite(array).all():
                raise ValueError(f"{name} must hold {shape} finite float64 numbers, got {array.shape} {array.dtype}")

    def run_server(self, comm: Communicator) -> ServerResult:
        """One exchange: every client's release; the fair surrogate fit on their sum."""
        width = comm.schema.num_features + 2
        request = make_content(config={"request": "release"})
        replies = comm.send("train", {node: request for node in comm.nodes()})
        valid, failures = usable_replies(replies, lambda c: self.validate_release(c, width), self.min_clients)
        for failure in failures:
            log.warning("client node %s left out: %s", failure.node, failure.reason)
        releases = [
            NoisyStatistics(
                **{name: torch.from_numpy(array) for name, array in arrays_of(valid[node]).items()},
                second_noise_std=self._noise_std(),
            )
            for node in sorted(valid)
        ]
        theta = surrogate_fit(
            NoisyStatistics.pooled(releases),
            rho=self.rho,
            measure=self.fairness,
            lambda_theta=self.lambda_theta,
            fit_intercept=self.fit_intercept,
        )
        statement = self.statement().to_record()
        return ServerResult(
            theta=theta.numpy(), failures=failures, info={"privacy": {str(node): statement for node in sorted(valid)}}
        )

    def _noise_std(self) -> float:
        """The noise on each entry of a client's Σ āāᵀ (public: from ε, δ and the clip)."""
        z = self.statement().releases[0].noise_multiplier
        return z * math.sqrt(release_blocks(self.equal_opportunity)) * (self.budget.clip**2 + 2.0)

    # ------------------------------------------------------------------ client
    def train(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Release the noisy statistics of the client's training rows, once."""
        budget = self.budget
        stats = release_statistics(
            data.train,
            clip=budget.clip,
            noise_multiplier=self.statement().releases[0].noise_multiplier,
            generator=budget.noise_generator(data.client_id),
            equal_opportunity=self.equal_opportunity,
        )
        arrays = {"second": stats.second.numpy(), "label": stats.label.numpy()}
        if stats.label_group is not None:
            arrays["label_group"] = stats.label_group.numpy()
        return make_content(arrays=arrays)
