"""The message format on the wire: a method's message content is a Flower ``RecordDict``.

A content holds up to three records, an ``ArrayRecord`` named ``"arrays"``, a ``ConfigRecord``
named ``"config"`` and a ``MetricRecord`` named ``"metrics"`` (:data:`~fedsynth.methods.base.CONTENT_RECORDS`,
built by :func:`fedsynth.methods.base.make_content`; empty parts are left out, so an empty content
is an empty message). The harness adds a fourth, ``"harness"``, to evaluation replies when the
experiment reports metrics (see :mod:`fedsynth.federated.client_logic`). The same ``RecordDict``
goes from the method through the engine to the other side: nothing converts it.

Sizes are measured, and the in-process engine serializes, with Flower's own protobuf serde, so
both engines send and count the same bytes for the same content.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

from fedsynth.methods.base import ARRAYS, CONFIG, METRICS

HARNESS = "harness"
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


def encode(record: RecordDict) -> bytes:
    """Serialize a ``RecordDict`` with Flower's protobuf serde."""
    return recorddict_to_proto(record).SerializeToString()


def decode(data: bytes) -> RecordDict:
    """Inverse of :func:`encode`."""
    return recorddict_from_proto(ProtoRecordDict.FromString(data))


def record_nbytes(record: RecordDict) -> int:
    """Size in bytes of a message's content as Flower serializes it."""
    return recorddict_to_proto(record).ByteSize()
