"""What the server does with clients' uploaded (x, s, y) row tables: validate them against the
server's own :class:`~fedsynth.methods.base.ReplySchema`, and find the client whose rows make
the server's fit non-finite."""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
import torch
from flwr.app import RecordDict

from fedsynth.data.types import TabularData
from fedsynth.methods.base import ClientFailure, NotEnoughClients, ReplySchema, usable_replies
from fedsynth.methods.base import ARRAYS, arrays_of, config_of, metrics_of

ROW_ARRAYS = ("x", "s", "y")
"""The arrays of an uploaded row table: features x̂ (rows × d), the group index ŝ ∈ {0, .., k−1}
(k = 2: the binary attribute) and ŷ ∈ {−1, 1}."""


def _real(array: np.ndarray, floating: bool) -> bool:
    """Whether ``array`` holds real numbers: a floating dtype, or (``floating=False``) a floating
    or integer one; never complex, boolean or object."""
    if np.issubdtype(array.dtype, np.floating):
        return True
    return not floating and np.issubdtype(array.dtype, np.integer)


NPY_HEADER_BYTES = 4096
"""Room for an array's ``.npy`` header (NumPy writes 128 bytes, or a multiple of 64 for long shapes)."""
MAX_REPORTED_SIZE = 1e12
"""The largest client size a reply may report (a noisy count of rows)."""


def validate_rows(
    content: RecordDict, schema: ReplySchema, rows: tuple[int, int], size_metric: str | None = None
) -> None:
    """Check one uploaded row table (Algorithm 1's protocol, step 3) against the server's own
    schema: exactly the arrays x, s, y and nothing else (but, with ``size_metric``, that one metric:
    the client's reported size, a finite number in (0, :data:`MAX_REPORTED_SIZE`]); x of shape
    (rows, ``schema.num_features``) with a real floating dtype; s and y real; all finite;
    |x| <= ``schema.max_abs_x``; y ∈ {−1, 1}; s ∈ {0, .., ``schema.num_groups`` − 1};
    ``rows[0] <= rows <= rows[1]``. The arrays' names and serialized sizes (at most ``rows[1]``
    float64 rows each) are checked before any is decoded, so an oversized table costs no copy
    beyond the bytes Flower delivered. Raises
    ``ValueError`` naming the problem."""
    declared = content.array_records[ARRAYS] if ARRAYS in content else {}
    config, metrics = config_of(content), metrics_of(content)
    expected_metrics = set() if size_metric is None else {size_metric}
    if set(declared) != set(ROW_ARRAYS) or config or set(metrics) != expected_metrics:
        raise ValueError(
            f"expected exactly arrays {list(ROW_ARRAYS)}"
            + (f" and metric {size_metric!r}" if size_metric else "")
            + f" and nothing else, got arrays {sorted(declared)}, config {sorted(config)}, metrics {sorted(metrics)}"
        )
    for name, array in declared.items():  # before any array is decoded
        limit = 8 * rows[1] * (schema.num_features if name == "x" else 1) + NPY_HEADER_BYTES
        if len(array.data) > limit:
            raise ValueError(
                f"{name} is {len(array.data)} bytes, more than {limit} (at most {rows[1]} float64 rows): refused undecoded"
            )
    arrays = arrays_of(content)
    if size_metric is not None:
        size = metrics[size_metric]
        if isinstance(size, list) or not (math.isfinite(size) and 0 < size <= MAX_REPORTED_SIZE):
            raise ValueError(f"{size_metric} must be a finite number in (0, {MAX_REPORTED_SIZE:g}], got {size!r}")
    x, s, y = (np.asarray(arrays[k]) for k in ROW_ARRAYS)
    if x.ndim != 2 or x.shape[1] != schema.num_features:
        raise ValueError(f"x must have shape (rows, {schema.num_features}), got {x.shape}")
    count = x.shape[0]
    if not rows[0] <= count <= rows[1]:
        expected = rows[0] if rows[0] == rows[1] else f"{rows[0]} to {rows[1]}"
        raise ValueError(f"expected {expected} rows, got {count}")
    if s.shape != (count,) or y.shape != (count,):
        raise ValueError(f"s and y must have shape ({count},), got {s.shape} and {y.shape}")
    for name, array in zip(ROW_ARRAYS, (x, s, y)):
        if not _real(array, floating=name == "x"):
            raise ValueError(f"{name} must hold real {'floating-point ' if name == 'x' else ''}numbers, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} must hold finite numbers")
    if np.abs(x).max(initial=0.0) > schema.max_abs_x:
        raise ValueError(f"x has values beyond ±{schema.max_abs_x:g} (federation.max_abs_x, encoded units)")
    if not np.isin(y, (-1.0, 1.0)).all():
        raise ValueError("labels y must be in {-1, 1}")
    groups = np.arange(schema.num_groups, dtype=np.float64)
    if not np.isin(s, groups).all():
        allowed = "{0, 1}" if schema.num_groups == 2 else f"{{0, .., {schema.num_groups - 1}}} (the {schema.num_groups} groups of dataset.sensitive)"
        raise ValueError(f"sensitive values s must be in {allowed}")


def rows_from_replies(
    replies: Mapping[int, RecordDict | ClientFailure],
    schema: ReplySchema,
    *,
    min_clients: int,
    rows: tuple[int, int],
    size_metric: str | None = None,
) -> tuple[dict[int, TabularData], list[ClientFailure]]:
    """Validated row tables by node (:func:`validate_rows`, with ``size_metric`` the one metric a
    reply must carry), and the failures (crashes, timeouts, invalid tables); fewer than
    ``min_clients`` valid tables raise :class:`~fedsynth.methods.base.NotEnoughClients` with every
    reason."""
    valid, failures = usable_replies(
        replies, lambda content: validate_rows(content, schema, rows, size_metric), min_clients
    )
    feature_names = tuple(f"x{j}" for j in range(schema.num_features))
    tables = {}
    for node, content in valid.items():
        arrays = arrays_of(content)
        tables[node] = TabularData(
            *(torch.as_tensor(np.asarray(arrays[k], dtype=np.float64)) for k in ROW_ARRAYS),
            feature_names=feature_names,
            num_groups=schema.num_groups,
        )
    return tables, failures


def fit_without_culprits(
    tables: Mapping[int, TabularData],
    fit: Callable[[Mapping[int, TabularData]], np.ndarray],
    min_clients: int,
) -> tuple[np.ndarray, list[ClientFailure]]:
    """``fit`` the union of the tables (``fit`` gets them by node); if θ is not finite, find the
    clients whose rows cause it by refitting without each one, drop them and refit. Returns θ and
    a failure for every dropped client; raises :class:`~fedsynth.methods.base.NotEnoughClients`
    when no finite θ can be had from ``min_clients`` or more clients."""
    nodes = sorted(tables)

    def fit_nodes(selected: list[int]) -> np.ndarray:
        return np.asarray(fit({node: tables[node] for node in selected}), dtype=np.float64)

    theta = fit_nodes(nodes)
    if np.isfinite(theta).all():
        return theta, []
    culprits = [
        node
        for node in nodes
        if len(nodes) > 1
        and np.isfinite(fit_nodes([other for other in nodes if other != node])).all()
    ]
    kept = [node for node in nodes if node not in culprits]
    if not culprits or len(kept) < min_clients:
        raise NotEnoughClients(
            f"the server's fit on the rows of nodes {', '.join(map(str, nodes))} gives a non-finite θ "
            f"and leaving out one client does not leave min_clients={min_clients} usable ones"
        )
    theta = fit_nodes(kept)
    if not np.isfinite(theta).all():
        raise NotEnoughClients(f"the server's fit gives a non-finite θ even without nodes {culprits}")
    return theta, [ClientFailure(node, "invalid payload: its rows make the server's θ non-finite") for node in culprits]
