"""The contract between a federated method and the engines that run it.

A method is one class with a server side and a client side. The server side drives the protocol
through a :class:`Communicator` (an engine: in-process, Flower simulation or Flower deployment).
The client side is one handler per Flower message type, ``train``, ``evaluate`` and ``query``
(:data:`MESSAGE_TYPES`), each ``handler(content, data, state) -> RecordDict``: the Flower
ClientApp's ``@app.<type>`` function hands the message to
:func:`fedsynth.federated.client_logic.answer_message`, which calls ``method.<type>``. A method
defines the handlers it answers; the others reply with an error naming the method and the type.

Message contents are Flower ``RecordDict`` objects end to end, from the method that writes one to
the method that reads it: an ``ArrayRecord`` named ``"arrays"`` (named numpy arrays), a
``ConfigRecord`` named ``"config"`` and a ``MetricRecord`` named ``"metrics"``, each present only
when not empty (:func:`make_content`; read them with :func:`arrays_of`, :func:`config_of`,
:func:`metrics_of`). These are plain data containers; a method never sees Flower's runtime
objects (``Message``, ``Context``, ``Grid``), so engines and tests drive it without Flower.

Adding a method is a new module with a :class:`FederatedMethod` subclass and a config file in
``conf/method/`` whose ``_target_`` names it; the engines and the Flower apps need no edit.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Protocol, Union

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedsynth.core import FairnessMeasure, LogisticMixture, LogisticModel
from fedsynth.data.types import ClientPartition
from fedsynth.metrics import report_counts
from fedsynth.privacy.budget import PrivacyBudget

ConfigValue = Union[int, float, str, bool]

MESSAGE_TYPES = ("train", "evaluate", "query")
"""The Flower message types a method may send and answer: those the ClientApp registers."""
EVALUATE = "evaluate"
"""The message type of the harness's θ delivery (array :data:`THETA`); clients evaluate θ."""
THETA = "theta"
"""The array name of a model θ in a message (the harness's ``evaluate``, FedAvg's rounds)."""

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
CONTENT_RECORDS = (ARRAYS, CONFIG, METRICS)
"""The records a method's message content may hold, by name."""


def make_content(
    arrays: Mapping[str, np.ndarray] | None = None,
    config: Mapping[str, ConfigValue] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> RecordDict:
    """A message content: ``arrays`` as the ``"arrays"`` ArrayRecord, ``config`` as the
    ``"config"`` ConfigRecord, ``metrics`` as the ``"metrics"`` MetricRecord; empty parts are
    left out, so ``make_content()`` is an empty message."""
    content = RecordDict()
    if arrays:
        content[ARRAYS] = ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in arrays.items()})
    if config:
        content[CONFIG] = ConfigRecord(dict(config))
    if metrics:
        content[METRICS] = MetricRecord(dict(metrics))
    return content


def arrays_of(content: RecordDict) -> dict[str, np.ndarray]:
    """The named arrays of a content's ``"arrays"`` record (none when it has no such record)."""
    return {name: array.numpy() for name, array in content.array_records[ARRAYS].items()} if ARRAYS in content else {}


def config_of(content: RecordDict) -> dict[str, Any]:
    """The values of a content's ``"config"`` record (none when it has no such record)."""
    return dict(content.config_records[CONFIG]) if CONFIG in content else {}


def metrics_of(content: RecordDict) -> dict[str, Any]:
    """The values of a content's ``"metrics"`` record (none when it has no such record)."""
    return dict(content.metric_records[METRICS]) if METRICS in content else {}


def received_theta(content: RecordDict) -> np.ndarray:
    """The model θ a message delivers (array :data:`THETA`), as float64."""
    return np.asarray(arrays_of(content)[THETA], dtype=np.float64)


@dataclass(frozen=True)
class ClientFailure:
    """A client that did not give a usable reply: crashed, timed out or sent an invalid payload."""

    node: int
    reason: str


class UnansweredMessage(ValueError):
    """A message of a type the method has no handler for; one line naming both."""

    def __init__(self, method: str, message_type: str) -> None:
        super().__init__(f"method {method!r} does not answer {message_type!r} messages")


class NotEnoughClients(RuntimeError):
    """Fewer than ``min_clients`` clients gave a valid reply; the message gives every reason."""


@dataclass(frozen=True)
class ReplySchema:
    """What the server accepts in a client's reply, from the server's own experiment and never
    from the replies: ``num_features`` (d, the encoded feature count of the dataset spec),
    ``max_abs_x`` (the largest |x̂| accepted, in encoded units, ``federation.max_abs_x``) and
    ``num_groups`` (k, the groups of the spec's sensitive attribute: ŝ ∈ {0, .., k−1})."""

    num_features: int
    max_abs_x: float
    num_groups: int = 2


class Communicator(Protocol):
    """The server side's view of the federation. Engines implement it."""

    schema: ReplySchema
    """What a valid reply may hold (see :class:`ReplySchema`)."""

    def nodes(self) -> list[int]:
        """Identifiers of the connected client nodes, sorted."""

    def send(
        self, message_type: str, contents: Mapping[int, RecordDict], timeout: float | None = None
    ) -> dict[int, RecordDict | ClientFailure]:
        """Send ``contents[node]`` to each node as a message of ``message_type`` (one of
        :data:`MESSAGE_TYPES`) and return every node's reply content, or the reason it has none
        (a reply holding records other than :data:`CONTENT_RECORDS` is an invalid payload)."""


@dataclass
class ServerResult:
    """What a method's server side produced: the global model and who took part."""

    theta: np.ndarray
    failures: list[ClientFailure] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class FederatedMethod(abc.ABC):
    """A federated learning method: the server's protocol and one client handler per message type.

    Every handler takes the message ``content`` (a ``RecordDict``), ``data``, the client's private
    partition, and ``state``, a dict of arrays that persists across this client's messages within
    one run, and returns the reply content (a ``RecordDict``, see :func:`make_content`).
    """

    name: str = "method"
    payload_arrays: tuple[str, ...] = ()
    """Names of the arrays that are the method's payload (the model, or data rows); every other
    entry of a client's reply is a *client statistic* in the server's ledger."""
    evaluation_metrics: tuple[str, ...] = ()
    """Metric keys the client's ``evaluate`` reply may carry besides the test counts."""
    model: LogisticModel
    """The logistic model the clients evaluate θ with (by default; see :meth:`evaluated_model`)."""
    binary_sensitive_only: ClassVar[bool] = False
    """Whether the method takes a binary sensitive attribute only (its protocol or its privacy
    release counts two groups): :meth:`check_groups` refuses k > 2 groups."""

    def check_groups(self, num_groups: int) -> None:
        """Raise ``ValueError`` with one line naming the config key and the fix when the method
        cannot run on a sensitive attribute of ``num_groups`` groups: a method that takes a binary
        attribute only (:attr:`binary_sensitive_only`), or a fairness measure of two groups among
        :meth:`fairness_measures` (the message names its k-group counterpart). Binary attributes
        always pass."""
        if num_groups == 2:
            return
        if self.binary_sensitive_only:
            raise ValueError(
                f"dataset.sensitive: {num_groups} groups, but method {self.name!r} takes a binary sensitive attribute "
                "only; give dataset.sensitive.privileged (two groups) or use single_shot, fedavg or centralized"
            )
        for key, measure in self.fairness_measures().items():
            if measure.many_groups != measure.name:
                fix = f"use method.{key}={measure.many_groups} (its k-group form)" if measure.many_groups else (
                    f"use a measure of k groups (method.{key}=group_covariance, dp_largest_gap, ...)"
                )
                raise ValueError(
                    f"method.{key}={measure.name}: a measure of two groups, but dataset.sensitive has {num_groups} "
                    f"groups; {fix}"
                )

    def fairness_measures(self) -> dict[str, FairnessMeasure]:
        """The fairness measures this run's settings use, by config key (none by default; a
        method with a fairness penalty or target names its measure while a weight or target
        makes it count)."""
        return {}

    @abc.abstractmethod
    def run_server(self, comm: Communicator) -> ServerResult:
        """Carry out the method's protocol from the server and return the global model."""

    def train(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Answer a ``train`` message (a method that sends them defines it)."""
        raise UnansweredMessage(self.name, "train")

    def query(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Answer a ``query`` message (a method that sends them defines it)."""
        raise UnansweredMessage(self.name, "query")

    def evaluate(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Answer the harness's ``evaluate`` message (θ in array :data:`THETA`, with
        :meth:`evaluation_config`): the counts of :meth:`evaluated_model` on the client's test
        data and, unless :meth:`private_training_rows`, its training rows' label counts
        (:func:`~fedsynth.metrics.report_counts`), in the ``"metrics"`` record."""
        model, theta = self.evaluated_model(content, data, state)
        return make_content(metrics=report_counts(model, theta, data, training=not self.private_training_rows(content)))

    def private_training_rows(self, content: RecordDict) -> bool:
        """Whether this run's clients hold their training rows under a differential-privacy
        guarantee: then the harness report carries no count of them (the constant classifier takes
        the test rows' majority). By default, whether the method has an enabled privacy
        ``budget`` (:class:`~fedsynth.privacy.budget.PrivacyBudget`, as the ``dp_*`` methods do)."""
        budget = getattr(self, "budget", None)
        return isinstance(budget, PrivacyBudget) and budget.enabled

    def evaluated_model(
        self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]
    ) -> tuple[LogisticModel, np.ndarray | LogisticMixture]:
        """The model :meth:`evaluate` measures: :attr:`model` with the received θ (a method whose
        θ is laid out otherwise, or that evaluates a model of its own, overrides this)."""
        return self.model, received_theta(content)

    def evaluation_config(self) -> dict[str, Any]:
        """The config the harness sends with θ in its ``evaluate`` message (none by default; a
        method whose clients evaluate with a configuration they received sends it again here)."""
        return {}


def usable_replies(
    replies: Mapping[int, RecordDict | ClientFailure],
    validate: Any,
    min_clients: int,
) -> tuple[dict[int, RecordDict], list[ClientFailure]]:
    """Split replies into valid contents and failures; fail when fewer than ``min_clients`` are valid.

    ``validate(content)`` raises ``ValueError`` with a reason for an invalid payload. Failures are
    returned by node and reason so the caller can report them.
    """
    valid: dict[int, RecordDict] = {}
    failures: list[ClientFailure] = []
    for node in sorted(replies):
        reply = replies[node]
        if isinstance(reply, ClientFailure):
            failures.append(reply)
            continue
        try:
            validate(reply)
        except ValueError as err:
            failures.append(ClientFailure(node, f"invalid payload: {err}"))
            continue
        valid[node] = reply
    if len(valid) < min_clients:
        raise NotEnoughClients(
            f"only {len(valid)} of {len(replies)} clients gave a valid reply, "
            f"min_clients={min_clients} needed ({failure_summary(failures) or 'no replies'})"
        )
    return valid, failures


def failure_summary(failures: list[ClientFailure]) -> str:
    """Failures grouped by reason, each reason once with the nodes it hit:
    ``"nodes 1, 2: <reason>; node 3: <reason>"``."""
    nodes_by_reason: dict[str, list[int]] = {}
    for failure in failures:
        nodes_by_reason.setdefault(failure.reason, []).append(failure.node)
    return "; ".join(
        f"{'nodes' if len(nodes) > 1 else 'node'} {', '.join(map(str, sorted(nodes)))}: {reason}"
        for reason, nodes in nodes_by_reason.items()
    )
