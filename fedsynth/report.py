"""``fedsynth-report``: turn the ``results.json`` files of one or more runs / sweeps into tables
and figures (:func:`fedsynth.reporting.report.build_report` lists what it writes).

    fedsynth-report multirun/table2/2026-11-26_10-00-00          # writes .../report/
    fedsynth-report multirun/figure2/A multirun/figure2/B --out figure2-report
    fedsynth-report --reference-overrides multirun/table2/2026-11-26_10-00-00   # for +experiment=reference

``--out`` defaults to ``<the folder>/report`` for one folder, ``./report`` otherwise. The report's
warnings (points with fewer seeds than others, repeated seeds, no centralized reference) are also
printed on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fedsynth.reporting.collect import load_runs
from fedsynth.reporting.report import build_report, reference_overrides
from fedsynth.reporting.tables import summary_markdown


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedsynth-report`` console script."""
    parser = argparse.ArgumentParser(
        prog="fedsynth-report",
        description="Collect results.json files of fedsynth runs / sweeps into CSV, Markdown tables and PNG figures.",
    )
    parser.add_argument("paths", nargs="+", help="sweep / run folders (searched recursively) or results.json files")
    parser.add_argument("-o", "--out", help="output folder (default: <folder>/report for one folder, else ./report)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument(
        "--reference-overrides", action="store_true",
        help="print the overrides of `fedsynth -m +experiment=reference` that cover these runs' data settings, and stop",
    )
    args = parser.parse_args(argv)
    if args.reference_overrides:
        try:
            print(" ".join(reference_overrides(load_runs(args.paths))))
        except (FileNotFoundError, ValueError) as error:
            print(f"fedsynth-report: {error}", file=sys.stderr)
            return 2
        return 0
    if args.out:
        out = Path(args.out)
    elif len(args.paths) == 1 and Path(args.paths[0]).is_dir():
        out = Path(args.paths[0]) / "report"
    else:
        out = Path("report")
    try:
        result = build_report(args.paths, out, make_plots=not args.no_plots)
    except (FileNotFoundError, ValueError) as error:  # NoResultsError is one
        print(f"fedsynth-report: {error}", file=sys.stderr)
        return 2
    for warning in result["warnings"]:
        print(f"fedsynth-report: warning: {warning}", file=sys.stderr)
    print(result["table2"] or summary_markdown(result["summary"], references=result["references"]))
    print()
    for file in result["files"]:
        print(file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
