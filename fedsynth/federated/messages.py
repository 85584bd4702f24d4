"""The message format on the wire: a method's message content is a Flower ``RecordDict``.

A content holds up to three records, an ``ArrayRecord`` named ``"arrays"``, a ``ConfigRecord``
named ``"config"`` and a ``MetricRecord`` named ``"metrics"`` (:data:`~fedsynth.methods.base.CONTENT_RECORDS`,
built by :func:`fedsynth.methods.base.make_content`; empty parts are left out, so an empty content
is an empty message). The same ``RecordDict`` goes from the method through the engine to the
other side: nothing converts it. The harness around the method adds one record each way:

* to every message for a client, ``"experiment"`` (a ``ConfigRecord``, :func:`with_experiment`):
  the experiment as JSON and the number of the point it belongs to within the Flower run. It is
  how a client learns what to run (the run config is the ServerApp's input only), the same way
  on every engine;
* to evaluation replies when the experiment reports metrics, ``"harness"`` (a ``MetricRecord``:
  the client's compute seconds, see :mod:`fedsynth.federated.client_logic`).

The bytes the server reports are those of the method's content: the experiment record (the same
≈ 1-2 kB in every message) is left out of them.

Sizes are measured, and the in-process engine serializes, with Flower's own protobuf serde
(:mod:`fedsynth.flower`), so both engines send and count the same bytes.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedsynth.flower import decode, encode, record_nbytes
from fedsynth.methods.base import ARRAYS, CONFIG, CONTENT_RECORDS, METRICS

__all__ = ["EXPERIMENT", "HARNESS", "check_records", "decode", "encode", "record_nbytes", "split_experiment", "with_experiment"]

HARNESS = "harness"
EXPERIMENT = "experiment"
RECORD_TYPES = {
    ARRAYS: ArrayRecord, CONFIG: ConfigRecord, METRICS: MetricRecord, HARNESS: MetricRecord, EXPERIMENT: ConfigRecord
}


def check_records(record: RecordDict, allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` if ``record`` holds a record not named in ``allowed``, or one of the
    wrong type (the server accepts nothing beyond its message schema)."""
    extra = sorted(set(record) - set(allowed))
    if extra:
        raise ValueError(f"unexpected record(s) {extra}; a reply may hold only {list(allowed)}")
    for name, item in record.items():
        if not isinstance(item, RECORD_TYPES[name]):
            raise ValueError(f"record {name!r} must be a {RECORD_TYPES[name].__name__}, got {type(item).__name__}")


def with_experiment(content: RecordDict, experiment_json: str, point: int) -> RecordDict:
    """``content`` with the :data:`EXPERIMENT` record added (a new ``RecordDict``; the method's
    records are shared, not copied): the experiment as JSON text and its point number."""
    return RecordDict({**content, EXPERIMENT: ConfigRecord({"json": experiment_json, "point": point})})


def split_experiment(content: RecordDict) -> tuple[str, int, RecordDict]:
    """The experiment JSON, the point number and the method's content of a message for a client
    (the inverse of :func:`with_experiment`); raise ``ValueError`` if the record is missing or
    malformed, or the content holds records beyond a method's."""
    check_records(content, (*CONTENT_RECORDS, EXPERIMENT))
    if EXPERIMENT not in content:
        raise ValueError(f"the message carries no {EXPERIMENT!r} record: the server runs another fedsynth version")
    record = content[EXPERIMENT]
    experiment_json, point = record.get("json"), record.get("point")
    if not isinstance(experiment_json, str) or not isinstance(point, int) or isinstance(point, bool):
        raise ValueError(f"the {EXPERIMENT!r} record needs 'json' (str) and 'point' (int), got {sorted(record)}")
    return experiment_json, point, RecordDict({name: item for name, item in content.items() if name != EXPERIMENT})
