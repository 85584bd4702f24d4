"""The paper's method as a federated plugin: one round trip of synthetic data (Algorithm 1).

Server → clients: the synthesis configuration. Clients → server: synthetic (x̂, ŝ, ŷ) only.
The server validates the replies and fits ℓ_r on their union, eq. (15), or, with ``server_rho`` > 0,
ℓ_r + server_rho/2·F² with the same fairness measure F on the union (the rows' own ŝ, ŷ; no extra
message).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
from flwr.app import RecordDict
from tqdm import tqdm

from fedsynth.core import LogisticModel, SynthesisConfig, fit_server_model, synthesize
from fedsynth.data.types import ClientPartition, TabularData
from fedsynth.methods.base import Communicator, FederatedMethod, ServerResult, config_of, make_content, received_theta
from fedsynth.methods.replies import ROW_ARRAYS, fit_without_culprits, rows_from_replies
from fedsynth.metrics import privacy_report, report_counts
from fedsynth.metrics.privacy import PRIVACY_KEYS
from fedsynth.privacy.budget import ClippedBudget
from fedsynth.privacy.synthesis import check_private_config, private_statement, private_synthesize
from fedsynth.progress import shown_as
from fedsynth.schema import from_mapping, to_mapping

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SynthesisRequest:
    """Step 1's message: the synthesis configuration, the seed (client ``c`` uses ``seed + c``) and
    the privacy settings (off by default; on: :func:`fedsynth.privacy.synthesis.private_synthesize`).

    It travels as one serialized mapping, ``{"request": <JSON of its fields>}`` in the message's
    config record, written by :meth:`to_config` and checked field by field by :meth:`from_config`
    (:func:`fedsynth.schema.from_mapping`). It comes with both messages a client receives,
    ``train`` and the harness's ``evaluate`` (:meth:`SingleShot.evaluation_config`): the client
    synthesizes and evaluates with this one value.
    """

    config: SynthesisConfig
    seed: int
    privacy: ClippedBudget = ClippedBudget()

    def to_config(self) -> dict[str, str]:
        """The message's config record."""
        return {"request": json.dumps(to_mapping(self), sort_keys=True)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SynthesisRequest:
        """Parse :meth:`to_config`'s record; ``ValueError`` names a missing or wrong field."""
        if "request" not in config:
            raise ValueError(f"a single_shot 'train' message needs config key 'request'; got {sorted(config)}")
        return from_mapping(cls, json.loads(str(config["request"])), "synthesis request")


@dataclass(frozen=True, kw_only=True)
class SingleShotSettings(SynthesisConfig):
    """single_shot's settings: every :class:`~fedsynth.core.SynthesisConfig` field (inherited, so
    a synthesis setting is written once, there) and the server's own. ``synthetic_size`` is an
    integer or ``"full"`` (N_s = N); ``server_rho`` is the server's fairness penalty on the pooled
    synthetic rows (0: the paper's eq. (15) server); ``seed`` seeds every client's synthesis
    (client ``c`` uses ``seed + c``); ``min_clients`` is the number of valid replies the server
    needs; ``max_synthetic_rows`` caps the rows one client may send; ``privacy`` is
    ``method.privacy`` (:class:`~fedsynth.privacy.budget.ClippedBudget`; ``epsilon`` null: off,
    today's synthesis bit for bit; set: every client synthesizes from one (ε, δ)-DP release of its
    statistics, and sends no privacy report of its rows with its test counts)."""

    synthetic_size: int | str | None = 200
    server_rho: float = 0.0
    seed: int = 0
    min_clients: int = 1
    max_synthetic_rows: int = 1_000_000
    privacy: ClippedBudget = ClippedBudget()

    def __post_init__(self) -> None:
        if isinstance(self.privacy, Mapping):  # as instantiate gives it
            object.__setattr__(self, "privacy", from_mapping(ClippedBudget, dict(self.privacy), "method.privacy"))
        size = self.synthetic_size
        if size == "full":
            object.__setattr__(self, "synthetic_size", None)
        elif size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise ValueError(f"synthetic_size must be an integer or 'full', got {size!r}")
        super().__post_init__()
        if not (math.isfinite(self.server_rho) and self.server_rho >= 0):
            raise ValueError(f"server_rho must be a finite number >= 0, got {self.server_rho}")

    def synthesis(self) -> SynthesisConfig:
        """The synthesis part of the settings (what a client receives)."""
        return SynthesisConfig(**{item.name: getattr(self, item.name) for item in fields(SynthesisConfig)})


class SingleShot(FederatedMethod):
    """Single-shot fair federated learning with synthetic data (Wu, Curtis & Robinson 2024),
    built from :class:`SingleShotSettings` (keyword arguments, as ``conf/method/single_shot.yaml``
    gives them)."""

    name = "single_shot"
    payload_arrays = ROW_ARRAYS
    evaluation_metrics = PRIVACY_KEYS
    settings_type = SingleShotSettings

    def __init__(self, **settings: Any) -> None:
        self.settings = SingleShotSettings(**settings)
        self.config = self.settings.synthesis()
        self.server_rho = self.settings.server_rho
        self.seed = self.settings.seed
        self.min_clients = self.settings.min_clients
        self.max_synthetic_rows = self.settings.max_synthetic_rows
        self.privacy = self.settings.privacy
        if self.privacy.enabled:
            check_private_config(self.config)

    @property
    def model(self) -> LogisticModel:
        """The logistic model of the synthesis config (λ_θ, ``fit_intercept``): the server's fit.
        The clients evaluate θ with the model of the request they received (:meth:`evaluate`)."""
        return self.config.model

    # ------------------------------------------------------------------ protocol messages
    def synthesis_request(self) -> SynthesisRequest:
        """Step 1 of the protocol: the synthesis configuration (and seed) every client receives."""
        return SynthesisRequest(config=self.config, seed=self.seed, privacy=self.privacy)

    def evaluation_config(self) -> dict[str, str]:
        """Step 4's config beside θ: the same synthesis request (the client evaluates with its
        ``fit_intercept`` and ``seed``)."""
        return self.synthesis_request().to_config()

    # ------------------------------------------------------------------ server and client
    def run_server(self, comm: Communicator) -> ServerResult:
        """Steps 1 and 3: request synthetic data from every client, validate each reply
        (:func:`~fedsynth.methods.replies.validate_rows`), fit eq. (15) on the valid ones (with the
        fairness penalty ``server_rho`` when it is > 0)."""
        request = self.synthesis_request().to_config()
        replies = comm.send("train", {node: make_content(config=request) for node in comm.nodes()})
        size = self.config.synthetic_size
        rows = (size, size) if size is not None else (1, self.max_synthetic_rows)
        tables, failures = rows_from_replies(replies, comm.schema, min_clients=self.min_clients, rows=rows)
        theta, dropped = fit_without_culprits(tables, self._fit, self.min_clients)
        failures += dropped
        for failure in failures:
            log.warning("client node %s left out: %s", failure.node, failure.reason)
        kept = {node: table for node, table in tables.items() if node not in {f.node for f in dropped}}
        info: dict[str, Any] = {"synthetic_rows": {node: len(table) for node, table in kept.items()}}
        if self.privacy.enabled:
            statement = private_statement(self.privacy).to_record()
            info["privacy"] = {str(node): statement for node in kept}
        return ServerResult(theta=theta, failures=failures, info=info)

    def _fit(self, tables: list[TabularData]) -> np.ndarray:
        """The server's model on the union of ``tables``, eq. (15) (with the fairness penalty
        ``server_rho`` when it is > 0)."""
        return fit_server_model(tables, self.model, rho=self.server_rho, fairness=self.config.measure).theta.numpy()

    def train(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Step 2: synthesize with the received :class:`SynthesisRequest` and reply (x̂, ŝ, ŷ) only
        (kept in ``state`` for the privacy report)."""
        request = SynthesisRequest.from_config(config_of(content))
        config, seed = request.config, request.seed + data.client_id
        progress = _progress_logger(data.client_id, config.k_max)
        if request.privacy.enabled:
            result, _ = private_synthesize(
                data.train, config, request.privacy, seed=seed, client_id=data.client_id, progress=progress
            )
        else:
            result = synthesize(data.train, config, seed=seed, progress=progress)
        synthetic = {k: getattr(result.data, k).numpy() for k in ROW_ARRAYS}
        state.update({f"synthetic_{k}": v for k, v in synthetic.items()})
        return make_content(arrays=synthetic)

    def evaluate(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Step 4: the test counts of the received θ with the model of the request that comes with
        it, and the privacy report of the client's synthetic data when it made some and privacy is
        off (the report measures the training rows, which a private run does not disclose; the
        engine's harness decides whether any of it leaves the client)."""
        request = SynthesisRequest.from_config(config_of(content))
        metrics = report_counts(request.config.model, received_theta(content), data, training=not request.privacy.enabled)
        if "synthetic_x" in state and not request.privacy.enabled:
            synthetic = TabularData(
                *(torch.as_tensor(state[f"synthetic_{k}"]) for k in ROW_ARRAYS),
                feature_names=data.train.feature_names,
            )
            metrics.update(privacy_report(synthetic, data.train, data.test, seed=request.seed))
        return make_content(metrics=metrics)


def _progress_logger(client_id: int, k_max: int) -> Any:
    """A progress callback for the outer iterations, as this process shows progress
    (:func:`fedsynth.progress.shown_as`): a tqdm bar per client, a log line every 10 %, or none."""
    mode = shown_as()
    if mode == "off":
        return lambda k, objective: None
    if mode == "bar":
        bar = tqdm(total=k_max, desc=f"client {client_id}", position=client_id, leave=False,
                   unit="step", mininterval=1.0, dynamic_ncols=True)

        def update(k: int, objective: float) -> None:
            bar.update(1)
            if (k + 1) % 25 == 0:
                bar.set_postfix_str(f"P={objective:.5f}", refresh=False)
            if k + 1 == k_max:
                bar.close()

        return update
    every = max(1, k_max // 10)

    def report(k: int, objective: float) -> None:
        if (k + 1) % every == 0 or k + 1 == k_max:
            log.info("client %d: outer iteration %d/%d, P = %.6f", client_id, k + 1, k_max, objective)

    return report
