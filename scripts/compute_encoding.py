"""Print the ``features:`` block of a dataset spec, with encoding constants computed from a CSV.

Numeric columns get ``center`` = mean and ``scale`` = standard deviation (ddof=0), or with
``--scaling minmax`` ``center`` = minimum and ``scale`` = range (values in [0, 1], as
scikit-learn's ``MinMaxScaler``, which FAIR-FATE applies to Dutch); ``--binary COLUMN=VALUE`` columns are encoded as the indicator ``COLUMN == VALUE`` and get the indicator's
mean and standard deviation; any other non-numeric column becomes a one-hot ``categorical`` feature
with its sorted levels. Run it once on the public file and paste the output into
``conf/dataset/<name>.yaml``: every client then encodes its rows with the same written-down
constants and no statistic is exchanged at run time.

    python scripts/compute_encoding.py $FEDSYNTH_DATA_DIR/law_school.csv --exclude race pass_bar
    python scripts/compute_encoding.py $FEDSYNTH_DATA_DIR/dutch.csv --exclude sex occupation --scaling minmax
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd


def yaml_number(value: float) -> str:
    """A float written positionally (no exponent), 6 significant digits, readable by any YAML
    loader as a float."""
    return np.format_float_positional(value, precision=6, unique=False, fractional=False, trim="0")


SCALINGS = {
    "standard": "center = mean, scale = standard deviation (ddof=0)",
    "minmax": "center = minimum, scale = maximum - minimum (values in [0, 1])",
}


def feature_lines(
    frame: pd.DataFrame, exclude: list[str], binary: dict[str, str], scaling: str = "standard"
) -> list[str]:
    """One YAML flow-mapping line per feature column of ``frame``, scaled as ``scaling`` says
    (a key of :data:`SCALINGS`)."""
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
        elif pd.api.types.is_numeric_dtype(values):
            lines.append(_scaled_line(name, "type: numeric", values.to_numpy(dtype=np.float64), scaling))
        else:
            levels = ", ".join(json.dumps(level) for level in sorted(values.astype(str).unique()))
            lines.append(f"  - {{name: {name}, type: categorical, levels: [{levels}]}}")
    return lines


def _scaled_line(name: str, kind: str, values: np.ndarray, scaling: str) -> str:
    center, scale = (values.min(), np.ptp(values)) if scaling == "minmax" else (values.mean(), values.std())
    note = "  # constant column: scale set to 1" if scale == 0 else ""
    return (
        f"  - {{name: {name}, {kind}, center: {yaml_number(center)}, "
        f"scale: {yaml_number(scale if scale > 0 else 1.0)}}}{note}"
    )


def main() -> None:
    """Parse the command line and print the features block."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="the public CSV file")
    parser.add_argument("--exclude", nargs="+", default=[], help="label and sensitive columns")
    parser.add_argument(
        "--binary", nargs="+", default=[], metavar="COLUMN=VALUE", help="indicator features"
    )
    parser.add_argument("--scaling", choices=sorted(SCALINGS), default="standard", help="default: standard")
    args = parser.parse_args()
    binary = dict(item.split("=", 1) for item in args.binary)
    frame = pd.read_csv(args.csv)
    unknown = sorted((set(args.exclude) | set(binary)) - set(frame.columns))
    if unknown:
        parser.error(f"{args.csv} has no column(s) {unknown}")
    digest = hashlib.sha256(args.csv.read_bytes()).hexdigest()
    command = " ".join(
        ["python scripts/compute_encoding.py", args.csv.name]
        + (["--exclude", *args.exclude] if args.exclude else [])
        + (["--binary", *args.binary] if args.binary else [])
        + (["--scaling", args.scaling] if args.scaling != "standard" else [])
    )
    print(f"# computed by: {command}")
    print(f"# from {args.csv.name} ({len(frame)} rows, sha256 {digest})")
    print(f"# {SCALINGS[args.scaling]}, over the whole public file")
    print("features:")
    print("\n".join(feature_lines(frame, args.exclude, binary, args.scaling)))


if __name__ == "__main__":
    main()
