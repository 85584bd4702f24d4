"""``fedsynth-compare``: the method comparison of a sweep's ``results.json`` files, one table and
one accuracy–|SPD| plot (what the rows and columns mean: :mod:`fedsynth.reporting.comparison`).

    fedsynth-compare multirun/comparison --out-dir docs/comparison
    python -m fedsynth.comparison multirun/comparison --out-dir docs/comparison --name results

reads every ``results.json`` under the given files or folders and writes, into ``--out-dir``,
``<name>.md`` (Markdown tables, one per dataset and split), ``<name>.csv`` (the same rows) and
``<name>.png`` (accuracy against |SPD|, one panel per dataset and split, every method). With
``--fronts`` it writes the accuracy–fairness fronts of a knob sweep instead
(:mod:`fedsynth.reporting.fronts`): ``<name>.md`` (each method's best accuracy at |SPD| ≤ 0.02 /
0.05), ``<name>.csv`` (one point per setting) and ``<name>.png`` (accuracy–|SPD| and accuracy–|EOD|
fronts per dataset and split).

    fedsynth-compare --fronts multirun/fronts --out-dir docs/comparison --name fronts

``--by KEY`` (with ``--fronts``) splits every table and panel by the value of the method setting
``KEY`` (a dotted path, e.g. ``privacy.epsilon``) and puts first a table of each method's best
accuracy at |SPD| ≤ 0.05 per value:

    fedsynth-compare --fronts multirun/privacy_fronts --by privacy.epsilon --out-dir docs/privacy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fedsynth.reporting.collect import load_runs
from fedsynth.reporting.comparison import write_comparison
from fedsynth.reporting.fronts import write_fronts
from fedsynth.reporting.results import read_results


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedsynth-compare`` console script (``python -m fedsynth.comparison``)."""
    parser = argparse.ArgumentParser(
        prog="fedsynth-compare",
        description="Compare the methods of a sweep's results.json files: Markdown tables, CSV and an accuracy–|SPD| plot.",
    )
    parser.add_argument("paths", nargs="+", help="results.json files or folders searched recursively")
    parser.add_argument("--out-dir", default="comparison", type=Path, help="folder for the table, CSV and plot")
    parser.add_argument("--name", default="comparison", help="file name stem of the outputs")
    parser.add_argument(
        "--fronts", action="store_true",
        help="write the accuracy–fairness fronts instead (best accuracy at |SPD| <= 0.02 / 0.05, points, figure)",
    )
    parser.add_argument(
        "--by", metavar="KEY", default=None,
        help="with --fronts: split the fronts by this method setting (a dotted path, e.g. privacy.epsilon)",
    )
    args = parser.parse_args(argv)
    if args.by and not args.fronts:
        parser.error("--by goes with --fronts")
    try:
        if args.fronts:
            records = [record for _, record in read_results(args.paths)]
            paths, count = write_fronts(records, args.out_dir, args.name, args.by), len(records)
        else:
            runs = load_runs(args.paths)
            paths, count = write_comparison(runs, args.out_dir, args.name), len(runs)
    except (FileNotFoundError, ValueError) as error:  # NoResultsError is one
        print(f"fedsynth-compare: {error}", file=sys.stderr)
        return 2
    if paths.get("warning"):
        print(f"fedsynth-compare: warning: {paths['warning']}", file=sys.stderr)
    print(f"{count} runs")
    print(paths["markdown"].read_text(encoding="utf-8"))
    for kind in ("markdown", "csv", "plot"):
        print(f"{kind}: {paths[kind]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
