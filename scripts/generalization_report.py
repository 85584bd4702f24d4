"""The generalization study's table (issue 20): mean and worst seed per method, dataset, K and split.

Reads every ``results.json`` under the given folders (the runs of ``fedsynth -m
+experiment=generalization``, one multirun per method), evaluates each run's θ again on its own split
(the dataset spec, partition and seed its config holds) to get accuracy, balanced accuracy and SPD,
adds the constant classifier (the majority label of the pooled training rows) of that split, and
prints one Markdown table: per setting, each method's mean and worst seed, and the issue's first goal
for single_shot (never below the constant classifier; within 1 point (mean) / 2 points (worst) of
centralized fair at |SPD| <= its |SPD| + 0.02).

    python scripts/generalization_report.py multirun/generalization [--out docs/comparison/generalization.md]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

from fedsynth.core import LogisticMixture, LogisticModel
from fedsynth.data import DatasetSpec, load_dataset, partition_clients
from fedsynth.data.types import TabularData
from fedsynth.metrics import evaluation_counts, metrics_from_counts

SPLITS = {("iid", None): "IID"}


@functools.lru_cache(maxsize=4)
def _data(spec_json: str, data_dir: str | None) -> TabularData:
    return load_dataset(DatasetSpec.from_config(json.loads(spec_json)), data_dir)


@functools.lru_cache(maxsize=64)
def _split(spec_json: str, data_dir: str | None, seed: int, scheme: str, alpha: float, test_fraction: float):
    spec = DatasetSpec.from_config(json.loads(spec_json))
    clients = partition_clients(
        _data(spec_json, data_dir), spec.num_clients, seed=seed, scheme=scheme, dirichlet_alpha=alpha,
        test_fraction=test_fraction,
    )
    train = TabularData.concat([c.train for c in clients])
    test = TabularData.concat([c.test for c in clients])
    return train, test


def evaluate_run(results: dict) -> dict:
    """Accuracy, balanced accuracy, SPD of the run's θ on its split, and the constant classifier's."""
    config = results["config"]
    partition = config["partition"]
    dataset = dict(config["dataset"])
    train, test = _split(
        json.dumps(dataset, sort_keys=True), config.get("data_dir"), int(config["seed"]), partition["scheme"],
        float(partition["dirichlet_alpha"]), float(partition["test_fraction"]),
    )
    model = LogisticModel(fit_intercept=bool(config["model"]["fit_intercept"]))
    theta = torch.tensor(results["theta"], dtype=torch.float64)
    width = model.num_weights(test.num_features)
    if theta.numel() != width:
        theta = LogisticMixture.unpack(theta.numpy(), width)
    counts = evaluation_counts(model, theta, test)
    metrics = metrics_from_counts(counts)
    positives = counts["n_y1_s1"] + counts["n_y1_s0"]
    true_positives = counts["true_positive_s1"] + counts["true_positive_s0"]
    negatives = counts["n"] - positives
    balanced = 0.5 * (true_positives / positives + (counts["correct"] - true_positives) / negatives)
    majority = 1.0 if float((train.y > 0).double().mean()) >= 0.5 else -1.0
    return {
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": balanced,
        "spd": metrics["spd"],
        "constant": float((test.y == majority).double().mean()),
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
            metrics = evaluate_run(results)
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
        constant = next(iter(next(iter(methods.values())).values()))["constant"]
        for name in sorted(methods):
            runs = methods[name]
            seeds = sorted(runs)
            acc = summary(runs, "accuracy", min)
            bal = summary(runs, "balanced_accuracy", min)
            spd_values = {s: abs(m["spd"]) for s, m in runs.items()}
            spd = (statistics.fmean(spd_values.values()), max(spd_values.values()))
            seconds = statistics.fmean(m["seconds"] for m in runs.values())
            verdict = goal_one(runs, methods.get("centralized fair")) if name == "single_shot" else ""
            seed_text = ",".join(f"{s}*" if s in held_out else str(s) for s in seeds)
            lines.append(
                f"| {setting[0]} | {setting[1]} | {setting[2]} | {name} | {seed_text} | "
                f"{100 * acc[0]:.2f} / {100 * acc[1]:.2f} | {100 * bal[0]:.2f} / {100 * bal[1]:.2f} | "
                f"{spd[0]:.3f} / {spd[1]:.3f} | {seconds:.0f} | {verdict} |"
            )
        lines.append(
            f"| {setting[0]} | {setting[1]} | {setting[2]} | constant classifier | | {100 * constant:.2f} | 50.00 | 0.000 | | |"
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
        detail += f", below constant on seeds {below_constant}"
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
    text = render(table, {int(s) for s in args.held_out.split(",") if s})
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
