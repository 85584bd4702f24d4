"""A dataset spec written from a CSV file: the encoding constants and category levels computed
once, from the whole file, so that every client encodes its rows with the same written-down
constants and no statistic is exchanged at run time.

Numeric columns get ``center`` = mean and ``scale`` = standard deviation (ddof=0), or with
``scaling="minmax"`` ``center`` = minimum and ``scale`` = range (values in [0, 1], as
scikit-learn's ``MinMaxScaler``, which FAIR-FATE applies to Dutch); ``binary`` columns
(``{column: value}``) are encoded as the indicator ``column == value`` and get the indicator's
mean and standard deviation; any other non-numeric column becomes a one-hot ``categorical``
feature with its sorted levels, as is every column named in ``categorical`` (numeric codes whose
order means nothing, such as census codes). The ``fedsynth-spec`` command (:mod:`fedsynth.spec_command`)
writes these specs; the shipped ``conf/dataset`` files were made the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

SCALINGS = {
    "standard": "center = mean, scale = standard deviation (ddof=0)",
    "minmax": "center = minimum, scale = maximum - minimum (values in [0, 1])",
}


def yaml_number(value: float) -> str:
    """A float written positionally (no exponent), 6 significant digits, readable by any YAML
    loader as a float."""
    return np.format_float_positional(value, precision=6, unique=False, fractional=False, trim="0")


def feature_lines(
    frame: pd.DataFrame,
    exclude: Sequence[str],
    binary: Mapping[str, str],
    scaling: str = "standard",
    categorical: Sequence[str] = (),
) -> list[str]:
    """One YAML flow-mapping line per feature column of ``frame`` (all but ``exclude``), scaled
    as ``scaling`` says (a key of :data:`SCALINGS`); the columns in ``categorical`` and every
    non-numeric one are one-hot encoded over their sorted levels (numerically sorted when numeric)."""
    lines = []
    for column in frame.columns:
        if column in exclude:
            continue
        values = frame[column]
        name = json.dumps(str(column))
        if column in binary:
            indicator = (values.astype(str) == binary[column]).to_numpy(dtype=np.float64)
            kind = f"type: binary, positive: {json.dumps(binary[column])}"
            lines.append(_scaled_line(name, kind, indicator, scaling))
        elif pd.api.types.is_numeric_dtype(values) and column not in categorical:
            lines.append(_scaled_line(name, "type: numeric", values.to_numpy(dtype=np.float64), scaling))
        else:
            # levels as the cells read as text (what the encoder compares), numeric codes in numeric order
            distinct = sorted(values.unique()) if pd.api.types.is_numeric_dtype(values) else values.astype(str).unique()
            levels = ", ".join(json.dumps(str(level)) for level in sorted(distinct, key=lambda v: (0, v) if not isinstance(v, str) else (1, v)))
            lines.append(f"  - {{name: {name}, type: categorical, levels: [{levels}]}}")
    return lines


def _scaled_line(name: str, kind: str, values: np.ndarray, scaling: str) -> str:
    center, scale = (values.min(), np.ptp(values)) if scaling == "minmax" else (values.mean(), values.std())
    note = "  # constant column: scale set to 1" if scale == 0 else ""
    return (
        f"  - {{name: {name}, {kind}, center: {yaml_number(center)}, "
        f"scale: {yaml_number(scale if scale > 0 else 1.0)}}}{note}"
    )


def spec_text(
    frame: pd.DataFrame,
    *,
    name: str,
    file: str,
    sha256: str,
    num_clients: int,
    label: tuple[str, str],
    sensitive: Sequence[str],
    privileged: str | None = None,
    exclude: Sequence[str] = (),
    binary: Mapping[str, str] | None = None,
    scaling: str = "standard",
    categorical: Sequence[str] = (),
    command: str = "",
) -> str:
    """A complete ``conf/dataset``-style spec (YAML text) for the table ``frame`` read from
    ``file``: ``label`` is a ``(column, value)`` pair (rows equal to the value get y = +1);
    ``sensitive`` one column with its ``privileged`` value (rows equal to it get s = 1), or one or
    more columns without one, whose value combinations in the file become the ``groups`` (sorted;
    s = the index of a row's combination); every other column not in ``exclude`` is a feature
    (:func:`feature_lines`; the ``categorical`` ones one-hot)."""
    features = feature_lines(frame, [label[0], *sensitive, *exclude], binary or {}, scaling, categorical)
    lines = [
        f"# Dataset spec written by: {command}" if command else "# Dataset spec",
        f"# from {file} ({len(frame)} rows); {SCALINGS[scaling]}, over the whole file",
        f"name: {name}",
        "kind: table",
        f"file: {json.dumps(file)}",
        f"sha256: {json.dumps(sha256)}",
        f"num_clients: {num_clients}                   # clients (engine=simulation: one SuperNode each)",
        "label:",
        f"  column: {json.dumps(label[0])}",
        f"  positive: {json.dumps(label[1])}      # rows equal to this value get y = +1",
        "sensitive:",
        *_sensitive_lines(frame, sensitive, privileged),
        "features:",
        *features,
    ]
    return "\n".join(lines) + "\n"


def _sensitive_lines(frame: pd.DataFrame, columns: Sequence[str], privileged: str | None) -> list[str]:
    """The ``sensitive`` section's lines: binary (one column and its privileged value), or the
    columns and every combination of their values in ``frame`` as ``groups``."""
    if privileged is not None:
        return [
            f"  column: {json.dumps(columns[0])}",
            f"  privileged: {json.dumps(privileged)}      # rows equal to this value get s = 1",
        ]
    combinations = frame[list(columns)].drop_duplicates().sort_values(list(columns))
    def plain(value: object) -> object:
        return value.item() if isinstance(value, np.generic) else value
    if len(columns) == 1:
        column, note = json.dumps(columns[0]), "every value of this column is a group"
        groups = [json.dumps(plain(row[0])) for row in combinations.itertuples(index=False)]
    else:
        column, note = "[" + ", ".join(json.dumps(name) for name in columns) + "]", "the groups are their value combinations"
        groups = ["[" + ", ".join(json.dumps(plain(v)) for v in row) + "]" for row in combinations.itertuples(index=False)]
    return [
        f"  column: {column}      # {note}",
        f"  groups:                # {len(groups)} groups; s = g for the g-th entry",
        *(f"    - {group}" for group in groups),
    ]
