"""The paper's method as a federated plugin: one round trip of synthetic data (Algorithm 1).

Server → clients: the synthesis configuration. Clients → server: synthetic (x̂, ŝ, ŷ), and with
``union_weights`` ``noisy`` (the default) or ``exact`` the client's size as Flower's
``num-examples`` (N + Laplace(1/ε) noise, ``size_epsilon``-differentially private, or N itself).
The server validates the replies and fits ℓ_r on their union, each client's rows weighing its
size (eq. (15) with ``union_weights: equal``, the paper's union), with the fairness penalty
``server_rho``/2·F² (or the target ``server_fairness_target``) of the same measure F on the union
(the rows' own ŝ, ŷ; no extra message). docs/method.md, "The union and the defaults".
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
from flwr.app import RecordDict
from tqdm import tqdm

from fedsynth.core import FairnessMeasure, LogisticModel, SynthesisConfig, fit_server_model, synthesize
from fedsynth.core.synthesis import default_synthetic_size, noisy_count
from fedsynth.core.targets import check_target
from fedsynth.data.types import ClientPartition, TabularData
from fedsynth.methods.base import (
    Communicator,
    FederatedMethod,
    ServerResult,
    config_of,
    make_content,
    metrics_of,
    received_theta,
)
from fedsynth.methods.replies import ROW_ARRAYS, fit_without_culprits, rows_from_replies
from fedsynth.metrics import privacy_report, report_counts
from fedsynth.metrics.privacy import PRIVACY_KEYS, moment_disclosure
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
    size_report: str = "none"
    """What the client tells of its size N in its reply: ``noisy`` (N + Laplace(1/``size_epsilon``)),
    ``exact`` or ``none`` (:data:`UNION_WEIGHTS`)."""
    size_epsilon: float = 1.0

    def to_config(self) -> dict[str, str]:
        """The message's config record."""
        return {"request": json.dumps(to_mapping(self), sort_keys=True)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SynthesisRequest:
        """Parse :meth:`to_config`'s record; ``ValueError`` names a missing or wrong field."""
        if "request" not in config:
            raise ValueError(f"a single_shot 'train' message needs config key 'request'; got {sorted(config)}")
        return from_mapping(cls, json.loads(str(config["request"])), "synthesis request")


UNION_WEIGHTS = {"noisy": "noisy", "exact": "exact", "equal": "none"}
"""``union_weights``: how the server weighs each client's rows in the union, and (the value) what the
client reports of its N for it: ``noisy`` (the default) weighs client c by N_c + Laplace(1/ε), an
ε-differentially private count (``size_epsilon``); ``exact`` by N_c; ``equal`` gives every client's
N_s rows the same weight and the client reports nothing (the paper's union)."""
AUTO_K_MAX = 1000
"""``k_max: auto`` with a fairness term on the client (ρ_o, ρ_s or ``fairness_target``): the paper's 1000
outer iterations at most (the stopping rule ``tolerance`` ends them sooner); without one, 0: the
moment-matched start is sent as it is (docs/method.md, "The union and the defaults")."""
NUM_EXAMPLES = "num-examples"
"""The metric a reply carries the client's (noisy) size in: Flower's weighting key, as FedAvg's."""


@dataclass(frozen=True, kw_only=True)
class SingleShotSettings(SynthesisConfig):
    """single_shot's settings: every :class:`~fedsynth.core.SynthesisConfig` field (inherited, so
    a synthesis setting is written once, there; the defaults here are ``conf/method/single_shot.yaml``'s,
    docs/method.md, "The union and the defaults") and the server's own.

    ``synthetic_size`` is an integer, ``"auto"`` (the rule of d,
    :func:`~fedsynth.core.synthesis.default_synthetic_size`, resolved for the server's feature count
    in :meth:`SingleShot.synthesis_request`) or ``"full"`` (N_s = N); ``k_max`` an integer or
    ``"auto"`` (:data:`AUTO_K_MAX` with a client fairness term, else 0). ``server_rho`` is the
    server's fairness penalty on the pooled synthetic rows (0: the paper's eq. (15) server),
    ``server_fairness_target`` the target that replaces it (with ``target_metric``, as
    ``fairness_target`` replaces ``rho_o``). ``union_weights`` (:data:`UNION_WEIGHTS`) and
    ``size_epsilon`` say how the server weighs each client's rows. ``seed`` seeds every client's
    synthesis (client ``c`` uses ``seed + c``); ``min_clients`` is the number of valid replies the
    server needs; ``max_synthetic_rows`` caps the rows one client may send; ``privacy`` is
    ``method.privacy`` (:class:`~fedsynth.privacy.budget.ClippedBudget`; ``epsilon`` null: off;
    set: every client synthesizes from one (ε, δ)-DP release of its statistics, and sends no
    privacy report of its rows with its test counts). Privacy on refuses the settings that send
    something outside that release (:class:`SingleShot`): the defaults' exact group moments
    (``group_gaussian``, ``keep_group_means``), a ``fairness_target`` searched on the rows, a size
    in the reply (``union_weights`` other than ``equal``)."""

    rho_o: float = 0.0
    synthetic_size: int | str | None = "auto"
    synthetic_labels: str = "noisy_proportional"
    init: str = "group_gaussian"
    keep_group_means: bool = True
    k_max: int | str = "auto"
    tolerance: float = 1e-4
    server_rho: float = 10.0
    server_fairness_target: float | None = None
    union_weights: str = "noisy"
    size_epsilon: float = 1.0
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
        elif size != "auto" and size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise ValueError(f"synthetic_size must be an integer, 'auto' or 'full', got {size!r}")
        if self.k_max == "auto":  # the outer iterations run when P has a fairness term to optimize
            fairness_term = self.rho_o > 0 or self.rho_s > 0 or self.fairness_target is not None
            object.__setattr__(self, "k_max", AUTO_K_MAX if fairness_term else 0)
        elif isinstance(self.k_max, (str, bool)) or not isinstance(self.k_max, int):
            raise ValueError(f"k_max must be an integer >= 0 or 'auto', got {self.k_max!r}")
        self.synthesis()  # SynthesisConfig's own checks of every synthesis field
        if not (math.isfinite(self.server_rho) and self.server_rho >= 0):
            raise ValueError(f"server_rho must be a finite number >= 0, got {self.server_rho}")
        check_target(self.server_fairness_target, self.target_metric)
        if self.union_weights not in UNION_WEIGHTS:
            raise ValueError(f"union_weights must be one of {sorted(UNION_WEIGHTS)}, got {self.union_weights!r}")
        if not (math.isfinite(self.size_epsilon) and self.size_epsilon > 0):
            raise ValueError(f"size_epsilon must be a finite number > 0, got {self.size_epsilon}")

    @property
    def auto_size(self) -> bool:
        """Whether N_s is ``synthetic_size: auto`` (resolved by :meth:`SingleShot.synthesis_request`)."""
        return self.synthetic_size == "auto"

    def synthesis(self) -> SynthesisConfig:
        """The synthesis part of the settings (what a client receives); ``synthetic_size: auto``
        left as N_s = N (None) until :meth:`SingleShot.synthesis_request` knows the feature count."""
        values = {item.name: getattr(self, item.name) for item in fields(SynthesisConfig)}
        if self.auto_size:
            values["synthetic_size"] = None
        return SynthesisConfig(**values)


class SingleShot(FederatedMethod):
    """Single-shot fair federated learning with synthetic data (Wu, Curtis & Robinson 2024),
    built from :class:`SingleShotSettings` (keyword arguments, as ``conf/method/single_shot.yaml``
    gives them)."""

    name = "single_shot"
    payload_arrays = ROW_ARRAYS
    evaluation_metrics = PRIVACY_KEYS + (
        "size_error", "group_mean_error", "group_covariance_error", "target_rho_o", "target_achieved"
    )
    settings_type = SingleShotSettings

    def __init__(self, **settings: Any) -> None:
        self.settings = SingleShotSettings(**settings)
        self.auto_size = self.settings.auto_size
        self.config = self.settings.synthesis()
        self.server_rho = self.settings.server_rho
        self.server_fairness_target = self.settings.server_fairness_target
        self.union_weights = self.settings.union_weights
        self.size_epsilon = self.settings.size_epsilon
        self.seed = self.settings.seed
        self.min_clients = self.settings.min_clients
        self.max_synthetic_rows = self.settings.max_synthetic_rows
        self.privacy = self.settings.privacy
        if self.privacy.enabled:
            # auto resolves to an integer of d alone (:meth:`synthesis_request`): checked as one
            check_private_config(
                dataclasses.replace(self.config, synthetic_size=default_synthetic_size(1)) if self.auto_size else self.config
            )
            if self.union_weights != "equal":
                raise ValueError(
                    f"union_weights={self.union_weights!r} sends the client's size outside the privacy budget: "
                    "use union_weights=equal with privacy on (method=single_shot_paper)"
                )

    @property
    def model(self) -> LogisticModel:
        """The logistic model of the synthesis config (λ_θ, ``fit_intercept``): the server's fit.
        The clients evaluate θ with the model of the request they received (:meth:`evaluate`)."""
        return self.config.model

    def disclosure(self) -> dict[str, str]:
        """What each client's one reply tells the server besides its rows' count, by what it is about
        (``info.disclosure`` of a run, shown beside the ledger's client statistics in the reports;
        measured per client by :func:`~fedsynth.metrics.privacy.moment_disclosure` and
        :func:`~fedsynth.metrics.privacy.group_disclosure`)."""
        if self.privacy.enabled:
            return {"everything": "one (ε, δ)-DP release of the client's statistics (info.privacy); nothing exact"}
        config = self.config
        if config.init == "group_gaussian":
            moments = "exact: each (s, y) group's feature mean and covariance (groups under d + 1 rows shrunk towards the client's)"
        elif config.keep_group_means:
            moments = "exact: each (s, y) group's feature mean (groups under d + 1 rows shrunk towards the client's)"
        elif config.init == "subsample":
            moments = "real rows: the start copies the client's rows"
        else:
            moments = "the features' means and standard deviations (the start), then what the optimized rows reveal"
        counts = {
            "noisy_proportional": f"the (s, y) shares of ε-DP counts (Laplace, ε = {config.label_epsilon:g})",
            "proportional": "the (s, y) shares, exact to 1/N_s",
            "balanced": "nothing (25 % per (s, y) pair)",
            "copy": "the (s, y) counts, exact",
        }[config.synthetic_labels]
        size = {
            "noisy": f"N + Laplace(1/ε), ε = {self.size_epsilon:g} (num-examples)",
            "exact": "N, exact (num-examples)",
            "equal": "N, exact (N_s = N)" if config.synthetic_size is None and not self.auto_size else "nothing",
        }[self.union_weights]
        return {"group_moments": moments, "group_counts": counts, "size": size}

    # ------------------------------------------------------------------ protocol messages
    def synthesis_request(self, num_features: int | None = None) -> SynthesisRequest:
        """Step 1 of the protocol: the synthesis configuration (and seed) every client receives;
        ``synthetic_size: auto`` resolved for data of ``num_features`` encoded features (the
        server's own :class:`~fedsynth.methods.base.ReplySchema`)."""
        config = self.config
        if self.auto_size and num_features is not None:
            config = dataclasses.replace(config, synthetic_size=default_synthetic_size(num_features))
        return SynthesisRequest(
            config=config,
            seed=self.seed,
            privacy=self.privacy,
            size_report=UNION_WEIGHTS[self.union_weights],
            size_epsilon=self.size_epsilon,
        )

    def evaluation_config(self) -> dict[str, str]:
        """Step 4's config beside θ: the same synthesis request (the client evaluates with its
        ``fit_intercept`` and ``seed``)."""
        return self.synthesis_request().to_config()

    def fairness_measures(self) -> dict[str, FairnessMeasure]:
        """The measure under ``fairness`` while a client or server penalty or target uses it."""
        settings = self.settings
        targets = (settings.fairness_target, settings.server_fairness_target) != (None, None)
        used = (settings.rho_o, settings.rho_s, settings.server_rho) != (0.0, 0.0, 0.0) or targets
        return {"fairness": self.config.measure} if used else {}

    def check_groups(self, num_groups: int) -> None:
        """:meth:`FederatedMethod.check_groups`, and for k > 2 groups no privacy (its release holds
        the statistics of two groups)."""
        super().check_groups(num_groups)
        if num_groups > 2 and self.privacy.enabled:
            raise ValueError(
                f"dataset.sensitive: {num_groups} groups, but method {self.name!r} with method.privacy.epsilon set "
                "takes a binary sensitive attribute only; set method.privacy.epsilon=null or give dataset.sensitive.privileged"
            )

    # ------------------------------------------------------------------ server and client
    def run_server(self, comm: Communicator) -> ServerResult:
        """Steps 1 and 3: request synthetic data from every client, validate each reply
        (:func:`~fedsynth.methods.replies.validate_rows`), fit eq. (15) on the valid ones (with the
        fairness penalty ``server_rho`` when it is > 0)."""
        request = self.synthesis_request(comm.schema.num_features)
        replies = comm.send("train", {node: make_content(config=request.to_config()) for node in comm.nodes()})
        size = request.config.synthetic_size
        rows = (size, size) if size is not None else (1, self.max_synthetic_rows)
        weighted = request.size_report != "none"
        tables, failures = rows_from_replies(
            replies, comm.schema, min_clients=self.min_clients, rows=rows, size_metric=NUM_EXAMPLES if weighted else None
        )
        sizes = {node: float(metrics_of(replies[node])[NUM_EXAMPLES]) for node in tables} if weighted else None
        fits: dict[tuple[int, ...], Any] = {}

        def fit(selection: Mapping[int, TabularData]) -> np.ndarray:
            nodes = sorted(selection)
            fits[tuple(nodes)] = fit_server_model(
                [selection[node] for node in nodes],
                self.model,
                sizes=None if sizes is None else [sizes[node] for node in nodes],
                rho=self.server_rho,
                fairness=self.config.measure,
                target=self.server_fairness_target,
                target_metric=self.config.target_metric,
            )
            return fits[tuple(nodes)].theta.numpy()

        theta, dropped = fit_without_culprits(tables, fit, self.min_clients)
        failures += dropped
        for failure in failures:
            log.warning("client node %s left out: %s", failure.node, failure.reason)
        kept = {node: table for node, table in tables.items() if node not in {f.node for f in dropped}}
        server = fits[tuple(sorted(kept))]
        info: dict[str, Any] = {"synthetic_rows": {node: len(table) for node, table in kept.items()}}
        if sizes is not None:
            info["client_sizes"] = {node: sizes[node] for node in kept}
        info["server_rho"] = server.rho
        info["disclosure"] = self.disclosure()
        if server.achieved is not None:
            info.update({"server_target_achieved": server.achieved, "server_target_met": server.met})
        if self.privacy.enabled:
            statement = private_statement(self.privacy).to_record()
            info["privacy"] = {str(node): statement for node in kept}
        return ServerResult(theta=theta, failures=failures, info=info)

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
        if config.fairness_target is not None:
            state["target"] = np.array([result.history.rho_o, result.history.target_achieved])
        if request.size_report == "none":
            return make_content(arrays=synthetic)
        size = float(len(data.train))
        if request.size_report == "noisy":
            size = noisy_count(len(data.train), request.size_epsilon, seed=seed)
        state["reported_size"] = np.array([size])
        return make_content(arrays=synthetic, metrics={NUM_EXAMPLES: size})

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
                num_groups=data.train.num_groups,
            )
            metrics.update(privacy_report(synthetic, data.train, data.test, seed=request.seed))
            reported = state.get("reported_size")
            metrics.update(moment_disclosure(synthetic, data.train, None if reported is None else float(reported[0])))
        if "target" in state:
            metrics.update({"target_rho_o": float(state["target"][0]), "target_achieved": float(state["target"][1])})
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
            log.info("client %d: outer iteration %d/%d, P = %.6g", client_id, k + 1, k_max, objective)

    return report
