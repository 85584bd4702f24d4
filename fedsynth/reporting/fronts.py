"""Accuracy–fairness fronts: every method's fairness knob swept, per dataset × split.

Plain functions on ``results.json`` records (as the ``fedsynth`` command writes them):

* :func:`front_row`: one run as a row: dataset, split, method family, the setting of its fairness
  knobs, accuracy, |SPD|, |EOD|;
* :func:`front_points`: one point per setting, mean ± std over seeds;
* :func:`pareto_front`: the non-dominated points of one method (higher accuracy, lower |F|);
* :func:`best_accuracy_at`: the best mean accuracy each method reaches at mean |SPD| ≤ a bound;
* :func:`fronts_markdown`: that table for |SPD| ≤ 0.02 / 0.05;
* :func:`plot_fronts`: accuracy–|SPD| and accuracy–|EOD| per dataset × split, one colour per
  method, non-dominated points joined, the paper's points marked;
* :func:`write_fronts`: the three files, as ``fedsynth-compare --fronts`` writes them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fedsynth.reporting.paper import DATASET_TITLES, TABLE2
from fedsynth.reporting.results import dataset_name, method_name, split_label

FRONT_KNOBS: dict[str, tuple[str, ...]] = {
    "single_shot": ("fairness", "fairness_temperature", "rho_o", "server_rho", "synthetic_labels", "label_epsilon", "synthetic_size", "k_max"),
    "centralized": ("fairness", "fairness_temperature", "rho"),
    "centralized EG": ("eg_eps",),
    "fedavg": (),
    "fairfed": ("beta",),
    "fair_fate": ("lambda0", "beta0", "fairness_metric"),
    "local": ("variant", "rho"),
}
"""Per method family, the method keys that make one point of its front (the knobs swept)."""

LINEAR_MEASURES = ("covariance", "eo_covariance")
"""Measures that take no temperature."""

BOUNDS = (0.02, 0.05)
"""The |SPD| bounds of :func:`fronts_markdown`."""

FAIR_FATE_PAPER = {"law_school_race": (89.1, 0.002), "dutch_gender": (80.9, 0.084)}
"""FAIR-FATE's own (accuracy %, SPD) as its paper reports them (100 rounds; Salazar et al. 2023)."""

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def method_family(record: dict[str, Any]) -> str:
    """The method a run belongs to on the fronts: its ``method`` name, with centralized
    ExponentiatedGradient apart from centralized ℓ_r + ρ/2·F² (plain is its ρ = 0 point)."""
    method = record["config"].get("method") or {}
    name = method_name(record)
    if name == "centralized" and method.get("variant") == "exponentiated_gradient":
        return "centralized EG"
    return name


def front_row(record: dict[str, Any]) -> dict[str, Any]:
    """One run as a row of the fronts: ``dataset``, ``split``, ``method``, ``setting`` (its knobs,
    :data:`FRONT_KNOBS`, as ``key=value`` text), ``seed``, ``accuracy``, ``abs_spd``, ``abs_eod``."""
    method = record["config"].get("method") or {}
    family = method_family(record)
    knobs = dict(method)
    if family == "centralized" and method.get("variant") == "plain":
        knobs["rho"] = 0.0
    if method.get("synthetic_labels") != "noisy_proportional":
        knobs.pop("label_epsilon", None)  # used by noisy_proportional only
    if knobs.get("fairness") in LINEAR_MEASURES:
        knobs.pop("fairness_temperature", None)  # τ shapes the gap measures only
    if all(float(knobs.get(key, 0)) == 0 for key in ("rho", "rho_o", "rho_s", "server_rho")):
        knobs.pop("fairness", None)  # no penalty: the measure plays no part
        knobs.pop("fairness_temperature", None)
    setting = " ".join(f"{key}={knobs[key]}" for key in FRONT_KNOBS.get(family, ()) if key in knobs)
    return {
        "dataset": dataset_name(record),
        "split": split_label(record),
        "method": family,
        "setting": setting,
        "seed": int(record.get("seed", record["config"].get("seed", 0))),
        "accuracy": float(record["accuracy"]),
        "abs_spd": abs(float(record["spd"])),
        "abs_eod": abs(float(record["eod"])),
    }


def front_points(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One point per (dataset, split, method, setting): ``<metric>_mean``, ``<metric>_std`` over
    seeds (sample std; NaN for one seed) for accuracy, |SPD| and |EOD|, and ``seeds``. Runs that
    differ only in knobs without effect (a measure at ρ = 0, τ of a linear measure) are one setting;
    of such duplicates each seed counts once."""
    runs = pd.DataFrame([front_row(r) for r in records])
    if runs.empty:
        raise ValueError("no runs to draw fronts from")
    keys = ["dataset", "split", "method", "setting"]
    runs = runs.drop_duplicates([*keys, "seed"])
    rows = []
    for key, group in runs.groupby(keys, sort=True):
        row = dict(zip(keys, key))
        for metric in ("accuracy", "abs_spd", "abs_eod"):
            values = group[metric].to_numpy(dtype=float)
            row[f"{metric}_mean"] = float(values.mean())
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        row["seeds"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_front(points: pd.DataFrame, fairness: str = "abs_spd") -> pd.DataFrame:
    """The points no other point of ``points`` dominates (at least as accurate and at least as
    fair, better in one), by mean accuracy and mean ``fairness`` (``abs_spd`` or ``abs_eod``),
    sorted by that fairness."""
    ordered = points.sort_values([f"{fairness}_mean", "accuracy_mean"], ascending=[True, False])
    kept, best = [], -math.inf
    for index, row in ordered.iterrows():
        if row["accuracy_mean"] > best:
            kept.append(index)
            best = row["accuracy_mean"]
    return ordered.loc[kept]


def best_accuracy_at(points: pd.DataFrame, bound: float, fairness: str = "abs_spd") -> pd.DataFrame:
    """Per (dataset, split, method), the point with the best mean accuracy among those whose mean
    ``fairness`` is at most ``bound`` (methods with no such point are left out)."""
    within = points[points[f"{fairness}_mean"] <= bound]
    if within.empty:
        return within
    best = within.loc[within.groupby(["dataset", "split", "method"])["accuracy_mean"].idxmax()]
    return best.reset_index(drop=True)


def _cell(row: pd.Series | None) -> str:
    if row is None:
        return "—"
    std = "" if math.isnan(row["accuracy_std"]) else f" ± {100 * row['accuracy_std']:.2f}"
    return f"{100 * row['accuracy_mean']:.2f}{std} (\\|SPD\\| {row['abs_spd_mean']:.3f}; {row['setting'] or 'default'})"


def fronts_markdown(points: pd.DataFrame, bounds: Sequence[float] = BOUNDS) -> str:
    """A Markdown table per dataset × split: each method's best mean accuracy (%, ± std over
    seeds) at mean |SPD| ≤ each bound, with the |SPD| and the setting that reach it."""
    best = {bound: best_accuracy_at(points, bound) for bound in bounds}
    lines = []
    for (dataset, split), group in points.groupby(["dataset", "split"], sort=True):
        lines += [f"### {DATASET_TITLES.get(dataset, dataset)}, {split}", ""]
        lines.append("| method | " + " | ".join(f"best accuracy at \\|SPD\\| ≤ {b}" for b in bounds) + " |")
        lines.append("|---|" + "---|" * len(bounds))
        for method in sorted(group["method"].unique()):
            cells = []
            for bound in bounds:
                match = best[bound]
                match = match[(match["dataset"] == dataset) & (match["split"] == split) & (match["method"] == method)] if len(match) else match
                cells.append(_cell(match.iloc[0] if len(match) else None))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_fronts(records: Sequence[dict[str, Any]], out_dir: Path, name: str = "fronts") -> dict[str, Path]:
    """Write ``<name>.md`` (:func:`fronts_markdown`), ``<name>.csv`` (the points of
    :func:`front_points`) and ``<name>.png`` (:func:`plot_fronts`) into ``out_dir``; return their
    paths by kind (``markdown``, ``csv``, ``plot``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    points = front_points(records)
    markdown = out_dir / f"{name}.md"
    markdown.write_text(fronts_markdown(points), encoding="utf-8")
    csv = out_dir / f"{name}.csv"
    points.to_csv(csv, index=False)
    return {"markdown": markdown, "csv": csv, "plot": plot_fronts(points, out_dir / f"{name}.png")}


def _paper_points(dataset: str, split: str) -> list[tuple[str, float, float]]:
    """(label, accuracy, |SPD|) the papers report for this dataset (IID splits only)."""
    if split != "iid":
        return []
    marks = [
        (f"paper ({kind})", accuracy / 100, abs(spd))
        for kind in ("full", "small")
        for accuracy, spd in TABLE2.get(kind, {}).get(dataset, {}).values()
    ]
    if dataset in FAIR_FATE_PAPER:
        accuracy, spd = FAIR_FATE_PAPER[dataset]
        marks.append(("FAIR-FATE paper", accuracy / 100, abs(spd)))
    return marks


def plot_fronts(points: pd.DataFrame, path: str | Path) -> Path:
    """One PNG: a row per dataset × split, columns accuracy–|SPD| and accuracy–|EOD|; each method
    one colour, every point drawn faintly with its seed std as error bars, its non-dominated points
    joined; the single-shot paper's Table 2 points (×) and FAIR-FATE's paper points (+) on the
    |SPD| panels of IID splits."""
    panels = list(points.groupby(["dataset", "split"], sort=True))
    methods = sorted(points["method"].unique())
    colors = {method: COLORS[i % len(COLORS)] for i, method in enumerate(methods)}
    fig = Figure(figsize=(11, 3.6 * len(panels)))
    axes = np.atleast_2d(fig.subplots(len(panels), 2, squeeze=False))
    for row, ((dataset, split), group) in enumerate(panels):
        for col, fairness in enumerate(("abs_spd", "abs_eod")):
            ax = axes[row, col]
            for method, series in group.groupby("method"):
                color = colors[method]
                ax.errorbar(
                    series[f"{fairness}_mean"], series["accuracy_mean"],
                    xerr=series[f"{fairness}_std"].fillna(0), yerr=series["accuracy_std"].fillna(0),
                    fmt="o", color=color, alpha=0.35, markersize=4, linewidth=0.8,
                )
                front = pareto_front(series, fairness)
                ax.plot(front[f"{fairness}_mean"], front["accuracy_mean"], "-o", color=color, markersize=5, label=method)
            if fairness == "abs_spd":
                for label, accuracy, spd in _paper_points(dataset, split):
                    marker = "+" if label.startswith("FAIR-FATE") else "x"
                    ax.plot(spd, accuracy, marker, color="black", markersize=8, label=label)
            ax.set_xlabel("|SPD|" if fairness == "abs_spd" else "|EOD|")
            ax.set_ylabel("accuracy")
            ax.set_title(f"{DATASET_TITLES.get(dataset, dataset)}, {split}", fontsize=10)
            ax.grid(alpha=0.3)
            handles, labels = ax.get_legend_handles_labels()
            unique = dict(zip(labels, handles))
            ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
