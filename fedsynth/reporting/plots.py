"""Figures of a sweep's summary (PNG, plain matplotlib without pyplot, so no display is needed):

* :func:`heatmaps`: Figure 2 style, accuracy / covariance / SPD over rho_o x rho_s;
* :func:`trends`: Figure 3 style, accuracy and SPD against rho_o per dataset and N_s, with the
  paper's Table 2 values dashed;
* :func:`tradeoff`: accuracy against |SPD|, one point per setting, coloured by rho_o;
* :func:`comparison`: accuracy against |SPD| of every method setting (``fedsynth-compare``).

Accuracy is in percent in every figure; "± std" is only claimed where a point has several seeds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from fedsynth.reporting.collect import group_rows, varying
from fedsynth.reporting.paper import DATASET_TITLES, DATASETS, TABLE2
from fedsynth.reporting.tables import describe, format_value

DPI = 120
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# settings shown otherwise (panel titles, N_s text) or implied by others: left out of titles
IMPLIED = ("dataset", "n_s", "n_s_kind", "synthetic_size", "synthetic_labels", "num_clients")
SIZE_COLUMNS = {"n_s_kind", "synthetic_size", "synthetic_labels"}
"""Settings a series' N_s title already says (single_shot's synthetic-set size and its labels)."""
MATH_SYMBOLS = {"rho_o": r"$\rho_o$", "rho_s": r"$\rho_s$", "lambda_theta": r"$\lambda_\theta$",
                "lambda_x": r"$\lambda_x$", "n_s": "$N_s$", "k_max": r"$k_\mathrm{max}$"}
RHO_COLORS = ("#0072B2", "#009E73", "#E69F00", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
"""Colours of the ρ_o values in the trade-off plot (Okabe–Ito, colour-blind safe), in grid order:
neighbouring values get different hues."""
RHO_O_AXIS = r"$\rho_o$ (fairness penalty, real data)"
RHO_S_AXIS = r"$\rho_s$ (fairness penalty, synthetic data)"


def _slug(values: dict[str, Any]) -> str:
    text = "_".join(f"{k}-{format_value(v)}" for k, v in values.items() if k not in IMPLIED or k == "n_s")
    return re.sub(r"[^A-Za-z0-9_.+-]+", "", text)[:120]


def _rho_label(value: float) -> str:
    if value >= 1000 and math.log10(value).is_integer():
        return f"1e{int(math.log10(value))}"
    return format_value(float(value))


def _dataset_title(name: str) -> str:
    return DATASET_TITLES.get(name, name)


def _n_s_title(row: pd.Series | dict[str, Any], size: bool = True) -> str:
    """N_s as matplotlib mathtext: ``N_s = N^train``, ``N_s = N^train,small (800)``, ``N_s = 300``."""
    if row["n_s_kind"] == "full":
        return r"$N_s = N^{\mathrm{train}}$"
    if row["n_s_kind"] == "small":
        return r"$N_s = N^{\mathrm{train,small}}$" + (f" ({row['n_s']})" if size else "")
    return f"$N_s$ = {row['n_s']}"


def _math_setting(label: str) -> str:
    """A comparison setting label (``single_shot ρ_o=10 N_s=small k_max=1000``) with mathtext symbols."""
    for plain, math_text in (("ρ_o", r"$\rho_o$"), ("N_s", "$N_s$"), ("k_max", r"$k_\mathrm{max}$")):
        label = label.replace(plain, math_text)
    return label


def _describe(values: dict[str, Any]) -> str:
    """:func:`~fedsynth.reporting.tables.describe` with the paper's symbols as mathtext."""
    return describe(values, symbols=MATH_SYMBOLS)


def _groups(summary: pd.DataFrame, inner: Iterable[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Split ``summary`` by the varying setting columns not in ``inner`` (those vary within a
    figure); each group comes with its key as a dict."""
    inner = set(inner)
    keys = [c for c in varying(summary) if c not in inner]
    return group_rows(summary, keys) if keys else [({}, summary)]


def _fixed(frame: pd.DataFrame, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Settings with one value in ``frame``, for a subtitle (the interesting ones only)."""
    skip = set(skip)
    wanted = ("rho_s", "lambda_theta", "k_max", "fit_intercept", "engine")
    return {c: frame[c].iloc[0] for c in wanted if c not in skip and c in frame and frame[c].nunique(dropna=False) == 1}


REFERENCE_MARKERS = {"constant classifier": "*", "centralized plain": "D"}
"""Markers of the reference points (black) in every figure."""


def _reference_mark(ax: Any, name: str, abs_spd: float, accuracy: float) -> None:
    """A reference point (:data:`REFERENCE_MARKERS`) at (|SPD|, accuracy); the constant
    classifier's with a dotted line at its accuracy: points on or below it are weakly dominated."""
    if not (np.isfinite(abs_spd) and np.isfinite(accuracy)):
        return
    ax.plot([abs_spd], [accuracy], REFERENCE_MARKERS[name], color="black", markersize=9 if name.startswith("constant") else 6,
            linestyle="none", label=name, zorder=4, clip_on=False)
    if name.startswith("constant"):
        ax.axhline(accuracy, color="black", linestyle=":", linewidth=0.8, zorder=0)


def _references_of(references: pd.DataFrame | None, data: pd.DataFrame) -> pd.DataFrame:
    """The reference rows (with runs) of the dataset, split and intercept of ``data``."""
    if references is None or references.empty:
        return pd.DataFrame(columns=["reference"])
    mask = (references["runs"] > 0) & references["dataset"].isin(set(data["dataset"]))
    mask &= references["partition"].isin(set(data["partition"])) & references["fit_intercept"].isin(set(data["fit_intercept"]))
    return references[mask].drop_duplicates("reference")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _text_color(rgba: tuple[float, ...]) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def _seeds_text(frame: pd.DataFrame, bars: bool = False) -> str:
    """``one seed per point``, or ``3 seeds per point (mean ± std)`` (``bars``: ``error bars ±
    std``): the ± is only claimed when some point has more than one seed."""
    runs = sorted(set(int(r) for r in frame["runs"]))
    if runs == [1]:
        return "one seed per point"
    return f"{'/'.join(map(str, runs))} seeds per point (" + ("mean, error bars ± std)" if bars else "mean ± std)")


# ----------------------------------------------------------------------------- Figure 2


HEATMAP_METRICS = (
    ("accuracy", "Accuracy (%); ▽ constant classifier at least as accurate", 100.0, "{:.1f}", "viridis", False),
    ("balanced_accuracy", "Balanced accuracy (%)", 100.0, "{:.1f}", "viridis", False),
    ("covariance", "Covariance (decision boundary)", 1.0, "{:.3f}", "RdBu_r", True),
    ("spd", "SPD", 1.0, "{:.3f}", "RdBu_r", True),
)


def heatmaps(summary: pd.DataFrame, out_dir: Path, prefix: str = "heatmap") -> list[Path]:
    """One Figure-2-style figure (accuracy, balanced accuracy, covariance, SPD over rho_o x rho_s,
    rho_s = 0 at the bottom, each cell annotated with mean and ± std, ▽ on an accuracy cell the
    constant classifier weakly dominates) per group of runs with at least two rho_o and two rho_s
    values."""
    paths = []
    for key, frame in _groups(summary, ("rho_o", "rho_s", "n_s_kind")):
        if frame["rho_o"].nunique() < 2 or frame["rho_s"].nunique() < 2:
            continue
        rho_o = sorted(frame["rho_o"].unique())
        rho_s = sorted(frame["rho_s"].unique())
        fig = Figure(figsize=(5.4 * len(HEATMAP_METRICS), 5.2), layout="constrained")
        axes = fig.subplots(1, len(HEATMAP_METRICS))
        for ax, (metric, label, scale, fmt, cmap_name, diverging) in zip(axes, HEATMAP_METRICS):
            mean = np.full((len(rho_s), len(rho_o)), np.nan)
            std = np.full_like(mean, np.nan)
            dominated = np.zeros(mean.shape, dtype=bool)
            for _, r in frame.iterrows():
                i, j = rho_s.index(r["rho_s"]), rho_o.index(r["rho_o"])
                mean[i, j] = r[f"{metric}_mean"] * scale
                std[i, j] = r[f"{metric}_std"] * scale
                dominated[i, j] = metric == "accuracy" and bool(r["dominated"])
            finite = mean[np.isfinite(mean)]
            if diverging:
                bound = float(np.max(np.abs(finite))) if finite.size else 1.0
                norm: Normalize = TwoSlopeNorm(0.0, -bound or -1.0, bound or 1.0)
            else:
                lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
                norm = Normalize(lo, hi if hi > lo else lo + 1e-9)
            cmap = colormaps[cmap_name]
            image = ax.imshow(np.ma.masked_invalid(mean), origin="lower", cmap=cmap, norm=norm, aspect="auto")
            for i in range(len(rho_s)):
                for j in range(len(rho_o)):
                    if not np.isfinite(mean[i, j]):
                        ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="grey")
                        continue
                    text = fmt.format(mean[i, j])
                    if np.isfinite(std[i, j]):
                        text += "\n±" + fmt.format(std[i, j])
                    if dominated[i, j]:
                        text += " ▽"
                    ax.text(j, i, text, ha="center", va="center", fontsize=8.5,
                            color=_text_color(cmap(norm(mean[i, j]))))
            ax.set_xticks(range(len(rho_o)), [_rho_label(v) for v in rho_o])
            ax.set_yticks(range(len(rho_s)), [_rho_label(v) for v in rho_s])
            ax.set_xlabel(RHO_O_AXIS)
            ax.set_ylabel(RHO_S_AXIS)
            ax.set_title(label)
            fig.colorbar(image, ax=ax, shrink=0.9)
        first = frame.iloc[0]
        context = {k: v for k, v in {**key, **_fixed(frame, key)}.items() if k not in IMPLIED}
        fig.suptitle(
            f"{_dataset_title(first['dataset'])}, {_n_s_title(first)}"
            + (f", {_describe(context)}" if context else "")
            + f"\n{_seeds_text(frame)}, on all clients' test data",
            fontsize=11,
        )
        name = f"{prefix}_{first['dataset']}" + (f"_{_slug(key)}" if _slug(key) else "")
        paths.append(_save(fig, out_dir / f"{name}.png"))
    return paths


# ----------------------------------------------------------------------------- Figure 3


def _series(frame: pd.DataFrame, size: bool = True) -> list[tuple[str, pd.DataFrame, dict[str, Any]]]:
    """The lines of one panel: one per (N_s kind, rho_s, ...) setting, ordered by rho_o; ``size``
    puts the small N_s's value into the label."""
    inner = [c for c in varying(frame) if c not in ("rho_o", "n_s")]
    series = []
    for values, group in group_rows(frame, inner) if inner else [({}, frame)]:
        first = group.iloc[0]
        parts = [_n_s_title(first, size)] if SIZE_COLUMNS & set(values) or not values else []
        parts += [_describe({k: v}) for k, v in values.items() if k not in SIZE_COLUMNS]
        series.append((", ".join(parts) or _n_s_title(first, size), group.sort_values("rho_o"), values))
    return series


def _paper_points(dataset: str, first: pd.Series) -> list[tuple[float, float, float]] | None:
    """The paper's Table 2 (rho_o, accuracy %, SPD) for a series in the Table 2 setting."""
    if (
        dataset not in DATASETS
        or first["n_s_kind"] not in TABLE2
        or first["rho_s"] != 0
        or not math.isclose(first["lambda_theta"], 1e-3)
    ):
        return None
    values = TABLE2[first["n_s_kind"]][dataset]
    return [(rho, acc, spd) for rho, (acc, spd) in sorted(values.items())]


def _rho_axis(ax: Any, values: list[float]) -> None:
    """rho_o on equally spaced positions (its grids are about log-spaced and include 0)."""
    ax.set_xticks(range(len(values)), [_rho_label(v) for v in values])
    ax.set_xlim(-0.4, len(values) - 0.6)
    ax.set_xlabel(RHO_O_AXIS)
    ax.grid(True, alpha=0.3)


def trends(
    summary: pd.DataFrame, out_dir: Path, prefix: str = "trends", references: pd.DataFrame | None = None
) -> list[Path]:
    """Figure-3-style trends: for each dataset a column with accuracy (%), balanced accuracy (%)
    and SPD against rho_o, one line per N_s (and any other swept setting), ± std error bars, the
    paper's Table 2 values as dashed lines with hollow markers where the setting is Table 2's, and
    the references (``references``) as black horizontal lines: the constant classifier dotted
    (accuracy on or below it is weakly dominated by it), the centralized plain model dash-dotted."""
    paths = []
    inner = ("rho_o", "dataset", "n_s", "n_s_kind", "synthetic_size", "synthetic_labels", "num_clients", "rho_s")
    for key, frame in _groups(summary, inner):
        if frame["rho_o"].nunique() < 2:
            continue
        datasets = [d for d in DATASETS if d in set(frame["dataset"])]
        datasets += sorted(set(frame["dataset"]) - set(datasets))
        fig = Figure(figsize=(max(6.0, 4.8 * len(datasets)), 10.4), layout="constrained")
        axes = np.asarray(fig.subplots(3, len(datasets), squeeze=False))
        any_paper = False
        for column, dataset in enumerate(datasets):
            data = frame[frame["dataset"] == dataset]
            ax_acc, ax_balanced, ax_spd = axes[0, column], axes[1, column], axes[2, column]
            paper_rho = [r for r, _, _ in (_paper_points(dataset, data.iloc[0]) or [])]
            grid = sorted(set(float(v) for v in data["rho_o"]) | set(paper_rho))
            position = {v: i for i, v in enumerate(grid)}
            for index, (label, group, _) in enumerate(_series(data)):
                color = SERIES_COLORS[index % len(SERIES_COLORS)]
                marker = MARKERS[index % len(MARKERS)]
                for ax, metric, scale in ((ax_acc, "accuracy", 100.0), (ax_balanced, "balanced_accuracy", 100.0),
                                          (ax_spd, "spd", 1.0)):
                    ax.errorbar(
                        [position[float(v)] for v in group["rho_o"]], group[f"{metric}_mean"] * scale,
                        yerr=np.nan_to_num(group[f"{metric}_std"].to_numpy() * scale),
                        color=color, marker=marker, capsize=3, linewidth=1.6, label=f"ours, {label}",
                    )
                paper = _paper_points(dataset, group.iloc[0])
                if paper:
                    any_paper = True
                    rho, acc, spd = zip(*paper)
                    for ax, values in ((ax_acc, acc), (ax_spd, spd)):
                        ax.plot([position[v] for v in rho], values, linestyle="--", color=color, marker=marker,
                                markerfacecolor="none", alpha=0.8, label=f"paper, {label}")
            for _, r in _references_of(references, data).iterrows():
                style = ":" if r["reference"] == "constant classifier" else "-."
                for ax, metric, scale in ((ax_acc, "accuracy", 100.0), (ax_balanced, "balanced_accuracy", 100.0),
                                          (ax_spd, "spd", 1.0)):
                    if np.isfinite(r[f"{metric}_mean"]):
                        ax.axhline(r[f"{metric}_mean"] * scale, color="black", linestyle=style, linewidth=1.0,
                                   label=r["reference"])
            ax_acc.set_title(_dataset_title(dataset))
            ax_acc.set_ylabel("accuracy (%)")
            ax_balanced.set_ylabel("balanced accuracy (%)")
            ax_spd.set_ylabel("SPD")
            ax_spd.axhline(0.0, color="black", linewidth=0.8)
            for ax in (ax_acc, ax_balanced, ax_spd):
                _rho_axis(ax, grid)
            ax_acc.legend(fontsize=7.5, loc="best")
        context = {k: v for k, v in {**key, **_fixed(frame, key)}.items() if k not in IMPLIED}
        fig.suptitle(
            r"Accuracy, balanced accuracy and SPD against $\rho_o$"
            + (f"\n{_describe(context)}" if context else "")
            + f"\n{_seeds_text(frame, bars=True)}"
            + ("; dashed: the paper's Table 2" if any_paper else ""),
            fontsize=11,
        )
        name = prefix + (f"_{_slug(key)}" if key else "")
        paths.append(_save(fig, out_dir / f"{name}.png"))
    return paths


# ----------------------------------------------------------------------------- trade-off


def tradeoff(
    summary: pd.DataFrame, out_dir: Path, prefix: str = "tradeoff", references: pd.DataFrame | None = None
) -> list[Path]:
    """Accuracy (%) against |SPD| for every setting, one panel per dataset: colour = rho_o,
    marker = N_s (or another swept setting), thin lines join one series in rho_o order; the paper's
    Table 2 points as hollow markers joined by dotted lines; the references in black (★ the
    constant classifier with a dotted line at its accuracy, ◆ the centralized plain model). Up and
    left is better."""
    paths = []
    inner = ("rho_o", "dataset", "n_s", "n_s_kind", "synthetic_size", "synthetic_labels", "num_clients", "rho_s")
    for key, frame in _groups(summary, inner):
        datasets = [d for d in DATASETS if d in set(frame["dataset"])]
        datasets += sorted(set(frame["dataset"]) - set(datasets))
        rho_values = sorted(set(frame["rho_o"]))
        for data_name in datasets:
            rows = _paper_points(data_name, frame[frame["dataset"] == data_name].iloc[0]) or []
            rho_values = sorted(set(rho_values) | {r for r, _, _ in rows})
        palette = [RHO_COLORS[i % len(RHO_COLORS)] for i in range(len(rho_values))]
        cmap = ListedColormap(palette)
        norm = BoundaryNorm(np.arange(len(rho_values) + 1) - 0.5, len(rho_values))
        color_of = {rho: palette[i] for i, rho in enumerate(rho_values)}
        fig = Figure(figsize=(max(6.5, 5.2 * len(datasets) + 1.0), 5.0), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(datasets)))
        handles: dict[str, Line2D] = {}
        for ax, dataset in zip(axes, datasets):
            data = frame[frame["dataset"] == dataset]
            for index, (label, group, _) in enumerate(_series(data, size=False)):
                marker = MARKERS[index % len(MARKERS)]
                x, y = group["abs_spd_mean"].to_numpy(), group["accuracy_mean"].to_numpy() * 100
                ax.plot(x, y, color="grey", linewidth=0.8, alpha=0.6, zorder=1)
                ax.errorbar(x, y, xerr=np.nan_to_num(group["abs_spd_std"].to_numpy()),
                            yerr=np.nan_to_num(group["accuracy_std"].to_numpy() * 100),
                            fmt="none", ecolor="grey", alpha=0.6, zorder=1)
                ax.scatter(x, y, c=[color_of[r] for r in group["rho_o"]], marker=marker, s=55,
                           edgecolors="black", linewidths=0.6, zorder=3)
                handles.setdefault(f"ours, {label}", Line2D([], [], color="grey", marker=marker, linestyle="-",
                                                             markerfacecolor="lightgrey", markeredgecolor="black"))
                paper = _paper_points(dataset, group.iloc[0])
                if paper:
                    rho, acc, spd = zip(*paper)
                    ax.plot(np.abs(spd), acc, linestyle=":", color="grey", linewidth=0.8, zorder=1)
                    ax.scatter(np.abs(spd), acc, marker=marker, s=55, facecolors="none",
                               edgecolors=[color_of[r] for r in rho], linewidths=1.4, zorder=2)
                    handles.setdefault(f"paper, {label}", Line2D([], [], color="grey", marker=marker, linestyle=":",
                                                                  markerfacecolor="none", markeredgecolor="black"))
            for _, r in _references_of(references, data).iterrows():
                _reference_mark(ax, r["reference"], r["abs_spd_mean"], r["accuracy_mean"] * 100)
                handles.setdefault(r["reference"], Line2D([], [], color="black", marker=REFERENCE_MARKERS[r["reference"]],
                                                          linestyle="none"))
            ax.set_title(_dataset_title(dataset))
            ax.set_xlabel("|SPD| (lower is fairer)")
            ax.set_ylabel("accuracy (%)")
            ax.grid(True, alpha=0.3)
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), fraction=0.03, pad=0.02,
                           ticks=range(len(rho_values)))
        bar.ax.set_yticklabels([_rho_label(r) for r in rho_values])
        bar.set_label(r"$\rho_o$")
        axes[0].legend(handles.values(), handles.keys(), fontsize=7.5, loc="lower right")
        context = {k: v for k, v in {**key, **_fixed(frame, key)}.items() if k not in IMPLIED}
        fig.suptitle(
            "Accuracy–fairness trade-off (up and left is better)"
            + (f"\n{_describe(context)}" if context else "")
            + f"; {_seeds_text(frame, bars=True)}",
            fontsize=11,
        )
        name = prefix + (f"_{_slug(key)}" if key else "")
        paths.append(_save(fig, out_dir / f"{name}.png"))
    return paths



# ----------------------------------------------------------------------------- method comparison


def comparison(rows: pd.DataFrame, path: Path, references: pd.DataFrame | None = None) -> Path:
    """The method comparison (:func:`fedsynth.reporting.comparison.compare_methods` rows) as
    accuracy (%) against |SPD|, one panel per dataset (rows of panels, sharing their axes) and
    split (columns), one marker and colour per method setting, ± std error bars where a setting
    has more than one seed; the reference rows (``references``) in black: the constant classifier
    (★, at |SPD| 0: a point below its dotted line is weakly dominated by it) and the centralized
    plain model (◆). Up and left is better."""
    panels = list(dict.fromkeys(zip(rows["dataset"], rows["partition"])))
    datasets = list(dict.fromkeys(d for d, _ in panels))
    splits = list(dict.fromkeys(s for _, s in panels))
    settings = list(dict.fromkeys(rows["setting"]))
    legend_rows = math.ceil(len(settings) / 3)
    fig = Figure(figsize=(max(6.5, 5.0 * len(splits)), 3.9 * len(datasets) + 0.9 + 0.25 * legend_rows),
                 layout="constrained")
    axes = np.asarray(fig.subplots(len(datasets), len(splits), squeeze=False, sharex="row", sharey="row"))
    for _, r in rows.iterrows():
        ax = axes[datasets.index(r["dataset"]), splits.index(r["partition"])]
        index = settings.index(r["setting"])
        ax.errorbar(
            r["abs_spd_mean"], r["accuracy_mean"] * 100,
            xerr=np.nan_to_num(r["abs_spd_std"]) if r["runs"] > 1 else None,
            yerr=np.nan_to_num(r["accuracy_std"] * 100) if r["runs"] > 1 else None,
            marker=MARKERS[index % len(MARKERS)], color=SERIES_COLORS[index % len(SERIES_COLORS)],
            linestyle="none", markersize=7, capsize=2, label=_math_setting(r["setting"]),
        )
    for _, r in (references if references is not None else rows.iloc[0:0]).iterrows():
        if (r["dataset"], r["partition"]) not in panels or not r["runs"]:
            continue
        ax = axes[datasets.index(r["dataset"]), splits.index(r["partition"])]
        _reference_mark(ax, r["reference"], r["abs_spd_mean"], r["accuracy_mean"] * 100)
    for i, dataset in enumerate(datasets):
        for j, split in enumerate(splits):
            ax = axes[i, j]
            ax.set_title(f"{_dataset_title(dataset)}, {split}", fontsize=10)
            ax.set_xlabel("|SPD| (lower is fairer)")
            ax.set_ylabel("accuracy (%)")
            ax.set_xlim(left=-0.02 * ax.get_xlim()[1])  # the constant classifier sits at |SPD| = 0
            ax.grid(True, alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    labels = [_math_setting(s) for s in settings] + [name for name in REFERENCE_MARKERS if name in handles]
    fig.legend([handles[label] for label in labels], labels, loc="outside lower center",
               ncol=min(3, len(labels)), fontsize=8)
    fig.suptitle(f"Methods compared: accuracy against |SPD| (up and left is better)\n{_seeds_text(rows, bars=True)}, "
                 "on all clients' test data", fontsize=11)
    return _save(fig, path)
