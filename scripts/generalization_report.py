"""The generalization study's table (issue 20): mean and worst seed per setting and method.

Reads every ``results.json`` under the given folders (the runs of ``fedsynth -m
+experiment=generalization``, one multirun per method, the centralized references among them:
``method=centralized method.variant=plain,fair,exponentiated_gradient``) and takes each run's pooled
test ``accuracy``, ``balanced_accuracy`` and ``spd`` and its constant classifier
(``reference.constant``: the majority label of the pooled training rows) from the record. It prints
the issue's first goal for single_shot per dataset (never below the constant classifier; within 1
point (mean) / 2 points (worst) of centralized fair at |SPD| <= its |SPD| + 0.02), then one
Markdown table: per setting, each method's mean and worst seed.

    python scripts/generalization_report.py multirun/generalization [--held-out 3,4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from fedsynth.reporting.results import constant_reference


def run_metrics(results: dict) -> dict:
    """The run's pooled test accuracy, balanced accuracy and SPD, its constant classifier's
    accuracy and its wall seconds, as its ``results.json`` records them."""
    constant = constant_reference(results)
    if results.get("balanced_accuracy") is None or "accuracy" not in constant:
        raise ValueError("a results.json without balanced_accuracy or reference.constant (written before them): rerun it")
    return {
        "accuracy": float(results["accuracy"]),
        "balanced_accuracy": float(results["balanced_accuracy"]),
        "spd": float(results["spd"]),
        "constant": float(constant["accuracy"]),
        "seconds": float(results.get("wall_seconds", float("nan"))),
    }


def method_label(results: dict) -> str:
    method = results["config"]["method"]
    name = method["name"]
    if name == "centralized":
        return f"centralized {method['variant']}"
    return name


def setting_of(results: dict) -> tuple[str, int, str]:
    config = results["config"]
    partition = config["partition"]
    split = "IID" if partition["scheme"] == "iid" else f"α={float(partition['dirichlet_alpha']):g}"
    return config["dataset"]["name"], int(config["dataset"]["num_clients"]), split


def collect(folders: list[Path]) -> dict:
    """{setting: {method: {seed: metrics}}} over every results.json under ``folders``."""
    table: dict = defaultdict(lambda: defaultdict(dict))
    for folder in folders:
        for path in sorted(folder.rglob("results.json")):
            results = json.loads(path.read_text())
            try:
                metrics = run_metrics(results)
            except ValueError as err:
                raise SystemExit(f"generalization_report: error: {path}: {err}") from None
            table[setting_of(results)][method_label(results)][int(results["config"]["seed"])] = metrics
    return table


def summary(per_seed: dict, key: str, worst) -> tuple[float, float]:
    values = [m[key] for m in per_seed.values()]
    return statistics.fmean(values), worst(values)


def render(table: dict, held_out: set[int]) -> str:
    lines = [
        "| dataset | K | split | method | seeds | accuracy mean / worst | bal. acc. mean / worst | \\|SPD\\| mean / worst | s per run | goal 1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in sorted(table):
        methods = table[setting]
        constants = [m["constant"] for runs in methods.values() for m in runs.values()]
        constant = (statistics.fmean(constants), min(constants))
        for name in sorted(methods):
            runs = methods[name]
            seeds = sorted(runs)
            acc = summary(runs, "accuracy", min)
            bal = summary(runs, "balanced_accuracy", min)
            spd_values = {s: abs(m["spd"]) for s, m in runs.items()}
            spd = (statistics.fmean(spd_values.values()), max(spd_values.values()))
            seconds = statistics.fmean(m["seconds"] for m in runs.values())
            seconds_text = "" if seconds != seconds else f"{seconds:.0f}"
            verdict = goal_one(runs, methods.get("centralized fair")) if name == "single_shot" else ""
            seed_text = ",".join(f"{s}*" if s in held_out else str(s) for s in seeds)
            lines.append(
                f"| {setting[0]} | {setting[1]} | {setting[2]} | {name} | {seed_text} | "
                f"{100 * acc[0]:.2f} / {100 * acc[1]:.2f} | {100 * bal[0]:.2f} / {100 * bal[1]:.2f} | "
                f"{spd[0]:.3f} / {spd[1]:.3f} | {seconds_text} | {verdict} |"
            )
        lines.append(
            f"| {setting[0]} | {setting[1]} | {setting[2]} | constant classifier | | {100 * constant[0]:.2f} / {100 * constant[1]:.2f} | 50.00 | 0.000 | | |"
        )
    return "\n".join(lines)


def goal_summary(table: dict) -> str:
    """Goal 1 per dataset: over its goal settings (IID, α = 0.5, 1 with K ≤ 10; K = 50 with α = 0.5
    apart), how many single_shot met it, and the worst gaps over every seed of those settings."""
    groups: dict = defaultdict(list)
    for (dataset, clients, split), methods in table.items():
        if "single_shot" not in methods or "centralized fair" not in methods or split == "α=0.1":
            continue
        groups[(dataset, "K = 50, α = 0.5" if clients == 50 else "K = 2, 4, 10; IID, α = 0.5, 1")].append(methods)
    lines = [
        "| dataset | settings | goal 1 met | accuracy − centralized fair, mean / worst seed | \\|SPD\\| − fair's, worst seed | below the constant classifier |",
        "|---|---|---|---|---|---|",
    ]
    for (dataset, label), settings in sorted(groups.items()):
        met, gaps, excess, below = 0, [], [], []
        for methods in settings:
            runs, fair = methods["single_shot"], methods["centralized fair"]
            met += goal_one(runs, fair).startswith("met")
            for seed in sorted(set(runs) & set(fair)):
                gaps.append(100 * (runs[seed]["accuracy"] - fair[seed]["accuracy"]))
                excess.append(abs(runs[seed]["spd"]) - abs(fair[seed]["spd"]))
                shortfall = 100 * (runs[seed]["constant"] - runs[seed]["accuracy"])
                if shortfall > 1e-9:
                    below.append(shortfall)
        below_text = f"{len(below)} of {len(gaps)} runs, by ≤ {max(below):.2f} points" if below else "never"
        lines.append(
            f"| {dataset} | {label} | {met}/{len(settings)} | {statistics.fmean(gaps):+.2f} / {min(gaps):+.2f} | "
            f"{max(excess):+.3f} | {below_text} |"
        )
    return "\n".join(lines)


def goal_one(runs: dict, fair: dict | None) -> str:
    """Issue 20's first goal on the seeds both methods ran: never below the constant classifier;
    accuracy within 1 point (mean) / 2 points (worst seed) of centralized fair; |SPD| <= its + 0.02."""
    if not fair:
        return "no fair reference"
    seeds = sorted(set(runs) & set(fair))
    if not seeds:
        return "no common seed"
    gaps = [100 * (runs[s]["accuracy"] - fair[s]["accuracy"]) for s in seeds]
    below_constant = [s for s in seeds if runs[s]["accuracy"] < runs[s]["constant"] - 1e-12]
    spd_excess = [abs(runs[s]["spd"]) - abs(fair[s]["spd"]) for s in seeds]
    met = (
        not below_constant and statistics.fmean(gaps) >= -1.0 and min(gaps) >= -2.0 and max(spd_excess) <= 0.02 + 1e-12
    )
    detail = f"Δacc {statistics.fmean(gaps):+.2f} / {min(gaps):+.2f}, Δ\\|SPD\\| ≤ {max(spd_excess):+.3f}"
    if below_constant:
        shortfall = max(100 * (runs[s]["constant"] - runs[s]["accuracy"]) for s in below_constant)
        detail += f", below the constant classifier on seeds {below_constant} (by ≤ {shortfall:.2f} points)"
    return ("met: " if met else "**missed**: ") + detail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders holding results.json files")
    parser.add_argument("--held-out", default="3,4", help="seeds not looked at while choosing (marked *)")
    parser.add_argument("--out", type=Path, help="write the table here as well")
    args = parser.parse_args(argv)
    table = collect(args.folders)
    if not table:
        print(f"no results.json under {', '.join(map(str, args.folders))}", file=sys.stderr)
        return 2
    text = goal_summary(table) + "\n\n" + render(table, {int(s) for s in args.held_out.split(",") if s})
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
