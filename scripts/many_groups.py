"""The single-shot method on a sensitive attribute with k > 2 groups, in one process (no Flower):
each client synthesizes its rows (Algorithm 1, :func:`fedsynth.core.synthesize`, client c with seed
``seed + c`` as the method does), the server fits the plain model on their union (eq. 15), and the
pooled test counts give accuracy, balanced accuracy and the largest demographic-parity and
equal-opportunity gaps over the groups (:mod:`fedsynth.metrics.counts`), checked against fairlearn.

It measures issue 21's many-groups goal while the federated layer takes binary attributes only:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/many_groups.py --dataset dutch_sex_country \\
        --seeds 0 1 2 --settings "rho_o=0" "rho_o=10,fairness=group_covariance"

Each setting is ``key=value`` pairs of :class:`~fedsynth.core.SynthesisConfig` (defaults: the
paper's setting, conf/method/single_shot_paper.yaml's: N_s = 200 balanced over groups × labels,
k_max = 1000, the plain server fit). Prints one
Markdown row per setting and seed, then the mean and the worst seed (largest gap, lowest accuracy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fairlearn.metrics import demographic_parity_difference
from omegaconf import OmegaConf

from fedsynth.core import SynthesisConfig, fit_server_model, synthesize
from fedsynth.data import DatasetSpec, load_dataset, partition_clients
from fedsynth.metrics import evaluation_counts, metrics_from_counts, sum_counts

CONF_DIR = Path(__file__).resolve().parent.parent / "conf" / "dataset"


def parse_setting(text: str) -> dict[str, object]:
    """``"rho_o=10,fairness=group_covariance"`` → ``{"rho_o": 10.0, "fairness": "group_covariance"}``."""
    setting: dict[str, object] = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=", 1)
        try:
            setting[key] = int(value) if value.isdigit() else float(value)
        except ValueError:
            setting[key] = value
    return setting


def run(spec: DatasetSpec, setting: dict[str, object], seed: int, data_dir: str | None) -> dict[str, float]:
    """One run of the single-shot method on ``spec``'s IID clients: the pooled test metrics."""
    clients = partition_clients(load_dataset(spec, data_dir), spec.num_clients, seed=seed)
    config = SynthesisConfig(**{"synthetic_size": 200, "synthetic_labels": "balanced", **setting})
    started = time.perf_counter()
    synthetic = [synthesize(client.train, config, seed=seed + client.client_id).data for client in clients]
    model = config.model
    theta = fit_server_model(synthetic, model).theta
    metrics = metrics_from_counts(sum_counts([evaluation_counts(model, theta, client.test) for client in clients]))
    tests = [client.test for client in clients]
    y_true = [float(v) for t in tests for v in (t.y > 0).tolist()]
    y_pred = [float(v) for t in tests for v in (model.decision(theta, t) >= 0).tolist()]
    groups = [g for t in tests for g in t.s.tolist()]
    fairlearn_gap = demographic_parity_difference(y_true, y_pred, sensitive_features=groups)
    if abs(fairlearn_gap - metrics["spd"]) > 1e-9:
        raise AssertionError(f"pooled largest gap {metrics['spd']} differs from fairlearn's {fairlearn_gap}")
    return metrics | {"seconds": time.perf_counter() - started}


def main() -> None:
    """Run every setting on every seed and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="dutch_sex_country", help="a conf/dataset name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["rho_o=0", "rho_o=10"])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    spec = DatasetSpec.from_config(OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{args.dataset}.yaml")))
    print(f"{spec.name}: {spec.num_groups} groups, {spec.num_clients} IID clients")
    print("| setting | seed | accuracy | balanced acc. | largest DP gap | largest EO gap | s |")
    print("|---|---|---|---|---|---|---|")
    for text in args.settings:
        rows = []
        for seed in args.seeds:
            m = run(spec, parse_setting(text), seed, args.data_dir)
            rows.append(m)
            print(f"| {text} | {seed} | {m['accuracy']:.4f} | {m['balanced_accuracy']:.4f} | {m['spd']:.4f} "
                  f"| {m['eod']:.4f} | {m['seconds']:.0f} |", flush=True)
        mean = {key: sum(r[key] for r in rows) / len(rows) for key in ("accuracy", "balanced_accuracy", "spd", "eod")}
        print(f"| {text} | mean | {mean['accuracy']:.4f} | {mean['balanced_accuracy']:.4f} | {mean['spd']:.4f} "
              f"| {mean['eod']:.4f} | |")
        print(f"| {text} | worst | {min(r['accuracy'] for r in rows):.4f} | {min(r['balanced_accuracy'] for r in rows):.4f} "
              f"| {max(r['spd'] for r in rows):.4f} | {max(r['eod'] for r in rows):.4f} | |", flush=True)


if __name__ == "__main__":
    main()
