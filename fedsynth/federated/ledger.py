"""The server's ledger of everything that left the clients, in every message type: every reply
content the harness receives, valid or not, record by record; the method's payload arrays are
counted apart, every other entry is a *client statistic* named ``<record>.<key>``.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from flwr.app import Array, ArrayRecord, RecordDict

from fedsynth.methods.base import ARRAYS

PROTOCOL = "protocol"
"""Ledger section of the method's own messages."""
HARNESS_SECTION = "harness"
"""Ledger section of the harness's θ delivery (evaluation replies)."""


class StatisticsLedger:
    """Names and value counts of what the clients sent, per section (:data:`PROTOCOL`: the
    method's messages, :data:`HARNESS_SECTION`: the evaluation replies the harness collects);
    :meth:`info` gives them as a run's ``info`` entries (docs/deployment.md lists them)."""

    def __init__(self, payload_arrays: Iterable[str]) -> None:
        self.payload_arrays = frozenset(payload_arrays)
        self.statistics: dict[str, set[str]] = {PROTOCOL: set(), HARNESS_SECTION: set()}
        self.values = {PROTOCOL: 0, HARNESS_SECTION: 0}
        self.messages = {PROTOCOL: 0, HARNESS_SECTION: 0}
        self.arrays: set[str] = set()

    def record(self, replies: Iterable[RecordDict], section: str = PROTOCOL) -> None:
        """Account for the reply contents of one exchange."""
        for reply in replies:
            self.messages[section] += 1
            for name, record in reply.items():
                for key, value in record.items():
                    if isinstance(record, ArrayRecord) and name == ARRAYS and key in self.payload_arrays:
                        self.arrays.add(key)
                        continue
                    self.statistics[section].add(f"{name}.{key}")
                    self.values[section] += _size(value)

    def info(self) -> dict[str, object]:
        """The ledger as ``info`` entries: ``client_statistics`` (sorted names), ``client_statistic_values``
        (scalar values over all replies), ``client_arrays``, ``client_messages``, and the same for the
        ``harness_*`` section (empty when ``federation.report_metrics`` is off)."""
        return {
            "client_statistics": sorted(self.statistics[PROTOCOL]),
            "client_statistic_values": self.values[PROTOCOL],
            "client_arrays": sorted(self.arrays),
            "client_messages": self.messages[PROTOCOL],
            "harness_statistics": sorted(self.statistics[HARNESS_SECTION]),
            "harness_statistic_values": self.values[HARNESS_SECTION],
            "harness_messages": self.messages[HARNESS_SECTION],
        }


def _size(value: object) -> int:
    """Scalar values in one record entry: an array's element count (from its declared shape: the
    ledger decodes nothing), a list's length, else 1."""
    if isinstance(value, Array):
        return math.prod(value.shape)
    if isinstance(value, (list, tuple)):
        return len(value)
    return 1


def records_of(replies: Mapping[int, object]) -> list[RecordDict]:
    """The reply contents among an exchange's replies (failures carry nothing)."""
    return [reply for reply in replies.values() if isinstance(reply, RecordDict)]
