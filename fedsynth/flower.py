"""The one module that imports Flower's non-public modules (a test keeps it so); everything else
uses ``flwr.app``, ``flwr.clientapp``, ``flwr.serverapp`` and ``flwr.simulation``.

* Flower's protobuf serde of a ``RecordDict`` (``flwr.common.serde``): the in-process engine
  serializes messages with it and both engines count bytes with it, so they send and count the
  bytes Flower would;
* Flower's FedAvg aggregation (``flwr.serverapp.strategy.strategy_utils``), which
  :class:`fedsynth.methods.fedavg.FedAvg` applies to its records;
* ``InMemoryGrid`` (``flwr.superlink``): tells the ServerApp it runs on Flower's simulation, where
  every SuperNode is registered at once (imported when asked: the methods import this module).
"""

from __future__ import annotations

from flwr.app import ArrayRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords as _aggregate_arrayrecords


def encode(record: RecordDict) -> bytes:
    """Serialize a ``RecordDict`` with Flower's protobuf serde."""
    return recorddict_to_proto(record).SerializeToString()


def decode(data: bytes) -> RecordDict:
    """Inverse of :func:`encode`."""
    return recorddict_from_proto(ProtoRecordDict.FromString(data))


def record_nbytes(record: RecordDict) -> int:
    """Size in bytes of a message's content as Flower serializes it."""
    return recorddict_to_proto(record).ByteSize()


def aggregate_arrayrecords(records: list[RecordDict], weighting_metric_name: str) -> ArrayRecord:
    """Flower's FedAvg aggregation: the arrays of ``records`` averaged with the weights of their
    metric ``weighting_metric_name`` (what ``flwr.serverapp.strategy.FedAvg`` applies)."""
    return _aggregate_arrayrecords(records, weighting_metric_name)


def is_simulated(grid: object) -> bool:
    """Whether ``grid`` is Flower's simulation (all SuperNodes registered at once)."""
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    return isinstance(grid, InMemoryGrid)
