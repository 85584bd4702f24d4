"""The method comparison (``fedsynth-compare``): one row per dataset, split and method setting
(e.g. ``fairfed β=1 R=20``), mean ± std over the seeds found, as Markdown, CSV and one
accuracy–|SPD| figure.

The communication columns are measured from the messages the run sent: bytes up / down and round
trips of the method's protocol; the harness's final ``evaluate`` exchange (θ to the clients, their
test counts back, identical for every method) is left out when the file lists its exchanges
(``sends``), else the totals are shown and marked *. "Client statistics" lists what the server
received besides the model or the data rows (``info.client_statistics``, recorded by the server's
ledger from every reply it received).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedsynth.reporting import plots
from fedsynth.reporting.collect import COMPARISON_COLUMNS, summarize
from fedsynth.reporting.paper import DATASETS
from fedsynth.reporting.tables import comparison_markdown

PAYLOAD = {
    "centralized": "raw training rows (x, s, y)",
    "single_shot": "synthetic rows (x̂, ŝ, ŷ)",
    "fedavg": "local model θ_k, every round",
    "fairfed": "local model θ_k, every round",
    "fair_fate": "local model θ_k, every round",
    "local": "nothing",
}
"""What each method's clients send as their payload (by the method's definition)."""

METHOD_ORDER = ("centralized", "single_shot", "fedavg", "fairfed", "fair_fate", "local")

CSV_COLUMNS = (
    *COMPARISON_COLUMNS, "method", "runs", "seeds",
    "accuracy_mean", "accuracy_std", "spd_mean", "spd_std", "abs_spd_mean", "abs_spd_std", "eod_mean", "eod_std",
    "protocol_bytes_up_mean", "protocol_bytes_down_mean", "bytes_scope", "round_trips_mean", "payload",
    "client_statistics", "mia_auc_mean", "dcr_train_p05_mean", "dcr_holdout_p05_mean", "min_distance_mean",
    "wall_seconds_mean",
)
"""The columns of ``comparison.csv`` (accuracy as a fraction, as in every CSV of the reports)."""


def _rank(value: str, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def compare_methods(runs: pd.DataFrame) -> pd.DataFrame:
    """The comparison rows of ``runs`` (a :func:`~fedsynth.reporting.collect.load_runs` frame):
    :func:`~fedsynth.reporting.collect.summarize` over :data:`COMPARISON_COLUMNS` plus the
    ``method`` name and its ``payload``, ordered by dataset (the paper's order), iid first, then
    method (:data:`METHOD_ORDER`)."""
    summary = summarize(runs, COMPARISON_COLUMNS)
    summary["method"] = summary["setting"].str.split(" ").str[0]
    summary["payload"] = summary["method"].map(lambda name: PAYLOAD.get(name, "?"))
    order = summary.apply(
        lambda r: (_rank(r["dataset"], DATASETS), r["dataset"], r["partition"] != "iid", r["partition"],
                   _rank(r["method"], METHOD_ORDER), r["setting"]),
        axis=1,
    )
    return summary.loc[sorted(summary.index, key=order.__getitem__)].reset_index(drop=True)


def write_comparison(runs: pd.DataFrame, out_dir: Path, name: str = "comparison") -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.png`` of :func:`compare_methods` into
    ``out_dir``; return their paths by kind (``markdown``, ``csv``, ``plot``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = compare_methods(runs)
    markdown = out_dir / f"{name}.md"
    markdown.write_text(comparison_markdown(rows), encoding="utf-8")
    csv = out_dir / f"{name}.csv"
    rows[list(CSV_COLUMNS)].to_csv(csv, index=False)
    return {"markdown": markdown, "csv": csv, "plot": plots.comparison(rows, out_dir / f"{name}.png")}
