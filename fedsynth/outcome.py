"""What a federated run produced, and its ``outcome.json`` form (written atomically by the
ServerApp of a ``flwr run`` or a deployment; not the ``fedsynth`` command's ``results.json``,
:mod:`fedsynth.reporting.results`)."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsynth.io import jsonable, write_json_atomic

OUTCOME_FILE = "outcome.json"
"""The file name of the ServerApp's outcome (``fedsynth-deploy``, ``flwr run``)."""


class RunFailed(RuntimeError):
    """A federated run that ended without an outcome; the message is one line that says why
    (too few usable clients, a component that died), never a log or a traceback."""


def failure_path(results_path: str | Path) -> Path:
    """Where the ServerApp writes the one-line reason of a failed run: beside its outcome file."""
    return Path(results_path).with_name("failure.txt")


@dataclass
class RunOutcome:
    """The result of one federated run, identical in form for every engine.

    Attributes:
        engine: which engine ran it (``inprocess``, ``simulation``, ``deployment``).
        theta: the global model θ.
        metrics: test metrics of θ over all reporting clients (from their summed counts); empty
            when ``federation.report_metrics`` is off.
        clients: one entry per node, sorted by client id (nodes that never reported theirs
            last, by node id): ``node``, ``client_id`` (None if not reported), ``metrics`` (the
            client's own test metrics), ``counts`` (what it reported), ``bytes_down`` and
            ``bytes_up`` per message type, ``compute_s`` per message type (seconds the client
            spent in the method, as it reported them).
        failures: ``{"node", "reason"}`` for every client that crashed, timed out or sent an
            invalid payload, sorted by node.
        sends: every exchange in order: ``action`` (its Flower message type), ``nodes``, ``replies``, ``seconds``,
            ``bytes_down``, ``bytes_up``. The last one delivers θ (and collects the metrics).
        round_trips: exchanges the method's protocol made before θ was delivered.
        bytes_down: total bytes of message content sent to clients.
        bytes_up: total bytes of message content received from clients.
        timings: seconds: ``server_s`` (server logic, from the first message to the last reply),
            ``method_s`` (the method's protocol), ``evaluate_s`` (θ delivery), ``compute_s``
            (critical path of method work: the slowest client of each exchange plus the server's
            own work), set by the engines: ``wall_s`` (the whole ``engine.run`` call) and
            ``overhead_s`` (``wall_s - compute_s``).
        info: the method's ``ServerResult.info``.
    """

    engine: str
    theta: list[float]
    metrics: dict[str, float] = field(default_factory=dict)
    clients: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    sends: list[dict[str, Any]] = field(default_factory=list)
    round_trips: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def finish(self, engine: str, start: float) -> "RunOutcome":
        """Stamp the engine's name, the wall time since ``start`` (a ``time.perf_counter()``
        value) and the overhead it implies; return this outcome."""
        self.engine = engine
        self.timings["wall_s"] = time.perf_counter() - start
        self.timings["overhead_s"] = self.timings["wall_s"] - self.timings["compute_s"]
        return self

    def summary(self, results_path: str | Path) -> str:
        """One line for the user: accuracy, SPD, EOD, failed clients and the results file."""
        shown = ", ".join(f"{key}={self.metrics[key]:.4f}" for key in ("accuracy", "spd", "eod") if key in self.metrics)
        nodes = {str(failure.get("node")) for failure in self.failures}
        failed = f", {len(nodes)} client node(s) failed" if nodes else ""
        return f"{shown or 'no client metrics (federation.report_metrics=false)'}{failed}; results: {results_path}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (numpy values become plain Python values)."""
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunOutcome":
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    def write_json(self, path: str | Path) -> Path:
        """Write ``outcome.json`` (or any ``path``) atomically (see :func:`fedsynth.io.write_json_atomic`)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def read_json(cls, path: str | Path) -> "RunOutcome":
        """Load an outcome written by :meth:`write_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

