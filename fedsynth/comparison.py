"""The method comparison: one table and one accuracy–|SPD| plot from a sweep's results.json files.

    python -m fedsynth.comparison multirun/comparison --out-dir docs/comparison

reads every ``results.json`` under the given files or folders and writes, into ``--out-dir``,
``comparison.md`` (Markdown tables, one per dataset and split), ``comparison.csv`` (the same rows)
and ``comparison.png`` (accuracy against |SPD|, one panel per dataset and split, every method).

One row per dataset, split and method setting (e.g. ``fairfed β=1 R=20``), the mean ± standard
deviation over the seeds found. The communication columns are measured from the messages the
run sent: bytes up / down and round trips of the method's protocol; the harness's final
``evaluate`` exchange (θ to the clients, their test counts back, identical for every method) is
left out when the file lists its exchanges (``sends``), else the totals are shown and marked *.
"Client statistics" lists what the server received besides the model or the data rows
(``info.client_statistics``, recorded by the method from the replies it received).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from fedsynth.reporting.collect import find_results
from fedsynth.reporting.paper import SMALL_SIZES

EVALUATE = "evaluate"

PAYLOAD = {
    "centralized": "raw training rows (x, s, y)",
    "single_shot": "synthetic rows (x̂, ŝ, ŷ)",
    "fedavg": "local model θ_k, every round",
    "fairfed": "local model θ_k, every round",
    "local": "nothing",
}
"""What each method's clients send as their payload (by the method's definition)."""

METHOD_ORDER = ("centralized", "single_shot", "fedavg", "fairfed", "local")
DATASET_ORDER = ("law_school_race", "law_school_gender", "dutch_gender")

COLUMNS = (
    "dataset",
    "split",
    "method",
    "seeds",
    "accuracy",
    "accuracy_std",
    "spd",
    "spd_std",
    "abs_spd",
    "abs_spd_std",
    "eod",
    "eod_std",
    "bytes_up",
    "bytes_down",
    "bytes_scope",
    "round_trips",
    "payload",
    "client_statistics",
    "mia_auc",
    "dcr_train_p05",
    "dcr_holdout_p05",
    "min_distance",
    "wall_seconds",
)


# ----------------------------------------------------------------------------- loading
def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The records of every ``results.json`` named or found (recursively) under ``paths``."""
    records = []
    for path in find_results(paths):
        record = json.loads(path.read_text(encoding="utf-8"))
        record["_path"] = str(path)
        records.append(record)
    return records


# ----------------------------------------------------------------------------- labels
def method_label(record: dict[str, Any]) -> str:
    """The method and the settings that distinguish it in the comparison."""
    method = record["config"]["method"]
    name = method.get("name", record.get("method"))
    if name == "single_shot":
        size = method["synthetic_size"]
        if size == SMALL_SIZES.get(record["dataset"]):
            size = "small"  # the paper's N^train,small of this dataset (Table 1)
        return f"single_shot ρ_o={method['rho_o']:g} N_s={size} k_max={method['k_max']}"
    if name in ("fedavg", "fairfed"):
        beta = f" β={method['beta']:g}" if name == "fairfed" else ""
        return f"{name}{beta} R={method['rounds']}"
    if name in ("centralized", "local"):
        variant = method.get("variant", "plain")
        if variant == "fair":
            return f"{name} fair ρ={method['rho']:g}"
        if variant == "exponentiated_gradient":
            return f"{name} EG ε={method['eg_eps']:g}"
        return name
    return str(name)


def split_label(record: dict[str, Any]) -> str:
    """``iid`` or ``dirichlet α=<alpha>``."""
    partition = record["config"]["partition"]
    if partition["scheme"] == "dirichlet":
        return f"dirichlet α={partition['dirichlet_alpha']:g}"
    return str(partition["scheme"])


def protocol_bytes(record: dict[str, Any]) -> tuple[int, int, str]:
    """Bytes up and down of the method's protocol, and ``"protocol"``; the run's totals and
    ``"total"`` when the record does not list its exchanges."""
    sends = record.get("sends")
    if sends is None:
        return int(record["bytes_up"]), int(record["bytes_down"]), "total"
    kept = [send for send in sends if send["action"] != EVALUATE]
    return sum(int(s["bytes_up"]) for s in kept), sum(int(s["bytes_down"]) for s in kept), "protocol"


def client_statistics(record: dict[str, Any]) -> str:
    """The statistics that left the clients besides the payload, as the method recorded them."""
    info = record.get("info") or {}
    if "client_statistics" not in info:
        if record.get("method") == "single_shot":
            return "none‡"
        return "not recorded"
    names = [name.split(".", 1)[-1] for name in info["client_statistics"]]
    if not names:
        return "none"
    rounds = info.get("rounds")
    return ", ".join(names) + (f" (every round, {rounds}×)" if rounds and rounds > 1 else "")


# ----------------------------------------------------------------------------- summary
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _client_mean(record: dict[str, Any], key: str) -> float | None:
    values = [c[key] for c in record.get("per_client", []) if c.get(key) is not None]
    return statistics.fmean(values) if values else None


def summarize(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, split, method label), means and standard deviations over seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["dataset"], split_label(record), method_label(record))].append(record)
    rows = []
    for (dataset, split, label), group in groups.items():
        row: dict[str, Any] = {"dataset": dataset, "split": split, "method": label}
        row["seeds"] = len({r["seed"] for r in group})
        for key in ("accuracy", "spd", "eod"):
            row[key], row[f"{key}_std"] = _mean_std([r[key] for r in group])
        row["abs_spd"], row["abs_spd_std"] = _mean_std([abs(r["spd"]) for r in group])
        traffic = [protocol_bytes(r) for r in group]
        row["bytes_up"] = statistics.fmean(t[0] for t in traffic)
        row["bytes_down"] = statistics.fmean(t[1] for t in traffic)
        row["bytes_scope"] = "protocol" if all(t[2] == "protocol" for t in traffic) else "total"
        row["round_trips"] = statistics.fmean(r["round_trips"] for r in group)
        name = group[0].get("method")
        row["payload"] = PAYLOAD.get(name, "?")
        row["client_statistics"] = " / ".join(sorted({client_statistics(r) for r in group}))
        for key in ("mia_auc", "dcr_train_p05", "dcr_holdout_p05", "min_distance"):
            row[key] = _mean_std([_client_mean(r, key) for r in group])[0]
        row["wall_seconds"] = statistics.fmean(r["wall_seconds"] for r in group)
        rows.append(row)
    rows.sort(key=_row_order)
    return rows


def _rank(value: str, order: Sequence[str]) -> int:
    return order.index(value) if value in order else len(order)


def _row_order(row: dict[str, Any]) -> tuple:
    name = row["method"].split(" ", 1)[0]
    return (_rank(row["dataset"], DATASET_ORDER), row["dataset"], row["split"] != "iid", row["split"], _rank(name, METHOD_ORDER), row["method"])


# ----------------------------------------------------------------------------- output
def _fmt(value: float, std: float | None = None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:.{digits}f}"
    return text if std is None or math.isnan(std) else f"{text} ± {std:.{digits}f}"


def _bytes(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} MB"
    if value >= 1e3:
        return f"{value / 1e3:.1f} kB"
    return f"{value:.0f} B"


def markdown_tables(rows: Sequence[dict[str, Any]]) -> str:
    """One Markdown table per (dataset, split)."""
    header = (
        "| method | seeds | accuracy | SPD | \\|SPD\\| | EOD | bytes up | bytes down | round trips "
        "| client → server | client statistics | MIA AUC | DCR p5 train / held-out |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    sections: list[str] = []
    current = None
    for row in rows:
        key = (row["dataset"], row["split"])
        if key != current:
            sections.append(f"\n#### {row['dataset']}, {row['split']}\n\n{header}")
            current = key
        star = "" if row["bytes_scope"] == "protocol" else "*"
        dcr = (
            "—"
            if math.isnan(row["dcr_train_p05"])
            else f"{row['dcr_train_p05']:.3f} / {row['dcr_holdout_p05']:.3f}"
        )
        sections[-1] += (
            f"| {row['method']} | {row['seeds']} | {_fmt(row['accuracy'], row['accuracy_std'])} "
            f"| {_fmt(row['spd'], row['spd_std'])} | {_fmt(row['abs_spd'], row['abs_spd_std'])} "
            f"| {_fmt(row['eod'], row['eod_std'])} | {_bytes(row['bytes_up'])}{star} "
            f"| {_bytes(row['bytes_down'])}{star} | {row['round_trips']:g} | {row['payload']} "
            f"| {row['client_statistics']} | {_fmt(row['mia_auc'])} | {dcr} |\n"
        )
    return "".join(sections).lstrip("\n")


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """The summary rows as CSV (columns :data:`COLUMNS`)."""
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key) for key in COLUMNS})
    return path


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy against |SPD| (mean ± std over seeds), one panel per dataset and split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["dataset"], r["split"]) for r in rows))
    datasets = list(dict.fromkeys(d for d, _ in panels))
    splits = list(dict.fromkeys(s for _, s in panels))
    methods = list(dict.fromkeys(r["method"] for r in sorted(rows, key=_row_order)))
    markers = "osD^v<>pPX*hH"
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(
        len(datasets), len(splits), figsize=(5.2 * len(splits), 3.8 * len(datasets)), squeeze=False
    )
    for row in rows:
        ax = axes[datasets.index(row["dataset"])][splits.index(row["split"])]
        index = methods.index(row["method"])
        ax.errorbar(
            row["abs_spd"],
            row["accuracy"],
            xerr=row["abs_spd_std"],
            yerr=row["accuracy_std"],
            marker=markers[index % len(markers)],
            color=colors(index % 10),
            linestyle="none",
            markersize=7,
            capsize=2,
            label=row["method"],
        )
    for i, dataset in enumerate(datasets):
        for j, split in enumerate(splits):
            ax = axes[i][j]
            ax.set_title(f"{dataset}, {split}", fontsize=10)
            ax.set_xlabel("|SPD| (lower is fairer)")
            ax.set_ylabel("accuracy")
            ax.grid(alpha=0.3)
    handles = {}
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    ordered = [label for label in methods if label in handles]
    legend_rows = math.ceil(len(ordered) / 3)
    fig.legend([handles[label] for label in ordered], ordered, loc="lower center", ncol=min(3, len(ordered)), fontsize=8)
    fig.tight_layout(rect=(0, (0.25 + 0.16 * legend_rows) / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(records: Sequence[dict[str, Any]], out_dir: Path, name: str = "comparison") -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.png`` into ``out_dir``; return their paths."""
    if not records:
        raise ValueError("no results to compare")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(records)
    markdown = out_dir / f"{name}.md"
    notes = []
    if any(r["bytes_scope"] != "protocol" for r in rows):
        notes.append("\\* total bytes including the harness's evaluation exchange (the results file lists no exchanges).")
    if any("‡" in r["client_statistics"] for r in rows):
        notes.append("‡ not recorded by single_shot; its server rejects any reply holding more than arrays x, s, y.")
    markdown.write_text(markdown_tables(rows) + ("\n" + "\n".join(notes) + "\n" if notes else ""), encoding="utf-8")
    return {
        "markdown": markdown,
        "csv": write_csv(rows, out_dir / f"{name}.csv"),
        "plot": plot(rows, out_dir / f"{name}.png"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m fedsynth.comparison PATH... [--out-dir DIR] [--name NAME]``."""
    parser = argparse.ArgumentParser(prog="fedsynth-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="results.json files or folders searched recursively")
    parser.add_argument("--out-dir", default="comparison", type=Path, help="folder for the table, CSV and plot")
    parser.add_argument("--name", default="comparison", help="file name stem of the outputs")
    args = parser.parse_args(argv)
    try:
        records = load_results(args.paths)
        paths = write_report(records, args.out_dir, args.name)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"fedsynth-compare: {err}", file=sys.stderr)
        return 2
    print(f"{len(records)} runs")
    print(paths["markdown"].read_text(encoding="utf-8"))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
