"""Splitting a dataset into clients, and each client into a training and a test part.

``iid`` is the paper's Table 1 split: shuffle, cut into K equal clients (the remainder is
dropped), then split every client into train and test. ``dirichlet`` is the non-IID split used by
FAIR-FATE: for each of the four (s, y) groups, Dirichlet(alpha) proportions over the clients.
All randomness comes from the ``seed``; the same seed always gives the same partition.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fedsynth.data.errors import DataError
from fedsynth.data.spec import TABLE, DatasetSpec
from fedsynth.data.tables import data_directory, encode_groups, encode_table, load_dataset, read_table
from fedsynth.data.types import ClientPartition, TabularData

SCHEMES = ("iid", "dirichlet")

# Independent random streams drawn from one seed: np.random.default_rng([seed, stream, index]).
_SHUFFLE_STREAM = 0
_SPLIT_STREAM = 1
_DIRICHLET_STREAM = 2
_HOLD_OUT_STREAM = 3


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """A generator for one purpose (stream) and one client (index), derived from ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    return np.random.default_rng([seed, stream, index])


def _check_test_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")


def split_train_test(
    data: TabularData, *, seed: int, test_fraction: float = 0.2, client_id: int = 0
) -> ClientPartition:
    """Shuffle one client's rows and hold out ``round(test_fraction * N)`` of them for testing.

    This is what a node that holds its own file does; :func:`partition_clients` calls it for
    every client, so both give the same split for the same rows, seed and client id.
    """
    _check_test_fraction(test_fraction)
    num_rows = len(data)
    num_test = round(test_fraction * num_rows)
    num_train = num_rows - num_test
    if num_test < 1 or num_train < 1:
        raise DataError(
            f"client {client_id}: {num_rows} row(s) cannot be split with test_fraction="
            f"{test_fraction} ({num_train} train / {num_test} test); both parts need at least "
            "one row"
        )
    order = torch.from_numpy(_rng(seed, _SPLIT_STREAM, client_id).permutation(num_rows))
    return ClientPartition(
        client_id=client_id,
        train=data.subset(order[:num_train]),
        test=data.subset(order[num_train:]),
    )


def hold_out(
    train: TabularData, fraction: float, *, seed: int, client_id: int
) -> tuple[TabularData, TabularData]:
    """Split a client's training rows into (kept, held out): ``round(fraction * N)`` rows drawn
    from the seed's own stream, so the server and the client pick the same rows. The held-out
    rows are the server's validation share (FAIR-FATE); ``fraction = 0`` holds out nothing."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation_fraction must be in [0, 1), got {fraction!r}")
    order = torch.from_numpy(_rng(seed, _HOLD_OUT_STREAM, client_id).permutation(len(train)))
    count = round(fraction * len(train))
    if count == len(train):
        raise DataError(f"client {client_id}: holding out {count} of {len(train)} training rows leaves none to train on")
    return train.subset(order[count:].sort().values), train.subset(order[:count].sort().values)


def partition_clients(
    data: TabularData,
    num_clients: int,
    *,
    seed: int,
    test_fraction: float = 0.2,
    scheme: str = "iid",
    dirichlet_alpha: float = 0.5,
) -> list[ClientPartition]:
    """Split ``data`` into ``num_clients`` clients, each with a train and a test part.

    ``scheme="iid"``: equal random clients of ``len(data) // num_clients`` rows (Table 1 of the
    paper: Law School K=2 gives 8319 train / 2080 test rows per client, Dutch K=4 gives
    12084 / 3021). ``scheme="dirichlet"``: every row goes to exactly one client; client shares of
    each (s, y) group follow Dirichlet(``dirichlet_alpha``), so clients differ in size and group
    mix (a client may lack some groups; a client with no rows is an error).
    """
    client_rows = _client_rows(data, num_clients, seed, test_fraction, scheme, dirichlet_alpha)
    return [
        _client_part(data, rows, client_id, seed=seed, test_fraction=test_fraction)
        for client_id, rows in enumerate(client_rows)
    ]


def _client_rows(
    data: TabularData, num_clients: int, seed: int, test_fraction: float, scheme: str, dirichlet_alpha: float
) -> list[np.ndarray]:
    """Every client's row indices into ``data`` (one shuffle; no rows are copied), after checking
    the split's arguments; a client without rows is an error."""
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
        raise DataError(f"num_clients must be an integer >= 1, got {num_clients!r}")
    if scheme not in SCHEMES:
        raise DataError(f"unknown partition scheme {scheme!r}; choose one of {list(SCHEMES)}")
    _check_test_fraction(test_fraction)
    if num_clients > len(data):
        raise DataError(
            f"{num_clients} clients requested but the dataset has only {len(data)} rows"
        )
    if scheme == "iid":
        client_rows = _iid_rows(len(data), num_clients, seed)
    else:
        if not dirichlet_alpha > 0:
            raise DataError(f"dirichlet_alpha must be > 0, got {dirichlet_alpha!r}")
        client_rows = _dirichlet_rows(data, num_clients, seed, dirichlet_alpha)
    for client_id, rows in enumerate(client_rows):
        if len(rows) == 0:
            raise DataError(
                f"client {client_id} of {num_clients} receives no rows under scheme {scheme!r} "
                f"(seed {seed}); use fewer clients, a larger dirichlet_alpha or another seed"
            )
    return client_rows


def _client_part(
    data: TabularData, rows: np.ndarray, client_id: int, *, seed: int, test_fraction: float
) -> ClientPartition:
    """One client's rows of ``data``, split into its train and test parts."""
    return split_train_test(
        data.subset(torch.from_numpy(rows)), seed=seed, test_fraction=test_fraction, client_id=client_id
    )


def _iid_rows(num_rows: int, num_clients: int, seed: int) -> list[np.ndarray]:
    """Row indices of equal random clients; the last ``num_rows % num_clients`` shuffled rows are
    dropped."""
    order = _rng(seed, _SHUFFLE_STREAM, 0).permutation(num_rows)
    size = num_rows // num_clients
    return [order[k * size : (k + 1) * size] for k in range(num_clients)]


def _dirichlet_rows(
    data: TabularData, num_clients: int, seed: int, alpha: float
) -> list[np.ndarray]:
    """Row indices per client: each (s, y) group is shuffled and cut by Dirichlet proportions."""
    rng = _rng(seed, _DIRICHLET_STREAM, 0)
    s = data.s.numpy()
    y = data.y.numpy()
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for s_value in np.arange(data.num_groups, dtype=np.float64):
        for y_value in (-1.0, 1.0):
            group = rng.permutation(np.flatnonzero((s == s_value) & (y == y_value)))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = np.round(np.cumsum(shares)[:-1] * len(group)).astype(int)
            for client_id, piece in enumerate(np.split(group, cuts)):
                pieces[client_id].append(piece)
    return [np.sort(np.concatenate(client_pieces)) for client_pieces in pieces]


def load_partition(
    spec: DatasetSpec,
    client_id: int,
    *,
    seed: int,
    scheme: str = "iid",
    test_fraction: float = 0.2,
    dirichlet_alpha: float = 0.5,
    data_dir: str | Path | None = None,
) -> ClientPartition:
    """Client ``client_id``'s part of :func:`partition_clients` with ``spec.num_clients``
    clients, from the dataset read once per process (for each spec and data directory): the
    split's one shuffle over every row's (s, y), then only this client's rows are encoded (a
    table's file) or copied, and split."""
    if (
        isinstance(client_id, bool)
        or not isinstance(client_id, int)
        or not 0 <= client_id < spec.num_clients
    ):
        raise DataError(
            f"client_id must be in 0..{spec.num_clients - 1} for dataset {spec.name!r}, "
            f"got {client_id!r}"
        )
    resolved_dir = data_directory(data_dir)
    source = _source(spec, None if resolved_dir is None else str(resolved_dir))
    rows = _client_rows(source.groups, spec.num_clients, seed, test_fraction, scheme, dirichlet_alpha)[client_id]
    return split_train_test(source.encode(rows), seed=seed, test_fraction=test_fraction, client_id=client_id)


@dataclass(frozen=True)
class _Source:
    """A dataset as a process holds it for its clients: every row's (s, y), which the split's one
    shuffle needs (``groups``, x without columns), and ``encode(rows)``, those rows encoded."""

    groups: TabularData
    encode: Callable[[np.ndarray], TabularData]


@functools.lru_cache(maxsize=8)
def _source(spec: DatasetSpec, data_dir: str | None) -> _Source:
    """The dataset of ``spec`` read once per process (and data directory): a table's file is read
    and its label and sensitive columns encoded; a client encodes only its own rows of it."""
    if spec.kind != TABLE:
        data = load_dataset(spec, data_dir)
        return _Source(groups=data, encode=lambda rows: data.subset(torch.from_numpy(rows)))
    path, frame = read_table(spec, data_dir)
    s, y = encode_groups(spec, frame, path)
    groups = TabularData(
        x=torch.zeros(len(s), 0, dtype=torch.float64), s=s, y=y, feature_names=(), num_groups=spec.num_groups
    )
    return _Source(groups=groups, encode=lambda rows: encode_table(spec, frame, path, rows))
