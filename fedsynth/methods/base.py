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


class Communicator(Protocol):
    """The server side's view of the federation. Engines implement it."""

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

    @abc.abstractmethod
    def run_server(self, comm: Communicator) -> ServerResult:
        """Carry out the method's protocol from the server and return the global model."""

    @abc.abstractmethod
    def handle_client(
        self, action: str, payload: Payload, data: ClientPartition, state: dict[str, np.ndarray]
    ) -> Payload:
        """Answer one message on a client. ``data`` is the client's private partition; ``state``
        persists across this client's messages within one run (arrays only)."""


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
        detail = "; ".join(f"node {f.node}: {f.reason}" for f in failures) or "no replies"
        raise RuntimeError(
            f"only {len(valid)} of {len(replies)} clients gave a valid reply, "
            f"min_clients={min_clients} needed ({detail})"
        )
    return valid, failures
