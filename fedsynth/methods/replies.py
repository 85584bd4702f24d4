"""What the server does with clients' replies: validate uploaded (x, s, y) row tables, and keep a
ledger of everything that left the clients (methods report it as ``ServerResult.info``)."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

import numpy as np
import torch

from fedsynth.data.types import TabularData
from fedsynth.methods.base import ClientFailure, Payload, usable_replies

ROW_ARRAYS = ("x", "s", "y")
"""The arrays of an uploaded row table: features x̂ (rows × d), ŝ ∈ {0, 1} and ŷ ∈ {−1, 1}."""


def validate_rows(payload: Payload, num_features: int, max_rows: int) -> None:
    """Check one uploaded row table: exactly the arrays x, s, y and nothing else; shapes and
    feature count; finite numbers; y ∈ {−1, 1}; s ∈ {0, 1}; 1 to ``max_rows`` rows. Raises
    ``ValueError`` naming the problem (Algorithm 1's protocol, step 3)."""
    if set(payload.arrays) != set(ROW_ARRAYS) or payload.config or payload.metrics:
        raise ValueError(
            f"expected exactly arrays {list(ROW_ARRAYS)} and nothing else, got arrays "
            f"{sorted(payload.arrays)}, config {sorted(payload.config)}, metrics {sorted(payload.metrics)}"
        )
    x, s, y = (np.asarray(payload.arrays[k]) for k in ROW_ARRAYS)
    if x.ndim != 2 or x.shape[1] != num_features:
        raise ValueError(f"x must have shape (rows, {num_features}), got {x.shape}")
    rows = x.shape[0]
    if rows == 0 or rows > max_rows:
        raise ValueError(f"row count {rows} outside [1, {max_rows}]")
    if s.shape != (rows,) or y.shape != (rows,):
        raise ValueError(f"s and y must have shape ({rows},), got {s.shape} and {y.shape}")
    for name, array in zip(ROW_ARRAYS, (x, s, y)):
        if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
            raise ValueError(f"{name} must hold finite numbers")
    if not np.isin(y, (-1.0, 1.0)).all():
        raise ValueError("labels y must be in {-1, 1}")
    if not np.isin(s, (0.0, 1.0)).all():
        raise ValueError("sensitive values s must be in {0, 1}")


def most_common_width(replies: Mapping[int, Payload | ClientFailure], array: str, *, ndim: int) -> int:
    """The last-axis length of array ``array`` (when it has ``ndim`` dimensions) that most
    replies have, the width the server then expects of every reply; -1 when no reply has it."""
    widths = Counter(
        np.asarray(r.arrays[array]).shape[-1]
        for r in replies.values()
        if isinstance(r, Payload) and array in r.arrays and np.asarray(r.arrays[array]).ndim == ndim
    )
    return widths.most_common(1)[0][0] if widths else -1


def rows_from_replies(
    replies: Mapping[int, Payload | ClientFailure], *, min_clients: int, max_rows: int
) -> tuple[dict[int, TabularData], list[ClientFailure]]:
    """Validated row tables by node, and the failures (crashes, timeouts, invalid tables).

    The expected feature count is the one most replies have; fewer than ``min_clients`` valid
    tables raise ``RuntimeError`` with every reason (see :func:`usable_replies`).
    """
    num_features = most_common_width(replies, "x", ndim=2)
    valid, failures = usable_replies(replies, lambda p: validate_rows(p, num_features, max_rows), min_clients)
    tables = {
        node: TabularData(
            *(torch.as_tensor(np.asarray(p.arrays[k], dtype=np.float64)) for k in ROW_ARRAYS),
            feature_names=tuple(f"x{j}" for j in range(num_features)),
        )
        for node, p in valid.items()
    }
    return tables, failures


class StatisticsLedger:
    """Everything that left the clients, as the server received it, split into the method's
    payload arrays (``payload_arrays``: the model, or the data rows) and everything else: the
    *client statistics* (array names, config and metric keys of the replies).

    Record every reply the server receives (valid or not: an invalid reply left the client too);
    :meth:`info` gives the ``ServerResult.info`` entries:

    * ``client_statistics``: sorted names of the non-payload entries, as ``metrics.<key>``,
      ``config.<key>`` or ``arrays.<name>``;
    * ``client_statistic_values``: how many scalar values those entries held, over all replies;
    * ``client_arrays``: sorted names of the payload arrays received;
    * ``client_messages``: number of replies recorded.
    """

    def __init__(self, payload_arrays: Iterable[str]) -> None:
        self.payload_arrays = frozenset(payload_arrays)
        self.statistics: set[str] = set()
        self.arrays: set[str] = set()
        self.values = 0
        self.messages = 0

    def record(self, replies: Mapping[int, Payload | ClientFailure]) -> None:
        """Account for one exchange's replies (failures carry nothing)."""
        for reply in replies.values():
            if not isinstance(reply, Payload):
                continue
            self.messages += 1
            for name, array in reply.arrays.items():
                if name in self.payload_arrays:
                    self.arrays.add(name)
                else:
                    self.statistics.add(f"arrays.{name}")
                    self.values += int(np.asarray(array).size)
            for section, entries in (("config", reply.config), ("metrics", reply.metrics)):
                self.statistics.update(f"{section}.{key}" for key in entries)
                self.values += len(entries)

    def info(self) -> dict[str, object]:
        """The ledger as ``ServerResult.info`` entries (see the class docstring)."""
        return {
            "client_statistics": sorted(self.statistics),
            "client_statistic_values": self.values,
            "client_arrays": sorted(self.arrays),
            "client_messages": self.messages,
        }
