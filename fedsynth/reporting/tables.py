"""Markdown tables: the paper's Table 2 with its numbers beside ours, a summary of any sweep, the
method comparison. Every table shows the reference rows (:func:`.collect.reference_rows`: the
constant classifier and the centralized plain model on the same test rows) and balanced accuracy,
and marks with ▽ a setting the constant classifier weakly dominates (at least as accurate, and its
|SPD| = 0 is never more than the setting's)."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from fedsynth.reporting.collect import setting_columns, varying
from fedsynth.reporting.paper import (
    CITATION,
    DATASET_TITLES,
    DATASETS,
    FIGURE2_ACCURACY_DROP_RHO_O_10,
    FIGURE2_REMARKS,
    RHO_O,
    SMALL_SIZES,
    TABLE2_SETTING,
    table2_value,
)

KIND_TITLES = {"full": "N^train", "small": "N^train,small"}
DOMINATED = "▽"
"""The mark of a setting the constant classifier weakly dominates (see the module docstring)."""
DOMINATED_NOTE = (
    "▽: the constant classifier (always the majority label of the pooled training rows) is at least as "
    "accurate on the same test rows (mean over the same seeds), and its |SPD| = |EOD| = 0 is never more "
    "than the setting's: the setting is weakly dominated on accuracy and |SPD|."
)

# columns whose differences make separate Table 2 variants (dataset-dependent ones excluded);
# "inner" is the L-BFGS section of today's results, "inner_max_iter" its key in results written before it
VARIANT_COLUMNS = (
    "engine", "method", "init", "lambda_theta", "lambda_x", "k_max", "lr", "inner", "inner_max_iter",
    "fit_intercept", "partition",
)


def _fixed_point(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.0000"


def format_number(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals; ``—`` for NaN / None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return _fixed_point(value, digits)


def format_mean_std(mean: float, std: float, digits: int, scale: float = 1.0) -> str:
    """``mean ± std`` (scaled), or just the mean when there is no std (one seed)."""
    if mean is None or math.isnan(mean):
        return "—"
    if std is None or math.isnan(std):
        return format_number(mean * scale, digits)
    return f"{_fixed_point(mean * scale, digits)} ± {std * scale:.{digits}f}"


def accuracy_cell(row: pd.Series, digits: int = 2) -> str:
    """A setting's mean ± std accuracy in %, with :data:`DOMINATED` when the constant classifier
    weakly dominates it."""
    return format_mean_std(row["accuracy_mean"], row["accuracy_std"], digits, 100) + (
        f" {DOMINATED}" if bool(row.get("dominated", False)) else "")


def format_value(value: Any) -> str:
    """A setting value for a table cell or a title: ``1e-04``, ``10``, ``true``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.0e}" if abs(value) < 1e-2 else f"{value:g}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table."""
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


PRETTY = {"rho_o": "ρ_o", "rho_s": "ρ_s", "lambda_theta": "λ_θ", "lambda_x": "λ_x", "n_s": "N_s"}


def pretty(key: str) -> str:
    """The paper's symbol for a setting name (``rho_o`` -> ``ρ_o``), else the name."""
    return PRETTY.get(key, key)


def describe(values: dict[str, Any], symbols: dict[str, str] = PRETTY) -> str:
    """``λ_θ = 1e-03, k_max = 1000`` for a title (``symbols``: the names to show for keys)."""
    return ", ".join(f"{symbols.get(key, key)} = {format_value(value)}" for key, value in values.items())


# ----------------------------------------------------------------------------- Table 2


def table2_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary rows that fit Table 2: the paper's datasets, rho_s = 0, lambda_theta = 1e-3,
    N_s = N or N^small."""
    if summary.empty or not {"rho_o", "rho_s", "lambda_theta"} <= set(summary):
        return summary.iloc[0:0]
    mask = summary["dataset"].isin(DATASETS) & (summary["rho_s"] == 0) & summary["n_s_kind"].isin(["full", "small"])
    mask &= np.isclose(summary["lambda_theta"], TABLE2_SETTING["lambda_theta"])  # not figure2's 1e-4
    return summary[mask]


def table2_variants(summary: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Table 2 candidates split by the settings that differ among them (e.g. fit_intercept)."""
    frame = table2_frame(summary)
    if frame.empty:
        return []
    columns = varying(frame, VARIANT_COLUMNS)
    cell = ["n_s_kind", "dataset", "rho_o"]
    if frame.duplicated([*columns, *cell]).any():  # e.g. two label strategies for one cell
        columns += [c for c in ("synthetic_labels",) if c not in columns]
    if not columns:
        return [({}, frame)]
    return [
        (dict(zip(columns, key if isinstance(key, tuple) else (key,))), group)
        for key, group in frame.groupby(columns, dropna=False, sort=True)
    ]


def table2_markdown(
    summary: pd.DataFrame, title: str = "Table 2", level: int = 3, references: pd.DataFrame | None = None
) -> str:
    """Table 2 laid out like the paper's (N_s x rho_o rows; accuracy %, balanced accuracy % and SPD
    per dataset), each of our cells ``mean ± std`` over seeds with the paper's value beside it
    (the paper reports no balanced accuracy), the reference rows (``references``, from
    :func:`~fedsynth.reporting.collect.reference_rows`: the constant classifier and the centralized
    plain model on the same splits), ▽ on the cells the constant classifier weakly dominates, then
    the check at rho_o = 10 (ours at least as accurate and at most as unfair as the paper).

    Each variant (a setting that differs among the Table 2 runs) gets a heading of ``level``:
    ``title`` and the variant's settings; with an empty ``title`` (a page that has its own
    "Table 2" heading) a single variant gets none. Returns ``""`` when ``summary`` has no Table 2
    runs."""
    parts = []
    for variant, frame in table2_variants(summary):
        datasets = [d for d in DATASETS if d in set(frame["dataset"])]
        kinds = [k for k in ("full", "small") if k in set(frame["n_s_kind"])]
        rho_values = sorted(set(RHO_O) | set(frame["rho_o"]))
        header = ["N_s", "ρ_o"]
        for dataset in datasets:
            name = DATASET_TITLES[dataset]
            header += [f"{name} acc. % (ours)", "paper", "bal. acc. %", "SPD (ours)", "paper"]
        rows = []
        for kind in kinds:
            for rho in rho_values:
                cells = frame[(frame["n_s_kind"] == kind) & (frame["rho_o"] == rho)]
                if cells.empty and table2_value(kind, datasets[0] if datasets else "", rho) is None:
                    continue
                row = [KIND_TITLES[kind], format_value(float(rho))]
                for dataset in datasets:
                    ours = cells[cells["dataset"] == dataset]
                    paper = table2_value(kind, dataset, rho)
                    if ours.empty:
                        row += ["—", format_number(paper[0], 2) if paper else "—", "—", "—",
                                format_number(paper[1], 4) if paper else "—"]
                        continue
                    r = ours.iloc[0]
                    row += [
                        accuracy_cell(r),
                        format_number(paper[0] if paper else math.nan, 2),
                        format_mean_std(r["balanced_accuracy_mean"], r["balanced_accuracy_std"], 2, 100),
                        format_mean_std(r["spd_mean"], r["spd_std"], 4),
                        format_number(paper[1] if paper else math.nan, 4),
                    ]
                rows.append(row)
        rows += _table2_reference_rows(references, frame, datasets)
        seeds = sorted(set(frame["runs"]))
        fixed = {
            key: frame[key].iloc[0]
            for key in ("rho_s", "lambda_theta", "lambda_x", "k_max", "lr", "fit_intercept", "init", "engine")
            if key not in variant and key in frame and frame[key].nunique() == 1
        }
        label = describe(variant) if variant else ""
        words = f"{title} ({label})" if title and label else title or label
        heading = f"{'#' * level} {words}" if words else ""
        notes = (
            (f"Ours: mean ± sample std over {'/'.join(map(str, seeds))} seeds per cell " if seeds != [1]
             else "Ours: one seed per cell ")
            + f"({describe(fixed)}); N^train,small = {SMALL_SIZES['law_school_race']} (Law School) / "
            f"{SMALL_SIZES['dutch_gender']} (Dutch) balanced (ŝ, ŷ). "
            f"Paper: {CITATION}. SPD = P(ŷ=1 | s=1) − P(ŷ=1 | s=0) on all clients' test rows; "
            "balanced accuracy = mean of the true-positive and true-negative rates."
        )
        align = ["---", "--:"] + ["--:"] * (len(header) - 2)
        marks = DOMINATED_NOTE if frame["dominated"].any() else ""
        blocks = [heading, notes, markdown_table(header, rows, align), marks, targets_markdown(frame)]
        parts.append("\n\n".join(block for block in blocks if block))
    return "\n\n".join(parts)


def _table2_reference_rows(references: pd.DataFrame | None, frame: pd.DataFrame, datasets: list[str]) -> list[list[str]]:
    """The constant classifier's and the centralized plain model's rows of a Table 2 variant (its
    split and intercept), ``—`` where a dataset has no reference run."""
    if references is None or references.empty:
        return []
    same = references[references["fit_intercept"].isin(set(frame["fit_intercept"]))
                      & references["partition"].isin(set(frame["partition"]))]
    rows = []
    for name in ("constant classifier", "centralized plain"):
        row = ["reference", name]
        for dataset in datasets:
            match = same[(same["reference"] == name) & (same["dataset"] == dataset)]
            if match.empty or not match["runs"].iloc[0]:
                row += ["—", "—", "—", "—", "—"]
                continue
            r = match.iloc[0]
            row += [format_mean_std(r["accuracy_mean"], r["accuracy_std"], 2, 100), "—",
                    format_mean_std(r["balanced_accuracy_mean"], r["balanced_accuracy_std"], 2, 100),
                    format_mean_std(r["spd_mean"], r["spd_std"], 4), "—"]
        rows.append(row)
    return rows


def target_checks(frame: pd.DataFrame, rho_o: float = 10.0, kind: str = "full") -> list[dict[str, Any]]:
    """Ours vs the paper at one (rho_o, N_s) for each dataset: accuracy not lower and |SPD| not
    higher (means over seeds)."""
    checks = []
    for dataset in DATASETS:
        paper = table2_value(kind, dataset, rho_o)
        ours = frame[(frame["dataset"] == dataset) & (frame["rho_o"] == rho_o) & (frame["n_s_kind"] == kind)]
        if paper is None or ours.empty:
            continue
        r = ours.iloc[0]
        checks.append(
            {
                "dataset": dataset,
                "accuracy": r["accuracy_mean"] * 100,
                "paper_accuracy": paper[0],
                "abs_spd": r["abs_spd_mean"],
                "paper_abs_spd": abs(paper[1]),
                "accuracy_ok": r["accuracy_mean"] * 100 >= paper[0],
                "spd_ok": r["abs_spd_mean"] <= abs(paper[1]),
            }
        )
    return checks


def targets_markdown(frame: pd.DataFrame) -> str:
    """The rho_o = 10, N_s = N^train check as a short Markdown list."""
    checks = target_checks(frame)
    if not checks:
        return ""
    mark = {True: "✓", False: "✗"}
    lines = ["Target at ρ_o = 10, N_s = N^train (ours no less accurate and no more unfair than the paper):", ""]
    for c in checks:
        lines.append(
            f"- {DATASET_TITLES[c['dataset']]}: accuracy {c['accuracy']:.2f}% vs {c['paper_accuracy']:.2f}% "
            f"{mark[bool(c['accuracy_ok'])]}, |SPD| {c['abs_spd']:.4f} vs {c['paper_abs_spd']:.4f} "
            f"{mark[bool(c['spd_ok'])]}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- Figure 2


def figure2_markdown(summary: pd.DataFrame) -> str:
    """The Figure 2 numbers the paper's text states, beside ours where the runs have them:
    the accuracy drop from (rho_o, rho_s) = (0, 0) to (10, 0) on Law School (race), N_s = N."""
    lines = [FIGURE2_REMARKS]
    frame = summary[(summary["dataset"] == "law_school_race") & (summary["n_s_kind"] == "full") & (summary["rho_s"] == 0)]
    for key, group in frame.groupby(["lambda_theta", "k_max", "fit_intercept"], dropna=False):
        base, fair = group[group["rho_o"] == 0], group[group["rho_o"] == 10]
        if base.empty or fair.empty:
            continue
        drop = (base["accuracy_mean"].iloc[0] - fair["accuracy_mean"].iloc[0]) * 100
        lines.append(
            f"- Ours ({describe(dict(zip(['lambda_theta', 'k_max', 'fit_intercept'], key)))}): accuracy "
            f"{base['accuracy_mean'].iloc[0] * 100:.2f}% at (ρ_o, ρ_s) = (0, 0) and "
            f"{fair['accuracy_mean'].iloc[0] * 100:.2f}% at (10, 0), a drop of {drop:.2f} points "
            f"(paper: {FIGURE2_ACCURACY_DROP_RHO_O_10}%); SPD {base['spd_mean'].iloc[0]:.4f} -> {fair['spd_mean'].iloc[0]:.4f}."
        )
    return "\n\n".join(lines[:1] + ["\n".join(lines[1:])]) if len(lines) > 1 else lines[0]


# ----------------------------------------------------------------------------- any sweep


def summary_markdown(
    summary: pd.DataFrame, columns: Iterable[str] | None = None, references: pd.DataFrame | None = None
) -> str:
    """Every setting of a sweep, after the reference rows of its data settings (``references``,
    :func:`~fedsynth.reporting.collect.reference_rows`): the settings that vary, then accuracy (▽
    where the constant classifier weakly dominates), balanced accuracy, ROC AUC, SPD, EOD,
    covariance, the worst client's |SPD|, min distance (mean ± std over seeds), runs, and seconds
    per run: the method's compute time (the slowest client of each exchange plus the server's own
    work) and the engine's wall time (which includes starting Flower or the client processes)."""
    columns = list(columns) if columns is not None else varying(summary)
    columns = [c for c in columns if c not in ("n_s_kind",)] or ["dataset"]
    header = [*map(pretty, columns), "acc. %", "bal. acc. %", "AUC", "SPD", "EOD", "covariance",
              "worst client \\|SPD\\|", "min dist.", "runs", "compute s/run", "wall s/run"]
    rows = []
    frames = [references, summary] if references is not None and not references.empty else [summary]
    for frame in frames:
        for _, r in frame.iterrows():
            reference = bool(r.get("reference"))
            rows.append(
                ([f"*{r['reference']}*"] + [format_value(r[c]) if c in DATA_LABELS else "" for c in columns[1:]]
                 if reference else [format_value(r[c]) for c in columns])
                + measure_cells(r, ("accuracy", "balanced_accuracy", "auc", "spd", "eod", "covariance",
                                    "client_abs_spd_max"))
                + [
                    format_number(r["min_distance_mean"], 3),
                    str(r["runs"]) + (f" ({r['failures']} client failures)" if r["failures"] else ""),
                    format_number(r["compute_seconds_mean"], 1),
                    format_number(r["wall_seconds_mean"], 1),
                ]
            )
    fixed = {c: summary[c].iloc[0] for c in setting_columns(summary)
             if c not in columns and c != "n_s_kind" and len(summary) and _shown(summary[c].iloc[0])
             and summary[c].map(str).nunique() == 1}
    notes = [f"Fixed: {describe(fixed)}." if fixed else ""]
    if references is not None and not references.empty:
        notes.append(REFERENCES_NOTE)
    if summary["dominated"].any():
        notes.append(DOMINATED_NOTE)
    return "\n\n".join(p for p in (notes[0], markdown_table(header, rows), *notes[1:]) if p)


DATA_LABELS = ("dataset", "partition", "num_clients", "fit_intercept")
"""Setting columns a reference row fills in (the data setting it shares with the points)."""

REFERENCES_NOTE = (
    "*constant classifier*: the majority label of the pooled training rows, on each run's own test rows "
    "(every results.json carries it: `reference.constant`); *centralized plain*: ℓ_r on the pooled training "
    "rows, the `+experiment=reference` runs of the same dataset, split and seeds (— without one)."
)


def _shown(value: Any) -> bool:
    """Whether a setting value says something (not missing, not empty text)."""
    return not (value is None or value == "" or (isinstance(value, float) and math.isnan(value)))


# ----------------------------------------------------------------------------- method comparison


def format_bytes(value: float) -> str:
    """``1234567`` -> ``1.23 MB``, ``1234`` -> ``1.2 kB``, ``12`` -> ``12 B``."""
    if value >= 1e6:
        return f"{value / 1e6:.2f} MB"
    if value >= 1e3:
        return f"{value / 1e3:.1f} kB"
    return f"{value:.0f} B"


def measure_cells(r: pd.Series, metrics: Iterable[str]) -> list[str]:
    """The cells of a summary or reference row's ``metrics``: accuracy and balanced accuracy in %
    (accuracy with ▽, :func:`accuracy_cell`), AUC and the worst client's |SPD| as means, the
    others as mean ± std."""
    cells = []
    for metric in metrics:
        if metric == "accuracy":
            cells.append(accuracy_cell(r))
        elif metric == "balanced_accuracy":
            cells.append(format_mean_std(r["balanced_accuracy_mean"], r["balanced_accuracy_std"], 2, 100))
        elif metric == "auc":
            cells.append(format_number(r["auc_mean"], 3))
        elif metric.startswith("client_"):
            cells.append(format_number(r[f"{metric}_mean"], 4))
        else:
            cells.append(format_mean_std(r[f"{metric}_mean"], r[f"{metric}_std"], 4))
    return cells


def _comparison_line(r: pd.Series) -> list[str]:
    """One row of :func:`comparison_markdown`: a setting, or a reference (italic; the constant
    classifier sends nothing and has no traffic)."""
    reference = r.get("reference") or ""
    name = f"*{reference}*" if reference else r["setting"]
    measures = measure_cells(r, ("accuracy", "balanced_accuracy", "auc", "spd", "abs_spd", "eod", "client_abs_spd_max"))
    if reference == "constant classifier" or not r["runs"]:
        return [name, str(r["runs"]), *measures] + ["—"] * 7
    star = "" if r["bytes_scope"] == "protocol" else "*"
    dcr = ("—" if math.isnan(r["dcr_train_p05_mean"])
           else f"{r['dcr_train_p05_mean']:.3f} / {r['dcr_holdout_p05_mean']:.3f}")
    return [
        name, str(r["runs"]), *measures,
        format_bytes(r["protocol_bytes_up_mean"]) + star, format_bytes(r["protocol_bytes_down_mean"]) + star,
        format_value(float(r["round_trips_mean"])), r["payload"], r["client_statistics"],
        format_number(r["mia_auc_mean"], 3), dcr,
    ]


def comparison_markdown(rows: pd.DataFrame, references: pd.DataFrame | None = None) -> str:
    """One Markdown table per (dataset, split) of the method comparison rows
    (:func:`fedsynth.reporting.comparison.compare_methods`), the reference rows first
    (``references``: the constant classifier and the centralized plain model), accuracy and
    balanced accuracy in %, ▽ where the constant classifier weakly dominates, then the notes the
    marks need."""
    header = [
        "method", "runs", "acc. %", "bal. acc. %", "AUC", "SPD", "\\|SPD\\|", "EOD", "worst client \\|SPD\\|",
        "bytes up", "bytes down", "round trips", "client → server", "client statistics", "MIA AUC",
        "DCR p5 train / held-out",
    ]
    sections = []
    references = references if references is not None else rows.iloc[0:0]
    for (dataset, split), group in rows.groupby(["dataset", "partition"], sort=False):
        mine = references[(references["dataset"] == dataset) & (references["partition"] == split)] if len(references) else references
        lines = [_comparison_line(r) for frame in (mine, group) for _, r in frame.iterrows()]
        title = f"#### {DATASET_TITLES.get(dataset, dataset)}, {split}"
        sections.append(f"{title}\n\n{markdown_table(header, lines)}")
    notes = []
    if (rows["bytes_scope"] != "protocol").any():
        notes.append("\\* total bytes including the harness's evaluation exchange (the results file lists no exchanges).")
    if references is not None and not references.empty:
        notes.append(REFERENCES_NOTE)
    if rows["dominated"].any():
        notes.append(DOMINATED_NOTE)
    notes.append("Mean ± sample std over the runs of each row (no ± for one run); worst client \\|SPD\\|: the "
                 "largest \\|SPD\\| of one client's own test rows (`client_min`, `client_max`), mean over runs.")
    return "\n\n".join(sections + notes) + "\n"


# ----------------------------------------------------------------------------- groups


def groups_markdown(groups: pd.DataFrame) -> str:
    """The per-group table of :func:`~fedsynth.reporting.collect.group_summary`: per dataset, split,
    setting and group of the sensitive attribute, the pooled test rows, accuracy, positive rate
    and true-positive rate (mean over seeds), whose largest gaps over the groups are the setting's
    SPD and EOD."""
    header = ["dataset", "split", "setting", "group", "test rows", "acc. %", "positive rate", "TPR", "runs"]
    rows = [
        [str(r["dataset"]), str(r["partition"]), str(r["setting"]), str(r["group"]), format_number(r["n_mean"], 0),
         format_number(r["accuracy_mean"] * 100, 2), format_number(r["positive_rate_mean"], 4),
         format_number(r["true_positive_rate_mean"], 4), str(r["runs"])]
        for _, r in groups.iterrows()
    ]
    note = ("Group `s<g>` is entry g (counting from 0) of the dataset's `sensitive.groups` (a binary attribute: `s1` the "
            "privileged value, `s0` the rest); SPD and EOD are the largest gaps of the positive rate and of the TPR "
            "over the groups (fairlearn's `demographic_parity_difference`, `equal_opportunity_difference`).")
    return markdown_table(header, rows) + "\n\n" + note
