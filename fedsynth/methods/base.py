"""The contract between a federated method and the engines that run it.

A method is one class with a server side and a client side. The server side drives the protocol
through a :class:`Communicator` (an engine: in-process, Flower simulation or Flower deployment);
the client side answers one message at a time. Messages carry a :class:`Payload` (named arrays,
config values, metrics), which engines serialize as Flower ``RecordDict`` objects.

Adding a method is a new module with a :class:`FederatedMethod` subclass and a config file in
``conf/method/`` whose ``_target_`` names it; the engines and the Flower apps need no edit.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Union

import numpy as np

from fedsynth.data.types import ClientPartition

ConfigValue = Union[int, float, str, bool]


@dataclass
class Payload:
    """The content of one message: named arrays, configuration values and metrics."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict[str, ConfigValue] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientFailure:
    """A client that did not give a usable reply: crashed, timed out or sent an invalid payload."""

    node: int
    reason: str


class NotEnoughClients(RuntimeError):
    """Fewer than ``min_clients`` clients gave a valid reply; the message gives every reason."""


@dataclass(frozen=True)
class ReplySchema:
    """What the server accepts in a client's reply, from the server's own experiment and never
    from the replies: ``num_features`` (d, the encoded feature count of the dataset spec) and
    ``max_abs_x`` (the largest |x̂| accepted, in encoded units, ``federation.max_abs_x``)."""

    num_features: int
    max_abs_x: float


class Communicator(Protocol):
    """The server side's view of the federation. Engines implement it."""

    schema: ReplySchema
    """What a valid reply may hold (see :class:`ReplySchema`)."""

    def nodes(self) -> list[int]:
        """Identifiers of the connected client nodes, sorted."""

    def send(
        self, action: str, payloads: Mapping[int, Payload], timeout: float | None = None
    ) -> dict[int, Payload | ClientFailure]:
        """Send one message per node (``action`` is the Flower message type, e.g. ``"train"``)
        and return every node's reply, or the reason it has none."""


@dataclass
class ServerResult:
    """What a method's server side produced: the global model and who took part."""

    theta: np.ndarray
    failures: list[ClientFailure] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class FederatedMethod(abc.ABC):
    """A federated learning method: the server's protocol and the client's message handler."""

    name: str = "method"
    payload_arrays: tuple[str, ...] = ()
    """Names of the arrays that are the method's payload (the model, or data rows); every other
    entry of a client's reply is a *client statistic* in the server's ledger."""
    evaluation_metrics: tuple[str, ...] = ()
    """Metric keys the client's ``evaluate`` reply may carry besides the test counts."""

    @abc.abstractmethod
    def run_server(self, comm: Communicator) -> ServerResult:
        """Carry out the method's protocol from the server and return the global model."""

    @abc.abstractmethod
    def handle_client(
        self, action: str, payload: Payload, data: ClientPartition, state: dict[str, np.ndarray]
    ) -> Payload:
        """Answer one message on a client. ``data`` is the client's private partition; ``state``
        persists across this client's messages within one run (arrays only)."""

    def evaluation_config(self) -> dict[str, Any]:
        """The config the harness sends with θ in its ``evaluate`` message (none by default; a
        method whose clients evaluate with a configuration they received sends it again here)."""
        return {}


def usable_replies(
    replies: Mapping[int, Payload | ClientFailure],
    validate: Any,
    min_clients: int,
) -> tuple[dict[int, Payload], list[ClientFailure]]:
    """Split replies into valid payloads and failures; fail when fewer than ``min_clients`` are valid.

    ``validate(payload)`` raises ``ValueError`` with a reason for an invalid payload. Failures are
    returned by node and reason so the caller can report them.
    """
    valid: dict[int, Payload] = {}
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
