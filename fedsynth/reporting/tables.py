"""Markdown tables: the paper's Table 2 with its numbers beside ours, and a summary of any sweep."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from fedsynth.reporting.collect import SETTING_COLUMNS, varying
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

# columns whose differences make separate Table 2 variants (dataset-dependent ones excluded)
VARIANT_COLUMNS = (
    "engine", "method", "init", "lambda_theta", "lambda_x", "k_max", "lr", "inner_max_iter",
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
    if summary.empty:
        return summary
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


def table2_markdown(summary: pd.DataFrame, title: str = "Table 2", level: int = 3) -> str:
    """Table 2 laid out like the paper's (N_s x rho_o rows; accuracy % and SPD per dataset), each
    of our cells ``mean ± std`` over seeds with the paper's value in the next column, followed by
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
            header += [f"{name} acc. % (ours)", "paper", "SPD (ours)", "paper"]
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
                        row += ["—", "—", "—", "—"]
                    else:
                        r = ours.iloc[0]
                        row.append(format_mean_std(r["accuracy_mean"], r["accuracy_std"], 2, 100))
                        row.append(format_number(paper[0] if paper else math.nan, 2))
                        row.append(format_mean_std(r["spd_mean"], r["spd_std"], 4))
                        row.append(format_number(paper[1] if paper else math.nan, 4))
                    if ours.empty and paper:
                        row[-3] = format_number(paper[0], 2)
                        row[-1] = format_number(paper[1], 4)
                rows.append(row)
        seeds = sorted(set(frame["runs"]))
        fixed = {
            key: frame[key].iloc[0]
            for key in ("rho_s", "lambda_theta", "lambda_x", "k_max", "lr", "fit_intercept", "init", "engine")
            if key not in variant and frame[key].nunique() == 1
        }
        label = describe(variant) if variant else ""
        words = f"{title} ({label})" if title and label else title or label
        heading = f"{'#' * level} {words}" if words else ""
        notes = (
            (f"Ours: mean ± sample std over {'/'.join(map(str, seeds))} seeds per cell " if seeds != [1]
             else "Ours: one seed per cell ")
            + f"({describe(fixed)}); N^train,small = {SMALL_SIZES['law_school_race']} (Law School) / "
            f"{SMALL_SIZES['dutch_gender']} (Dutch) balanced (ŝ, ŷ). "
            f"Paper: {CITATION}. SPD = P(ŷ=1 | s=1) − P(ŷ=1 | s=0) on all clients' test rows."
        )
        align = ["---", "--:"] + ["--:"] * (len(header) - 2)
        blocks = [heading, notes, markdown_table(header, rows, align), targets_markdown(frame)]
        parts.append("\n\n".join(block for block in blocks if block))
    return "\n\n".join(parts)


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


def summary_markdown(summary: pd.DataFrame, columns: Iterable[str] | None = None) -> str:
    """Every setting of a sweep: the settings that vary, then accuracy, SPD, covariance, EOD,
    min distance (mean ± std over seeds), seeds and seconds per run."""
    columns = list(columns) if columns is not None else varying(summary)
    columns = [c for c in columns if c not in ("n_s_kind",)] or ["dataset"]
    header = [*map(pretty, columns), "acc. %", "SPD", "covariance", "EOD", "min dist.", "seeds", "s/run"]
    rows = []
    for _, r in summary.iterrows():
        rows.append(
            [format_value(r[c]) for c in columns]
            + [
                format_mean_std(r["accuracy_mean"], r["accuracy_std"], 2, 100),
                format_mean_std(r["spd_mean"], r["spd_std"], 4),
                format_mean_std(r["covariance_mean"], r["covariance_std"], 4),
                format_mean_std(r["eod_mean"], r["eod_std"], 4),
                format_number(r["min_distance_mean"], 3),
                str(r["runs"]) + (f" ({r['failures']} client failures)" if r["failures"] else ""),
                format_number(r["wall_seconds_mean"], 1),
            ]
        )
    fixed = {c: summary[c].iloc[0] for c in SETTING_COLUMNS if c not in columns and c != "n_s_kind" and len(summary)}
    note = f"Fixed: {describe(fixed)}." if fixed else ""
    return "\n\n".join(p for p in (note, markdown_table(header, rows)) if p)


# ----------------------------------------------------------------------------- method comparison


def format_bytes(value: float) -> str:
    """``1234567`` -> ``1.23 MB``, ``1234`` -> ``1.2 kB``, ``12`` -> ``12 B``."""
    if value >= 1e6:
        return f"{value / 1e6:.2f} MB"
    if value >= 1e3:
        return f"{value / 1e3:.1f} kB"
    return f"{value:.0f} B"


def comparison_markdown(rows: pd.DataFrame) -> str:
    """One Markdown table per (dataset, split) of the method comparison rows
    (:func:`fedsynth.reporting.comparison.compare_methods`), accuracy in %, then the notes the
    marks need."""
    header = [
        "method", "runs", "acc. %", "SPD", "\\|SPD\\|", "EOD", "bytes up", "bytes down", "round trips",
        "client → server", "client statistics", "MIA AUC", "DCR p5 train / held-out",
    ]
    sections = []
    for (dataset, split), group in rows.groupby(["dataset", "partition"], sort=False):
        lines = []
        for _, r in group.iterrows():
            star = "" if r["bytes_scope"] == "protocol" else "*"
            dcr = ("—" if math.isnan(r["dcr_train_p05_mean"])
                   else f"{r['dcr_train_p05_mean']:.3f} / {r['dcr_holdout_p05_mean']:.3f}")
            lines.append([
                r["setting"], str(r["runs"]),
                format_mean_std(r["accuracy_mean"], r["accuracy_std"], 2, 100),
                format_mean_std(r["spd_mean"], r["spd_std"], 4),
                format_mean_std(r["abs_spd_mean"], r["abs_spd_std"], 4),
                format_mean_std(r["eod_mean"], r["eod_std"], 4),
                format_bytes(r["protocol_bytes_up_mean"]) + star, format_bytes(r["protocol_bytes_down_mean"]) + star,
                format_value(float(r["round_trips_mean"])), r["payload"], r["client_statistics"],
                format_number(r["mia_auc_mean"], 3), dcr,
            ])
        title = f"#### {DATASET_TITLES.get(dataset, dataset)}, {split}"
        sections.append(f"{title}\n\n{markdown_table(header, lines)}")
    notes = []
    if (rows["bytes_scope"] != "protocol").any():
        notes.append("\\* total bytes including the harness's evaluation exchange (the results file lists no exchanges).")
    if rows["client_statistics"].str.contains("‡").any():
        notes.append("‡ not recorded in results written before the server's ledger; single_shot's server rejects any reply holding more than arrays x, s, y.")
    notes.append("Mean ± sample std over the runs of each row (no ± for one run).")
    return "\n\n".join(sections + notes) + "\n"
