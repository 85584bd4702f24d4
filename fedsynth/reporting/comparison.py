"""The method comparison (``fedsynth-compare``): one row per dataset, split and method setting
(the method and its settings that vary, e.g. ``fairfed beta=1``), mean ± std over the seeds found,
after the reference rows (the constant classifier, the centralized plain model), as Markdown, CSV
and one accuracy–|SPD| figure.

Every column comes from the results files, for any method: the settings from the method's config,
the communication columns from the messages the run sent (bytes up / down and round trips of the
method's protocol; the harness's final ``evaluate`` exchange, θ to the clients and their test counts
back, the same for every method, is left out when the file lists its exchanges (``sends``), else
the totals are shown and marked *), the payload and "client statistics" from the server's ledger
of every reply it received (``info.client_arrays``, ``info.client_statistics``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedsynth.reporting import plots
from fedsynth.reporting.collect import group_summary, reference_rows, seeds_warning, summarize
from fedsynth.reporting.paper import DATASETS
from fedsynth.reporting.tables import comparison_markdown, groups_markdown

CSV_COLUMNS = (
    "dataset", "partition", "setting", "method", "reference", "runs", "seeds",
    "accuracy_mean", "accuracy_std", "dominated", "balanced_accuracy_mean", "balanced_accuracy_std",
    "auc_mean", "auc_error_bound_mean", "spd_mean", "spd_std", "abs_spd_mean", "abs_spd_std", "eod_mean", "eod_std",
    "client_accuracy_min_mean", "client_abs_spd_max_mean", "client_abs_eod_max_mean", "constant_accuracy_mean",
    "protocol_bytes_up_mean", "protocol_bytes_down_mean", "bytes_scope", "round_trips_mean", "payload",
    "client_statistics", "mia_auc_mean", "dcr_train_p05_mean", "dcr_holdout_p05_mean", "min_distance_mean",
    "compute_seconds_mean", "wall_seconds_mean",
)
"""The columns of ``comparison.csv`` (accuracy as a fraction, as in every CSV of the reports); the
reference rows come first in each dataset and split."""


def _rank(value: str, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def compare_methods(runs: pd.DataFrame) -> pd.DataFrame:
    """The comparison rows of ``runs`` (a :func:`~fedsynth.reporting.collect.load_runs` frame):
    :func:`~fedsynth.reporting.collect.summarize` over every setting, ordered by dataset (the
    paper's order), iid first, then method name and setting. The centralized plain runs are the
    reference rows (:func:`comparison_references`), not method rows."""
    summary = summarize(runs[runs["reference"] == ""])
    if summary.empty:
        return summary
    order = summary.apply(
        lambda r: (_rank(r["dataset"], DATASETS), r["dataset"], r["partition"] != "iid", r["partition"],
                   r["method"], r["setting"]),
        axis=1,
    )
    return summary.loc[sorted(summary.index, key=order.__getitem__)].reset_index(drop=True)


def comparison_references(runs: pd.DataFrame) -> pd.DataFrame:
    """The reference rows of the comparison (:func:`~fedsynth.reporting.collect.reference_rows`):
    per dataset and split, the constant classifier of the compared runs and the centralized plain
    runs."""
    points = runs[runs["reference"] == ""]
    return reference_rows(runs, points if len(points) else runs)


def write_comparison(runs: pd.DataFrame, out_dir: Path, name: str = "comparison") -> dict[str, Path | str]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.png`` of :func:`compare_methods` into
    ``out_dir`` (the Markdown ends with the per-group table of
    :func:`~fedsynth.reporting.collect.group_summary` when a run's sensitive attribute has k > 2 groups); return their paths by kind (``markdown``, ``csv``, ``plot``) and ``warning``
    (:func:`~fedsynth.reporting.collect.seeds_warning`, also at the top of the Markdown; ``""``
    when every row has as many seeds)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = compare_methods(runs)
    references = comparison_references(runs)
    warning = seeds_warning(rows) if len(rows) else ""
    markdown = out_dir / f"{name}.md"
    text = comparison_markdown(rows, references)
    groups = group_summary(runs[runs["reference"] == ""])
    if not groups.empty:  # k groups: SPD and EOD are largest gaps
        text += "\n\n## Groups\n\n" + groups_markdown(groups) + "\n"
    markdown.write_text((f"**Warning: {warning}.**\n\n" if warning else "") + text, encoding="utf-8")
    csv = out_dir / f"{name}.csv"
    table = pd.concat([references, rows], ignore_index=True)
    table["method"] = table["method"].fillna("")
    table.reindex(columns=list(CSV_COLUMNS)).to_csv(csv, index=False)
    return {"markdown": markdown, "csv": csv, "plot": plots.comparison(rows, out_dir / f"{name}.png", references),
            "warning": warning}
