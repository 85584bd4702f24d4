"""The server side of every engine: run the method's protocol, deliver θ, collect the report.

An engine supplies a :class:`Transport` (Flower's ``Grid`` in the ServerApp, direct calls in the
in-process engine) that moves ``RecordDict`` contents to nodes and back. Everything else is here
and shared: :class:`MeasuredCommunicator` gives the method its
:class:`~fedsynth.methods.base.Communicator` and measures every message; :func:`run_experiment`
is the harness around the method.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Mapping, Protocol

import numpy as np
from flwr.app import RecordDict

from fedsynth.federated.client_logic import EVALUATE
from fedsynth.federated.messages import (
    HARNESS,
    payload_from_record,
    payload_to_record,
    record_nbytes,
)
from fedsynth.federated.outcome import RunOutcome
from fedsynth.io import jsonable
from fedsynth.methods import ClientFailure, Payload, build_method
from fedsynth.metrics import metrics_from_counts, sum_counts
from fedsynth.metrics.fairness import COUNT_KEYS

MESSAGE_TYPES = ("train", "evaluate", "query")
"""Message types a method may send: the three categories the Flower ClientApp registers."""


class Transport(Protocol):
    """Moves message contents between the server and the client nodes (one per engine)."""

    def nodes(self) -> list[int]:
        """Ids of the connected client nodes, sorted."""

    def exchange(
        self, action: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, RecordDict | ClientFailure]:
        """Send ``contents[node]`` to each node as a message of type ``action``; return every
        node's reply content or a :class:`ClientFailure` (``"crashed: ..."``,
        ``"no reply within ... s"``), waiting at most ``timeout`` seconds in all."""


class MeasuredCommunicator:
    """The method's :class:`~fedsynth.methods.base.Communicator` over a :class:`Transport`.

    Converts payloads to and from ``RecordDict``, applies the default timeout
    (``federation.timeout_s``), prefixes failure reasons with the message type, and records the
    bytes of every message per node and per message type, and every exchange.
    """

    def __init__(self, transport: Transport, default_timeout: float) -> None:
        self._transport = transport
        self._default_timeout = default_timeout
        self.bytes_down: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.bytes_up: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.sends: list[dict[str, Any]] = []

    def nodes(self) -> list[int]:
        """Ids of the connected client nodes, sorted."""
        return sorted(self._transport.nodes())

    def exchange(
        self, action: str, contents: Mapping[int, RecordDict], timeout: float | None = None
    ) -> dict[int, RecordDict | ClientFailure]:
        """One measured exchange of raw contents (the harness uses it directly)."""
        if action not in MESSAGE_TYPES:
            raise ValueError(f"message type {action!r} is not one of {MESSAGE_TYPES}")
        down = {node: record_nbytes(content) for node, content in contents.items()}
        start = time.perf_counter()
        replies = self._transport.exchange(
            action, contents, self._default_timeout if timeout is None else timeout
        )
        seconds = time.perf_counter() - start
        up = {node: record_nbytes(reply) for node, reply in replies.items() if isinstance(reply, RecordDict)}
        for node, size in down.items():
            self.bytes_down[node][action] += size
        for node, size in up.items():
            self.bytes_up[node][action] += size
        self.sends.append(
            {
                "action": action,
                "nodes": len(contents),
                "replies": len(up),
                "seconds": seconds,
                "bytes_down": sum(down.values()),
                "bytes_up": sum(up.values()),
            }
        )
        return {
            node: ClientFailure(node, f"{action}: {reply.reason}")
            if isinstance(reply, ClientFailure)
            else reply
            for node, reply in sorted(replies.items())
        }

    def send(
        self, action: str, payloads: Mapping[int, Payload], timeout: float | None = None
    ) -> dict[int, Payload | ClientFailure]:
        """Send one payload per node and return every node's reply payload or failure."""
        replies = self.exchange(
            action, {node: payload_to_record(payload) for node, payload in payloads.items()}, timeout
        )
        return {
            node: reply if isinstance(reply, ClientFailure) else payload_from_record(reply)
            for node, reply in replies.items()
        }


def run_experiment(experiment: Mapping[str, Any], transport: Transport, engine: str) -> RunOutcome:
    """Run one experiment's server side: the method's protocol, then θ to every client.

    Raises whatever the method raises (e.g. ``RuntimeError`` when fewer than
    ``federation.min_clients`` clients gave a usable reply).
    """
    federation = experiment["federation"]
    comm = MeasuredCommunicator(transport, default_timeout=float(federation["timeout_s"]))
    method = build_method(experiment["method"])

    start = time.perf_counter()
    result = method.run_server(comm)
    method_s = time.perf_counter() - start
    round_trips = len(comm.sends)

    theta = np.asarray(result.theta, dtype=np.float64)
    nodes = comm.nodes()
    replies = comm.exchange(EVALUATE, {node: payload_to_record(Payload(arrays={"theta": theta})) for node in nodes})
    server_s = time.perf_counter() - start

    failures = list(result.failures)
    reports: dict[int, dict[str, Any]] = {}
    for node, reply in replies.items():
        if isinstance(reply, ClientFailure):
            failures.append(reply)
        elif federation["report_metrics"]:
            reported = payload_from_record(reply).metrics
            missing = [key for key in COUNT_KEYS if key not in reported]
            if HARNESS not in reply or missing:
                failures.append(ClientFailure(node, f"{EVALUATE}: incomplete report (lacks {missing or 'harness record'})"))
                continue
            reports[node] = {"harness": dict(reply.metric_records[HARNESS]), "reported": reported}

    clients = [_client_entry(node, reports.get(node), comm) for node in sorted(set(nodes) | set(comm.bytes_down))]
    clients.sort(key=lambda c: (c["client_id"] is None, c["client_id"] or 0, c["node"]))
    # Clients work in parallel and report seconds per message type: the slowest client of each
    # type, plus the server's own work between exchanges, is the run's critical path.
    compute_s = server_s - sum(send["seconds"] for send in comm.sends) + sum(
        max((c["compute_s"].get(action, 0.0) for c in clients), default=0.0)
        for action in {send["action"] for send in comm.sends}
    )
    return RunOutcome(
        engine=engine,
        theta=theta.tolist(),
        metrics=metrics_from_counts(sum_counts([r["reported"] for r in reports.values()])) if reports else {},
        clients=clients,
        failures=[{"node": f.node, "reason": f.reason} for f in sorted(failures, key=lambda f: f.node)],
        sends=comm.sends,
        round_trips=round_trips,
        bytes_down=sum(sum(per.values()) for per in comm.bytes_down.values()),
        bytes_up=sum(sum(per.values()) for per in comm.bytes_up.values()),
        timings={
            "server_s": server_s,
            "method_s": method_s,
            "evaluate_s": server_s - method_s,
            "compute_s": compute_s,
        },
        info=jsonable(result.info),
    )


def _client_entry(node: int, report: dict[str, Any] | None, comm: MeasuredCommunicator) -> dict[str, Any]:
    """One node's line of :attr:`RunOutcome.clients`: its own metrics from its counts, plus any
    other value it reported (e.g. privacy measures), its traffic and its compute time."""
    harness = report["harness"] if report else {}
    reported = report["reported"] if report else {}
    counts = {key: reported[key] for key in COUNT_KEYS if key in reported}  # all or none
    extra = {key: value for key, value in reported.items() if key not in COUNT_KEYS}
    prefix = "compute_s."
    return {
        "node": node,
        "client_id": int(harness["client_id"]) if "client_id" in harness else None,
        "metrics": {**metrics_from_counts(counts), **extra} if report else {},
        "counts": counts,
        "bytes_down": dict(comm.bytes_down.get(node, {})),
        "bytes_up": dict(comm.bytes_up.get(node, {})),
        "compute_s": {key[len(prefix):]: value for key, value in harness.items() if key.startswith(prefix)},
    }
