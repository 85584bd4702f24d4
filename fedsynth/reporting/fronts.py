"""Accuracy–fairness fronts: every method's fairness knob swept, per dataset × split.

Plain functions on ``results.json`` records (as the ``fedsynth`` command writes them):

* :func:`front_row`: one run as a row: dataset, split, method family, its knobs (the method's own
  settings, read from its config), accuracy, balanced accuracy, |SPD|, |EOD|, the constant
  classifier's accuracy on the same test rows;
* :func:`front_points`: one point per setting, mean ± std over seeds, labelled by the knobs that
  vary among its family's points;
* :func:`front_references`: the reference points: the constant classifier and the centralized
  plain model, per dataset × split;
* :func:`pareto_front`: the non-dominated points of one method (higher accuracy, lower |F|);
* :func:`best_accuracy_at`: the best mean accuracy (or balanced accuracy) each method reaches at
  mean |SPD| ≤ a bound;
* :func:`fronts_markdown`: those tables for |SPD| ≤ 0.02 / 0.05, the references first, ▽ where the
  constant classifier weakly dominates;
* :func:`plot_fronts`: accuracy–|SPD|, accuracy–|EOD| and balanced accuracy–|SPD| per dataset ×
  split, one colour per method, non-dominated points joined, the paper's points and the
  references marked;
* :func:`write_fronts`: the three files, as ``fedsynth-compare --fronts`` writes them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fedsynth.reporting.collect import mean_and_std
from fedsynth.reporting.paper import DATASET_TITLES, TABLE2
from fedsynth.reporting.results import (
    constant_reference, dataset_name, is_reference, method_name, method_settings, split_label,
)

PENALTY_WEIGHTS = ("rho", "rho_o", "rho_s", "server_rho")
"""Settings that weight a fairness penalty (single_shot's, centralized's fair variant, any
method's with these names): when all of a run's are 0, its ``fairness`` measure plays no part."""

LINEAR_MEASURES = ("covariance", "eo_covariance")
"""Measures that take no temperature."""

BOUNDS = (0.02, 0.05)
"""The |SPD| bounds of :func:`fronts_markdown`."""

FAIR_FATE_PAPER = {"law_school_race": (89.1, 0.002), "dutch_gender": (80.9, 0.084)}
"""FAIR-FATE's own (accuracy %, SPD) as its paper reports them (100 rounds; Salazar et al. 2023)."""

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
METRICS = ("accuracy", "balanced_accuracy", "abs_spd", "abs_eod", "constant_accuracy")
"""Per-run numbers a point averages."""


def method_family(record: dict[str, Any]) -> str:
    """The method a run belongs to on the fronts: its ``method`` name, and its ``variant`` setting
    when the method has one (e.g. ``centralized exponentiated_gradient`` apart from ``centralized
    fair``): a variant is another algorithm, with a front of its own."""
    variant = (record["config"].get("method") or {}).get("variant")
    return method_name(record) + (f" {variant}" if variant else "")


def active_knobs(settings: dict[str, Any]) -> dict[str, Any]:
    """A run's method settings without those that have no effect in it, by their names: a
    ``fairness`` measure (and its ``fairness_temperature``) when every :data:`PENALTY_WEIGHTS`
    setting is 0, the temperature of a linear measure, ``label_epsilon`` unless
    ``synthetic_labels`` is ``noisy_proportional``, and ``variant`` (it names the family)."""
    knobs = {key: value for key, value in settings.items() if key != "variant"}
    if knobs.get("synthetic_labels") != "noisy_proportional":
        knobs.pop("label_epsilon", None)
    if knobs.get("fairness") in LINEAR_MEASURES:
        knobs.pop("fairness_temperature", None)
    weights = [key for key in PENALTY_WEIGHTS if key in knobs]
    if weights and all(float(knobs[key] or 0) == 0 for key in weights):
        knobs.pop("fairness", None)  # no penalty: the measure plays no part
        knobs.pop("fairness_temperature", None)
    return knobs


def setting_value(record: dict[str, Any], key: str) -> Any:
    """The method setting ``key`` of a run, a dotted path into its settings (:func:`method_settings`;
    e.g. ``privacy.epsilon``), or ``"—"`` when the run's method has no such setting."""
    value: Any = method_settings(record)
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return "—"
        value = value[part]
    return value


def front_row(record: dict[str, Any], by: str | None = None) -> dict[str, Any]:
    """One run as a row of the fronts: ``dataset``, ``split``, ``by``, ``method``
    (:func:`method_family`), ``knobs`` (its :func:`active_knobs` as JSON), ``seed``, ``accuracy``,
    ``balanced_accuracy``, ``abs_spd``, ``abs_eod``, ``constant_accuracy``. With ``by`` (a method
    setting, :func:`setting_value`), ``by`` holds its value and the split label ends with
    ``key=value``: every table and panel of the fronts is then one per value."""
    def number(value: Any) -> float:
        return float(value) if value is not None else math.nan

    value = setting_value(record, by) if by else ""
    return {
        "dataset": dataset_name(record),
        "split": split_label(record) + (f", {by}={_label(value)}" if by else ""),
        "by": json.dumps(value),
        "method": method_family(record),
        "knobs": json.dumps(active_knobs(method_settings(record)), sort_keys=True),
        "seed": int(record.get("seed", record["config"].get("seed", 0))),
        "accuracy": number(record.get("accuracy")),
        "balanced_accuracy": number(record.get("balanced_accuracy")),
        "abs_spd": abs(number(record.get("spd"))),
        "abs_eod": abs(number(record.get("eod"))),
        "constant_accuracy": number(constant_reference(record).get("accuracy")),
    }


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else "null" if value is None else str(value)


def _average(group: pd.DataFrame, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the mean and std of :data:`METRICS` over ``group`` and its ``seeds``."""
    return row | mean_and_std(group, METRICS) | {"seeds": len(group)}


def front_points(records: Iterable[dict[str, Any]], by: str | None = None) -> pd.DataFrame:
    """One point per (dataset, split, method, knobs) of the runs that are not references:
    ``<metric>_mean``, ``<metric>_std`` over seeds (sample std; NaN for one seed) of accuracy,
    balanced accuracy, |SPD|, |EOD| and the constant classifier's accuracy, ``seeds``,
    ``setting`` (the knobs that vary among the method's points of the same dataset and split,
    ``key=value``; ``default`` when none does) and ``dominated`` (the constant classifier at least as accurate on the same runs'
    test rows). Runs that differ only in knobs without effect (:func:`active_knobs`) are one
    setting; of such duplicates each seed counts once. ``by``: as :func:`front_row`."""
    runs = pd.DataFrame([front_row(r, by) for r in records if not is_reference(r)])
    if runs.empty:
        raise ValueError("no runs to draw fronts from")
    keys = ["dataset", "split", "by", "method", "knobs"]
    runs = runs.drop_duplicates([*keys, "seed"])
    rows = [_average(group, dict(zip(keys, key))) for key, group in runs.groupby(keys, sort=True)]
    points = pd.DataFrame(rows).assign(setting="")
    for _, group in points.groupby(["method", "dataset", "split"]):
        knobs = [json.loads(k) for k in group["knobs"]]
        names = sorted({name for k in knobs for name in k}, key=lambda name: next(i for k in knobs for i, n in enumerate(k) if n == name))
        varied = [n for n in names if len({json.dumps(k.get(n)) for k in knobs}) > 1]
        for index, k in zip(group.index, knobs):
            points.loc[index, "setting"] = " ".join(f"{n}={_label(k[n])}" for n in varied if n in k) or "default"
    points["dominated"] = points["accuracy_mean"] <= points["constant_accuracy_mean"]
    return points


def front_references(records: Iterable[dict[str, Any]], by: str | None = None) -> pd.DataFrame:
    """Per dataset × split of the non-reference runs: the ``constant classifier`` (their
    ``reference.constant``, one run per seed: accuracy, balanced accuracy 0.5, |SPD| = |EOD| = 0)
    and the ``centralized plain`` model (the reference runs of the same seeds, when there are
    any), with the columns of :func:`front_points` (``method`` names the reference)."""
    records = list(records)
    runs = pd.DataFrame([{**front_row(r, by), "reference": is_reference(r)} for r in records])
    rows = []
    if runs.empty:
        runs = pd.DataFrame(columns=["dataset", "split", "reference", "seed"])
    for (dataset, split), group in runs[~runs["reference"]].groupby(["dataset", "split"], sort=True):
        seeds = group.drop_duplicates("seed")
        constant = seeds.assign(accuracy=seeds["constant_accuracy"], balanced_accuracy=0.5, abs_spd=0.0, abs_eod=0.0)
        if np.isfinite(constant["accuracy"].to_numpy(dtype=float)).any():
            rows.append(_average(constant, {"dataset": dataset, "split": split, "method": "constant classifier"}))
        plain = runs[runs["reference"] & (runs["dataset"] == dataset) & (runs["split"] == split)
                     & runs["seed"].isin(set(seeds["seed"]))].drop_duplicates("seed")
        if len(plain):
            rows.append(_average(plain, {"dataset": dataset, "split": split, "method": "centralized plain"}))
    return pd.DataFrame(rows, columns=["dataset", "split", "method", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")), "seeds"])


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


def best_accuracy_at(
    points: pd.DataFrame, bound: float, fairness: str = "abs_spd", metric: str = "accuracy"
) -> pd.DataFrame:
    """Per (dataset, split, method), the point with the best mean ``metric`` (``accuracy`` or
    ``balanced_accuracy``) among those whose mean ``fairness`` is at most ``bound`` (methods with
    no such point are left out)."""
    within = points[(points[f"{fairness}_mean"] <= bound) & points[f"{metric}_mean"].notna()]
    if within.empty:
        return within
    best = within.loc[within.groupby(["dataset", "split", "method"])[f"{metric}_mean"].idxmax()]
    return best.reset_index(drop=True)


def _cell(row: pd.Series | None, metric: str = "accuracy") -> str:
    if row is None:
        return "—"
    std = "" if math.isnan(row[f"{metric}_std"]) else f" ± {100 * row[f'{metric}_std']:.2f}"
    mark = " ▽" if metric == "accuracy" and bool(row.get("dominated", False)) else ""
    setting = f"; {row['setting']}" if isinstance(row.get("setting"), str) else ""
    return f"{100 * row[f'{metric}_mean']:.2f}{std}{mark} (\\|SPD\\| {row['abs_spd_mean']:.3f}{setting})"


FRONTS_NOTE = (
    "References, on the same splits and seeds: the *constant classifier* (the majority label of the pooled "
    "training rows; \\|SPD\\| = 0, balanced accuracy 50 %) and the *centralized plain* model (ℓ_r on the pooled "
    "training rows, `+experiment=reference` or `+experiment=fronts method=centralized`). ▽: the constant classifier "
    "is at least as accurate as that point (mean over the same seeds) and its \\|SPD\\| = 0 is never more: the "
    "point is weakly dominated on accuracy and \\|SPD\\|."
)


def fronts_markdown(points: pd.DataFrame, bounds: Sequence[float] = BOUNDS, references: pd.DataFrame | None = None) -> str:
    """Per dataset × split, two Markdown tables: each method's best mean accuracy and best mean
    balanced accuracy (%, ± std over seeds) at mean |SPD| ≤ each bound, with the |SPD| and the
    setting that reach it; the reference rows (``references``, :func:`front_references`) first,
    ▽ on an accuracy the constant classifier weakly dominates."""
    best = {(bound, metric): best_accuracy_at(points, bound, metric=metric)
            for bound in bounds for metric in ("accuracy", "balanced_accuracy")}
    references = references if references is not None else pd.DataFrame(columns=["dataset", "split", "method"])
    lines = []
    for (dataset, split), group in points.groupby(["dataset", "split"], sort=True):
        lines += [f"### {DATASET_TITLES.get(dataset, dataset)}, {split}", ""]
        mine = references[(references["dataset"] == dataset) & (references["split"] == split)]
        for metric, title in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy")):
            lines.append("| method | " + " | ".join(f"best {title} at \\|SPD\\| ≤ {b}" for b in bounds) + " |")
            lines.append("|---|" + "---|" * len(bounds))
            for _, reference in mine.iterrows():
                cell = _cell(reference, metric)
                lines.append(f"| *{reference['method']}* | " + " | ".join(
                    cell if reference["abs_spd_mean"] <= b else "—" for b in bounds) + " |")
            for method in sorted(group["method"].unique()):
                cells = []
                for bound in bounds:
                    match = best[(bound, metric)]
                    match = match[(match["dataset"] == dataset) & (match["split"] == split) & (match["method"] == method)] if len(match) else match
                    cells.append(_cell(match.iloc[0] if len(match) else None, metric))
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    if len(references) or points["dominated"].any():
        lines += [FRONTS_NOTE, ""]
    return "\n".join(lines)


def fronts_by_markdown(points: pd.DataFrame, by: str, bound: float = 0.05) -> str:
    """Per dataset, one Markdown table: a row per method, a column per value of the setting ``by``
    (the ``by`` column of :func:`front_points`), each cell the method's best mean accuracy (± std
    over seeds) at mean |SPD| ≤ ``bound`` for that value, with that |SPD|; where no point reaches
    the bound, — and the method's fairest point (accuracy at |SPD|); blank where the method has no
    run. The first row is the constant classifier's accuracy on the same test rows."""
    best = best_accuracy_at(points, bound)
    lines = []
    for dataset, group in points.groupby("dataset", sort=True):
        values = sorted(group["by"].unique(), key=lambda v: (json.loads(v) is None, str(type(json.loads(v))), json.loads(v) or 0))
        lines += [f"### {DATASET_TITLES.get(dataset, dataset)}: best accuracy at \\|SPD\\| ≤ {bound} by {by}", ""]
        lines.append("| method | " + " | ".join(f"{by}={_label(json.loads(v))}" for v in values) + " |")
        lines.append("|---|" + "---|" * len(values))
        constant = [group.loc[group["by"] == value, "constant_accuracy_mean"].mean() for value in values]
        lines.append("| *constant classifier* | " + " | ".join("" if math.isnan(c) else f"{100 * c:.2f} (0)" for c in constant) + " |")
        for method in sorted(group["method"].unique()):
            cells = []
            for value in values:
                mine = group[(group["method"] == method) & (group["by"] == value)]
                match = best[(best["dataset"] == dataset) & (best["method"] == method) & (best["by"] == value)] if len(best) else best
                if mine.empty:
                    cells.append("")
                elif len(match):
                    row = match.iloc[0]
                    std = "" if math.isnan(row["accuracy_std"]) else f" ± {100 * row['accuracy_std']:.2f}"
                    cells.append(f"{100 * row['accuracy_mean']:.2f}{std} ({row['abs_spd_mean']:.3f})")
                else:
                    fairest = mine.loc[mine["abs_spd_mean"].idxmin()]
                    cells.append(f"— (fairest: {100 * fairest['accuracy_mean']:.2f} at {fairest['abs_spd_mean']:.3f})")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_fronts(
    records: Sequence[dict[str, Any]], out_dir: Path, name: str = "fronts", by: str | None = None
) -> dict[str, Path | str]:
    """Write ``<name>.md`` (:func:`fronts_markdown`; with ``by`` first :func:`fronts_by_markdown`),
    ``<name>.csv`` (the references and the points of :func:`front_points`) and ``<name>.png``
    (:func:`plot_fronts`) into ``out_dir``; return their paths by kind (``markdown``, ``csv``,
    ``plot``) and ``warning`` (points with fewer seeds than others, also at the top of the
    Markdown; ``""`` when none). ``by``: a method setting whose values split every table and panel
    (:func:`front_row`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records = list(records)
    points = front_points(records, by)
    references = front_references(records, by)
    counts = points["seeds"].astype(int)
    warning = ""
    if counts.nunique() > 1:
        short = points[counts < counts.max()]
        warning = (f"points have {'/'.join(map(str, sorted(set(counts))))} seeds: {len(short)} of {len(points)} have fewer "
                   f"than {counts.max()} (" + "; ".join(f"{r['method']} {r['setting']} ({r['dataset']}, {r['split']}): "
                                                         f"{r['seeds']}" for _, r in short.head(8).iterrows())
                   + ("; …" if len(short) > 8 else "") + ")")
    markdown = out_dir / f"{name}.md"
    summary = fronts_by_markdown(points, by) + "\n" if by else ""
    markdown.write_text((f"**Warning: {warning}.**\n\n" if warning else "") + summary + fronts_markdown(points, references=references),
                        encoding="utf-8")
    csv = out_dir / f"{name}.csv"
    pd.concat([references, points], ignore_index=True).to_csv(csv, index=False)
    return {"markdown": markdown, "csv": csv, "plot": plot_fronts(points, out_dir / f"{name}.png", references),
            "warning": warning}


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


PANELS = (("accuracy", "abs_spd"), ("accuracy", "abs_eod"), ("balanced_accuracy", "abs_spd"))
"""The (y, x) of each column of :func:`plot_fronts`."""
REFERENCE_MARKERS = {"constant classifier": "*", "centralized plain": "D"}


def plot_fronts(points: pd.DataFrame, path: str | Path, references: pd.DataFrame | None = None) -> Path:
    """One PNG: a row per dataset × split, columns accuracy–|SPD|, accuracy–|EOD| and balanced
    accuracy–|SPD|; each method one colour, every point drawn faintly with its seed std as error
    bars, its non-dominated points joined; the references in black (★ the constant classifier, with
    a dotted line at its accuracy: points on or below it are weakly dominated; ◆ the centralized
    plain model); the single-shot paper's Table 2 points (×) and FAIR-FATE's paper points (+) on the
    accuracy–|SPD| panels of IID splits."""
    panels = list(points.groupby(["dataset", "split"], sort=True))
    methods = sorted(points["method"].unique())
    colors = {method: COLORS[i % len(COLORS)] for i, method in enumerate(methods)}
    fig = Figure(figsize=(16, 3.6 * len(panels)))
    axes = np.atleast_2d(fig.subplots(len(panels), len(PANELS), squeeze=False))
    references = references if references is not None else pd.DataFrame(columns=["dataset", "split", "method"])
    for row, ((dataset, split), group) in enumerate(panels):
        for col, (metric, fairness) in enumerate(PANELS):
            ax = axes[row, col]
            for method, series in group.groupby("method"):
                color = colors[method]
                ax.errorbar(
                    series[f"{fairness}_mean"], series[f"{metric}_mean"],
                    xerr=series[f"{fairness}_std"].fillna(0), yerr=series[f"{metric}_std"].fillna(0),
                    fmt="o", color=color, alpha=0.35, markersize=4, linewidth=0.8,
                )
                front = pareto_front(series.assign(accuracy_mean=series[f"{metric}_mean"]), fairness)
                ax.plot(front[f"{fairness}_mean"], front[f"{metric}_mean"], "-o", color=color, markersize=5, label=method)
            for _, reference in references[(references["dataset"] == dataset) & (references["split"] == split)].iterrows():
                y, x = reference[f"{metric}_mean"], reference[f"{fairness}_mean"]
                ax.plot([x], [y], REFERENCE_MARKERS[reference["method"]], color="black", linestyle="none",
                        markersize=10 if reference["method"].startswith("constant") else 6, label=reference["method"])
                if reference["method"].startswith("constant") and metric == "accuracy":
                    ax.axhline(y, color="black", linestyle=":", linewidth=0.8)
            if (metric, fairness) == ("accuracy", "abs_spd"):
                for label, accuracy, spd in _paper_points(dataset, split):
                    marker = "+" if label.startswith("FAIR-FATE") else "x"
                    ax.plot(spd, accuracy, marker, color="black", markersize=8, label=label)
            ax.set_xlabel("|SPD|" if fairness == "abs_spd" else "|EOD|")
            ax.set_ylabel(metric.replace("_", " "))
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
