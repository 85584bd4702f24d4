"""The message format on the wire: a method's message content is a Flower ``RecordDict`` of up to
three records (:data:`~fedsynth.methods.base.CONTENT_RECORDS`), carried unconverted by every engine;
the harness adds ``"experiment"`` (the experiment's JSON and its point number within the Flower run)
to every message for a client and ``"harness"`` (compute seconds) to evaluation replies that report
metrics. The bytes reported are the method's content's, as Flower's serde counts them
(docs/architecture.md, "message flow").
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
