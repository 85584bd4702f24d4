"""The message format: a method's :class:`~fedsynth.methods.base.Payload` as a Flower ``RecordDict``.

A payload becomes up to three records: an ``ArrayRecord`` named ``"arrays"``, a ``ConfigRecord``
named ``"config"`` and a ``MetricRecord`` named ``"metrics"`` (empty parts are left out, so an
empty payload is an empty message). The harness adds a fourth, ``"harness"``, to evaluation
replies when the experiment reports metrics (see :mod:`fedsynth.federated.client_logic`).

Sizes are measured, and the in-process engine serializes, with Flower's own protobuf serde, so
both engines send and count the same bytes for the same content.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

from fedsynth.methods.base import Payload

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
HARNESS = "harness"
PAYLOAD_RECORDS = (ARRAYS, CONFIG, METRICS)


def payload_to_record(payload: Payload) -> RecordDict:
    """Pack a payload into a ``RecordDict`` (empty parts are omitted)."""
    record = RecordDict()
    if payload.arrays:
        record[ARRAYS] = ArrayRecord(
            {name: Array(np.ascontiguousarray(value)) for name, value in payload.arrays.items()}
        )
    if payload.config:
        record[CONFIG] = ConfigRecord(dict(payload.config))
    if payload.metrics:
        record[METRICS] = MetricRecord(dict(payload.metrics))
    return record


RECORD_TYPES = {ARRAYS: ArrayRecord, CONFIG: ConfigRecord, METRICS: MetricRecord, HARNESS: MetricRecord}


def check_records(record: RecordDict, allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` if ``record`` holds a record not named in ``allowed``, or one of the
    wrong type (the server accepts nothing beyond its message schema)."""
    extra = sorted(set(record) - set(allowed))
    if extra:
        raise ValueError(f"unexpected record(s) {extra}; a reply may hold only {list(allowed)}")
    for name, item in record.items():
        if not isinstance(item, RECORD_TYPES[name]):
            raise ValueError(f"record {name!r} must be a {RECORD_TYPES[name].__name__}, got {type(item).__name__}")


def payload_from_record(record: RecordDict, extra_records: tuple[str, ...] = ()) -> Payload:
    """Unpack the payload records of a ``RecordDict``; raise ``ValueError`` on any record other
    than the payload's and ``extra_records`` (see :func:`check_records`)."""
    check_records(record, PAYLOAD_RECORDS + extra_records)
    payload = Payload()
    if ARRAYS in record:
        payload.arrays = {name: array.numpy() for name, array in record.array_records[ARRAYS].items()}
    if CONFIG in record:
        payload.config = dict(record.config_records[CONFIG])
    if METRICS in record:
        payload.metrics = dict(record.metric_records[METRICS])
    return payload


def encode(record: RecordDict) -> bytes:
    """Serialize a ``RecordDict`` with Flower's protobuf serde."""
    return recorddict_to_proto(record).SerializeToString()


def decode(data: bytes) -> RecordDict:
    """Inverse of :func:`encode`."""
    return recorddict_from_proto(ProtoRecordDict.FromString(data))


def record_nbytes(record: RecordDict) -> int:
    """Size in bytes of a message's content as Flower serializes it."""
    return recorddict_to_proto(record).ByteSize()
