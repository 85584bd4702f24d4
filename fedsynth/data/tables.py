"""Reading and encoding CSV tables according to a :class:`~fedsynth.data.spec.DatasetSpec`.

Every check that can fail on a user's file raises :class:`~fedsynth.data.errors.DataError` with the
file, the column and the problem, so no pandas traceback reaches the user.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shlex
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fedsynth.data.errors import DataError
from fedsynth.data.spec import SYNTHETIC, TABLE, DatasetSpec, FeatureSpec, Scalar
from fedsynth.data.synthetic import generate_synthetic
from fedsynth.data.types import TabularData
from fedsynth.paths import DATA_DIR_ENV, data_directory, resolve_table_file  # noqa: F401 (re-exported)

MAX_ABS_ENCODED = 1e6
"""The largest |value| an encoded feature may take: beyond it the logistic model's arithmetic
loses all precision (and the server's default ``federation.max_abs_x`` would reject the rows)."""


def load_dataset(spec: DatasetSpec, data_dir: str | Path | None = None) -> TabularData:
    """Load and encode the whole dataset a spec describes.

    A ``table`` spec reads ``spec.file`` (:func:`read_table`). A ``synthetic`` spec generates its
    rows and reads nothing.
    """
    if spec.kind == SYNTHETIC:
        return generate_synthetic(spec.generator)
    path, frame = read_table(spec, data_dir)
    return encode_table(spec, frame, path)


def read_table(spec: DatasetSpec, data_dir: str | Path | None = None) -> tuple[Path, pd.DataFrame]:
    """The file a ``table`` spec reads (see :func:`resolve_data_file` for where) and its rows, not
    yet encoded. When the spec has a ``sha256`` the file must match it."""
    path = resolve_data_file(spec, data_dir)
    if spec.sha256 is not None:
        actual = file_sha256(path)
        if actual != spec.sha256:
            raise DataError(
                f"{path}: sha256 mismatch for dataset {spec.name!r}: expected {spec.sha256}, "
                f"actual {actual}. This is not the file the spec's encoding was computed from."
            )
    return path, read_csv_file(path)


def resolve_data_file(spec: DatasetSpec, data_dir: str | Path | None = None) -> Path:
    """The existing file a ``table`` spec reads, as an absolute path: ``spec.file`` itself when
    absolute; a relative one in the working directory when it is there, else in the data
    directory (:func:`fedsynth.paths.data_directory` of ``data_dir``)."""
    if spec.kind != TABLE:
        raise DataError(f"dataset {spec.name!r} is kind {spec.kind!r} and reads no file")
    try:
        file = resolve_table_file(spec.file, data_dir, spec.name)
    except FileNotFoundError as error:
        raise DataError(str(error)) from None
    check_readable_file(file, f"dataset {spec.name!r}")
    return file


def check_readable_file(path: Path, owner: str) -> None:
    """Raise :class:`DataError` unless ``path`` is an existing, regular, readable file (checked
    without opening anything else: a FIFO or device is never opened). ``owner`` says whose file
    it is in the message, e.g. ``"dataset 'csv'"``."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"data file not found: {path} ({owner}); check dataset.file and FEDSYNTH_DATA_DIR") from None
    except OSError as error:
        raise DataError(f"cannot access data file {path} ({owner}): {error.strerror}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"data file {path} ({owner}) is a directory; set dataset.file to a CSV file in it")
    if not stat.S_ISREG(mode):
        raise DataError(f"data file {path} ({owner}) is not a regular file (a FIFO, socket or device); give a CSV file")
    if not os.access(path, os.R_OK):
        raise DataError(f"data file {path} ({owner}) is not readable by this user; fix its permissions")


MAX_COLUMNS = 10_000
"""The most columns a data file may have: far beyond what the linear model and the synthesis are
built for (the paper's tables have 12 to 13, a census table one-hot encoded ≈ 100), and checked on
the header alone, so that a file with 100,000 columns fails at once instead of after minutes of
parsing and encoding."""


def read_header(path: Path) -> list[str]:
    """The column names of a CSV file's first line, a UTF-8 byte-order mark stripped; raise
    :class:`DataError` if the file is not UTF-8 text, has no header, has more than
    :data:`MAX_COLUMNS` columns, or names a column twice (pandas would silently rename it)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV file (is it binary or another encoding?)") from None
    except csv.Error as error:
        raise DataError(f"{path}: cannot parse the header as CSV: {error}") from None
    if not header:
        raise DataError(f"{path}: the file is empty (no header row)")
    if len(header) > MAX_COLUMNS:
        raise DataError(
            f"{path}: the header has {len(header)} columns, more than fedsynth reads ({MAX_COLUMNS}); "
            "write a file with only the columns the model uses"
        )
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DataError(f"{path}: column name(s) {duplicates} appear more than once in the header; rename them")
    return header


def read_csv_file(path: Path) -> pd.DataFrame:
    """Read a data file (every CSV fedsynth reads goes through here): a readable regular file, a
    header (:func:`read_header`, byte-order mark stripped), every data row as wide as the header,
    then pandas, with no column taken as the index. Every failure is a one-line
    :class:`DataError` naming the file (and the line, for a row of the wrong width)."""
    check_readable_file(path, "this node's data file")
    header = read_header(path)
    _check_row_widths(path, len(header))
    try:
        return pd.read_csv(path, encoding="utf-8-sig", index_col=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot parse as CSV: {error}") from None


def _check_row_widths(path: Path, width: int) -> None:
    """Raise :class:`DataError` at the first data row whose field count is not the header's
    ``width`` (blank lines are skipped, as pandas skips them). pandas itself would take a first
    column as the index when every row has one field more than the header (a trailing comma, an
    unnamed id column), shifting every column by one, and fill a short row with missing values."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for row in reader:
                if row and len(row) != width:
                    if len(row) > width:
                        fix = (
                            "a trailing comma, or an unnamed column such as a row id? give every column "
                            "a name in the header, or remove the extra field from every row"
                        )
                    else:
                        fix = "fill in the missing fields (a missing value is rejected as well), or remove the row"
                    raise DataError(
                        f"{path}: line {reader.line_num} has {len(row)} fields but the header names "
                        f"{width} columns ({fix})"
                    )
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV file (is it binary or another encoding?)") from None
    except csv.Error as error:
        raise DataError(f"{path}: cannot parse as CSV: {error}") from None


def encoded_feature_names(spec: DatasetSpec, data_dir: str | Path | None = None) -> tuple[str, ...]:
    """Names of the columns of ``x`` a spec produces: ``x1..xd`` for the synthetic table, the
    encoded feature names for a table spec with ``features``; with ``features: null``, every
    header column of the file but the label and sensitive ones (the file is read for its header)."""
    if spec.kind == SYNTHETIC:
        return tuple(f"x{j + 1}" for j in range(spec.generator.num_features))
    if spec.features is not None:
        return tuple(name for feature in spec.features for name in feature.encoded_names)
    header = read_header(resolve_data_file(spec, data_dir))
    return tuple(name for name in header if name not in (spec.label.column, *spec.sensitive.columns))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_csv(spec: DatasetSpec, path: str | Path) -> TabularData:
    """Encode one CSV file with a ``table`` spec's label, sensitive and feature rules.

    Use it for a file a node holds itself: the encoding constants come from the spec, never from
    the file, so every node encodes a given row identically. The spec's ``sha256`` (which names
    the full public file) is not checked here. Columns the spec does not use are ignored.
    """
    if spec.kind != TABLE:
        raise DataError(f"dataset {spec.name!r} is kind {spec.kind!r}, not a CSV table")
    path = Path(path)
    return encode_table(spec, read_csv_file(path), path)


def encode_groups(spec: DatasetSpec, frame: pd.DataFrame, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The group s and the label y ∈ {−1, 1} of every row of ``frame`` (read from ``path``),
    after checking that the file has the spec's columns and rows, that the label column holds
    exactly two values, one of them the spec's, and the sensitive column(s) as
    :func:`_sensitive_groups` says (s ∈ {0, 1} for a binary attribute, 0..k−1 for k groups)."""
    features = spec.features or _all_other_columns(frame, spec)
    needed = [spec.label.column, *spec.sensitive.columns] + [feature.name for feature in features]
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: column(s) {missing} not found; the file has {list(frame.columns)}"
        )
    if len(frame) == 0:
        raise DataError(f"{path}: the file has a header but no data rows")
    positive = _binary_column(
        path, frame[spec.label.column], spec.label.positive, "label", "positive"
    )
    return torch.from_numpy(_sensitive_groups(spec, frame, path)), torch.from_numpy(np.where(positive, 1.0, -1.0))


def _sensitive_groups(spec: DatasetSpec, frame: pd.DataFrame, path: Path) -> np.ndarray:
    """Every row's group as float64: for a binary spec 1 where the (two-valued) column equals
    ``privileged``, else 0; for a spec with ``groups`` the index of the entry whose values the
    row's sensitive columns equal, a row matching none being an error that names its values."""
    sensitive = spec.sensitive
    if sensitive.privileged is not None:
        column = frame[sensitive.columns[0]]
        return _binary_column(path, column, sensitive.privileged, "sensitive", "privileged").astype(np.float64)
    for name in sensitive.columns:
        _check_complete(path, frame[name])
    groups = np.full(len(frame), -1.0)
    for g, values in enumerate(sensitive.groups):
        member = np.logical_and.reduce([_equals(frame[name], value) for name, value in zip(sensitive.columns, values)])
        groups[member & (groups < 0)] = g
    unmatched = groups < 0
    if unmatched.any():
        first = frame[list(sensitive.columns)].iloc[int(np.flatnonzero(unmatched)[0])].tolist()
        raise DataError(
            f"{path}: sensitive column(s) {list(sensitive.columns)} have values {first} in "
            f"{_first_rows(frame[sensitive.columns[0]], unmatched)} that are none of dataset.sensitive.groups "
            f"{[list(group) for group in sensitive.groups]}; add them as a group"
        )
    return groups


def encode_table(
    spec: DatasetSpec, frame: pd.DataFrame, path: Path, rows: np.ndarray | None = None
) -> TabularData:
    """Encode the rows of ``frame`` (read from ``path``) with a ``table`` spec's rules: all of
    them, or only ``rows`` (positions, in that order: a client's part). The label and sensitive
    columns are checked on every row (:func:`encode_groups`); the features are checked and
    encoded for the rows asked only."""
    s, y = encode_groups(spec, frame, path)
    if rows is not None:
        frame, s, y = frame.iloc[rows], s[torch.from_numpy(rows)], y[torch.from_numpy(rows)]
    features = spec.features or _all_other_columns(frame, spec)
    hint = "" if spec.features else _spec_command_hint(path, spec)
    x = np.column_stack(
        [_encode_feature(path, frame[feature.name], feature, hint) for feature in features]
    )
    names = tuple(name for feature in features for name in feature.encoded_names)
    return TabularData(
        x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)),
        s=s,
        y=y,
        feature_names=names,
        num_groups=spec.num_groups,
    )


def _all_other_columns(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[FeatureSpec, ...]:
    """The feature list used when a spec has ``features: null``: every column except label and
    sensitive, in file order, numeric, with centre 0 and scale 1."""
    skip = {spec.label.column, *spec.sensitive.columns}
    return tuple(FeatureSpec(name=str(column)) for column in frame.columns if column not in skip)


def _first_rows(column: pd.Series, mask: np.ndarray) -> str:
    """'N row(s), first at data row R' for the rows of ``column`` where ``mask`` is true (R counts
    the file's data rows from 1, also when ``column`` holds only some of them)."""
    rows = np.flatnonzero(mask)
    return f"{len(rows)} row(s), first at data row {int(column.index[rows[0]]) + 1}"


def _check_complete(path: Path, column: pd.Series) -> None:
    """Reject a column with missing values."""
    missing = column.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"{path}: column {column.name!r} has missing values in {_first_rows(column, missing)}"
        )


def _equals(column: pd.Series, value: Scalar) -> np.ndarray:
    """Element-wise ``column == value``, numerically when both are numbers, else as text, so
    that a config value ``1`` matches a CSV cell ``1.0`` and ``White`` matches ``White``."""
    if pd.api.types.is_numeric_dtype(column):
        try:
            return column.to_numpy(dtype=np.float64) == float(value)
        except ValueError:
            pass
    return column.astype(str).to_numpy() == str(value)


def _binary_column(
    path: Path, column: pd.Series, value: Scalar, role: str, value_key: str
) -> np.ndarray:
    """Boolean mask ``column == value`` for the label or sensitive column, which must hold exactly
    two distinct values, one of them ``value``.

    A column with three or more values is refused rather than read as "``value`` against all the
    others": such a column is more often the wrong column, or one with stray spellings (``>50K``
    and ``>50K.``), than a deliberate one-against-rest split, and reading it that way would change
    the problem without a word. The message says how to make the split explicit."""
    _check_complete(path, column)
    distinct = column.unique().tolist()
    if len(distinct) != 2:
        shown = distinct[:5] + (["..."] if len(distinct) > 5 else [])
        raise DataError(
            f"{path}: {role} column {column.name!r} must have exactly two distinct values, "
            f"found {len(distinct)}: {shown}; check dataset.{role}.column, or add a column with two values "
            f"(e.g. 1 where {column.name} is {value!r}, else 0) and name it in dataset.{role}.column"
            + (f", or list its values as dataset.sensitive.groups (k groups)" if role == "sensitive" else "")
        )
    mask = _equals(column, value)
    if not mask.any():
        raise DataError(
            f"{path}: {role} column {column.name!r} never equals the configured {value_key} "
            f"value {value!r}; its values are {distinct}"
        )
    return mask


def _spec_command_hint(path: Path, spec: DatasetSpec) -> str:
    """For a spec without a feature list: the ``fedsynth-spec`` command that writes one with the
    encoding of every column (one-hot levels for text columns)."""
    sensitive = spec.sensitive
    privileged = [] if sensitive.privileged is None else ["--privileged", str(sensitive.privileged)]
    command = shlex.join(
        [
            "fedsynth-spec", str(path),
            "--label", spec.label.column, "--positive", str(spec.label.positive),
            "--sensitive", *sensitive.columns, *privileged,
        ]
    )
    return f"; a spec that encodes every column (text ones one-hot) is one command away: {command}"


def _encode_feature(path: Path, column: pd.Series, feature: FeatureSpec, hint: str = "") -> np.ndarray:
    """The ``(N, k)`` encoded columns of one feature (k = 1, or the number of levels); ``hint``
    ends the message for a non-numeric value in a numeric column."""
    _check_complete(path, column)
    if feature.type == "categorical":
        text = column.astype(str).to_numpy()
        levels = np.array([str(level) for level in feature.levels])
        unknown = ~np.isin(text, levels)
        if unknown.any():
            raise DataError(
                f"{path}: categorical column {column.name!r} has value(s) "
                f"{sorted(set(text[unknown]))[:5]} outside its levels {list(levels)} "
                f"in {_first_rows(column, unknown)}"
            )
        return (text[:, None] == levels[None, :]).astype(np.float64)
    if feature.type == "binary":
        distinct = column.unique().tolist()
        if len(distinct) > 2:
            raise DataError(
                f"{path}: binary column {column.name!r} has more than two values: {distinct[:5]}"
            )
        raw = _equals(column, feature.positive).astype(np.float64)
    else:
        raw = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        not_numeric = np.isnan(raw)
        if not_numeric.any():
            first = column.iloc[np.flatnonzero(not_numeric)[0]]
            raise DataError(
                f"{path}: numeric column {column.name!r} has non-numeric value {first!r} in "
                f"{_first_rows(column, not_numeric)}{hint}"
            )
        infinite = ~np.isfinite(raw)
        if infinite.any():
            raise DataError(
                f"{path}: numeric column {column.name!r} has infinite values in "
                f"{_first_rows(column, infinite)}"
            )
    encoded = (raw - feature.center) / feature.scale
    beyond = ~(np.abs(encoded) <= MAX_ABS_ENCODED)
    if beyond.any():
        raise DataError(
            f"{path}: column {column.name!r} encodes to values beyond ±{MAX_ABS_ENCODED:g} in "
            f"{_first_rows(column, beyond)}; give the feature a center and scale (fedsynth-spec computes them)"
        )
    return encoded[:, None]
