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

from fedsynth.config import Experiment
from fedsynth.federated.experiment import experiment_json
from fedsynth.federated.ledger import HARNESS_SECTION, PROTOCOL, StatisticsLedger, records_of
from fedsynth.federated.messages import check_records, record_nbytes, with_experiment
from fedsynth.outcome import RunFailed, RunOutcome
from fedsynth.federated.validation import check_evaluation_reply, reply_schema
from fedsynth.io import jsonable
from fedsynth.methods import MESSAGE_TYPES, ClientFailure, NotEnoughClients, ReplySchema, build_method, make_content
from fedsynth.methods.base import CONTENT_RECORDS, EVALUATE, THETA
from fedsynth.metrics import metrics_from_counts, sum_counts


class Transport(Protocol):
    """Moves message contents between the server and the client nodes (one per engine)."""

    def nodes(self) -> list[int]:
        """Ids of the connected client nodes, sorted."""

    def exchange(
        self, message_type: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, RecordDict | ClientFailure]:
        """Send ``contents[node]`` to each node as a message of type ``message_type``; return every
        node's reply content or a :class:`ClientFailure` (``"crashed: ..."``,
        ``"no reply within ... s"``), waiting at most ``timeout`` seconds in all."""


class MeasuredCommunicator:
    """The method's :class:`~fedsynth.methods.base.Communicator` over a :class:`Transport`.

    Passes the method's ``RecordDict`` contents on with the experiment added (the
    ``experiment_json`` of point ``point``, :func:`~fedsynth.federated.messages.with_experiment`)
    and checks the replies' records (a reply with any record beyond
    :data:`~fedsynth.methods.base.CONTENT_RECORDS` is an invalid payload), applies the default
    timeout (``federation.timeout_s``), prefixes failure reasons with the message type, records
    the bytes of every message's content per node and per message type, every exchange, and every
    reply content in the :class:`StatisticsLedger`. Past ``deadline`` (``time.monotonic``) no
    exchange starts and none waits longer: the run fails (:class:`RunFailed`).
    """

    def __init__(
        self,
        transport: Transport,
        default_timeout: float,
        schema: ReplySchema,
        ledger: StatisticsLedger,
        experiment_json: str,
        point: int = 0,
        deadline: float | None = None,
    ) -> None:
        self._transport = transport
        self._deadline = deadline
        self._experiment_json = experiment_json
        self._point = point
        self._default_timeout = default_timeout
        self.schema = schema
        self.ledger = ledger
        self.bytes_down: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.bytes_up: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.sends: list[dict[str, Any]] = []

    def nodes(self) -> list[int]:
        """Ids of the connected client nodes, sorted."""
        return sorted(self._transport.nodes())

    def exchange(
        self,
        message_type: str,
        contents: Mapping[int, RecordDict],
        timeout: float | None = None,
        section: str = PROTOCOL,
    ) -> dict[int, RecordDict | ClientFailure]:
        """One measured exchange of raw contents (the harness uses it directly, with ``section``
        :data:`~fedsynth.federated.ledger.HARNESS_SECTION`). Replies from nodes that were not
        addressed are dropped."""
        if message_type not in MESSAGE_TYPES:
            raise ValueError(f"message type {message_type!r} is not one of {MESSAGE_TYPES}")
        down = {node: record_nbytes(content) for node, content in contents.items()}
        timeout = self._default_timeout if timeout is None else timeout
        if self._deadline is not None:
            timeout = min(timeout, max(0.0, self._deadline - time.monotonic()))
        start = time.perf_counter()
        replies = self._transport.exchange(
            message_type,
            {node: with_experiment(content, self._experiment_json, self._point) for node, content in contents.items()},
            timeout,
        )
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise RunFailed("the run took longer than engine.run_timeout_s; raise it, or lower the work (e.g. method.k_max)")
        replies = {node: reply for node, reply in replies.items() if node in contents}
        seconds = time.perf_counter() - start
        self.ledger.record(records_of(replies), section)
        up = {node: record_nbytes(reply) for node, reply in replies.items() if isinstance(reply, RecordDict)}
        for node, size in down.items():
            self.bytes_down[node][message_type] += size
        for node, size in up.items():
            self.bytes_up[node][message_type] += size
        self.sends.append(
            {
                "action": message_type,  # the results.json key
                "nodes": len(contents),
                "replies": len(up),
                "seconds": seconds,
                "bytes_down": sum(down.values()),
                "bytes_up": sum(up.values()),
            }
        )
        return {
            node: ClientFailure(node, f"{message_type}: {reply.reason}")
            if isinstance(reply, ClientFailure)
            else reply
            for node, reply in sorted(replies.items())
        }

    def send(
        self, message_type: str, contents: Mapping[int, RecordDict], timeout: float | None = None
    ) -> dict[int, RecordDict | ClientFailure]:
        """The method's exchange: :meth:`exchange` in the protocol's ledger section; a reply that
        holds records beyond :data:`~fedsynth.methods.base.CONTENT_RECORDS` (or one of the wrong
        type) becomes an ``invalid payload`` failure."""
        replies = self.exchange(message_type, contents, timeout)
        return {node: _content_or_failure(node, reply) for node, reply in replies.items()}


def _content_or_failure(node: int, reply: RecordDict | ClientFailure) -> RecordDict | ClientFailure:
    """A reply as it came, or a failure if it is one or holds records beyond a content's."""
    if isinstance(reply, ClientFailure):
        return reply
    try:
        check_records(reply, CONTENT_RECORDS)
    except ValueError as err:
        return ClientFailure(node, f"invalid payload: {err}")
    return reply


def run_experiment(
    experiment: Experiment, transport: Transport, engine: str, point: int = 0, run_timeout_s: float | None = None
) -> RunOutcome:
    """Run one experiment's server side: the method's protocol, then θ to every client. ``point``
    numbers the experiments one transport serves (the points of a sweep in one Flower run): the
    clients keep no state from one to the next. ``run_timeout_s``: the longest the run may take
    (:class:`RunFailed` after it).

    A client's id is its rank in the server's node table (the sorted node ids when the run
    starts), never a value a client reports. Raises
    :class:`~fedsynth.methods.base.NotEnoughClients` when fewer than ``federation.min_clients``
    clients gave a usable reply, or when θ is not finite.
    """
    federation = experiment.federation
    method = build_method(experiment.method)
    comm = MeasuredCommunicator(
        transport,
        default_timeout=federation.timeout_s,
        schema=reply_schema(experiment),
        ledger=StatisticsLedger(method.payload_arrays),
        experiment_json=experiment_json(experiment),
        point=point,
        deadline=None if run_timeout_s is None else time.monotonic() + run_timeout_s,
    )
    node_table = {node: rank for rank, node in enumerate(comm.nodes())}

    start = time.perf_counter()
    result = method.run_server(comm)
    method_s = time.perf_counter() - start
    round_trips = len(comm.sends)

    theta = np.asarray(result.theta, dtype=np.float64)
    if not np.isfinite(theta).all():
        raise NotEnoughClients(f"method {method.name!r} produced a non-finite θ; nothing is sent to the clients")
    nodes = comm.nodes()
    replies = comm.exchange(
        EVALUATE,
        {node: make_content(arrays={THETA: theta}, config=method.evaluation_config()) for node in nodes},
        section=HARNESS_SECTION,
    )
    server_s = time.perf_counter() - start

    failures = list(result.failures)
    reports: dict[int, dict[str, Any]] = {}
    for node, reply in replies.items():
        if isinstance(reply, ClientFailure):
            failures.append(reply)
            continue
        try:
            counts, extras, compute = check_evaluation_reply(
                reply,
                report_metrics=federation.report_metrics,
                extra_metrics=method.evaluation_metrics,
                max_test_rows=federation.max_test_rows,
                num_groups=comm.schema.num_groups,
            )
        except ValueError as err:
            failures.append(ClientFailure(node, f"{EVALUATE}: invalid report: {err}"))
            continue
        if federation.report_metrics:
            reports[node] = {"counts": counts, "extras": extras, "compute_s": compute}

    clients = [
        _client_entry(node, node_table.get(node), reports.get(node), comm)
        for node in sorted(set(nodes) | set(comm.bytes_down))
    ]
    clients.sort(key=lambda c: (c["client_id"] is None, c["client_id"] or 0, c["node"]))
    # Clients work in parallel and report seconds per message type: the slowest client of each
    # type, plus the server's own work between exchanges, is the run's critical path.
    compute_s = server_s - sum(send["seconds"] for send in comm.sends) + sum(
        max((c["compute_s"].get(message_type, 0.0) for c in clients), default=0.0)
        for message_type in {send["action"] for send in comm.sends}
    )
    return RunOutcome(
        engine=engine,
        theta=theta.tolist(),
        metrics=metrics_from_counts(sum_counts([r["counts"] for r in reports.values()])) if reports else {},
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
        info=jsonable({**result.info, **comm.ledger.info()}),
    )


def _client_entry(
    node: int, client_id: int | None, report: dict[str, Any] | None, comm: MeasuredCommunicator
) -> dict[str, Any]:
    """One node's line of :attr:`RunOutcome.clients`: its id in the server's node table, its own
    metrics from its validated counts plus the method's other evaluation metrics (e.g. privacy
    measures), its traffic and its compute time."""
    counts = report["counts"] if report else {}
    return {
        "node": node,
        "client_id": client_id,
        "metrics": {**metrics_from_counts(counts), **report["extras"]} if report else {},
        "counts": counts,
        "bytes_down": dict(comm.bytes_down.get(node, {})),
        "bytes_up": dict(comm.bytes_up.get(node, {})),
        "compute_s": report["compute_s"] if report else {},
    }
