"""Time of a private synthesis against the non-private one (issue 22's goal: ≤ 2×, same N, N_s, k_max).

One client of Law School (race) and one of Dutch, the issue's settings (N_s = 800 / 1200 balanced,
ρ_o = 10, k_max = 200), in one process with one torch thread: the two syntheses alternate
``--repeat`` times and the medians are compared. The one-off costs of a private client process are
printed apart: importing Opacus and calibrating the noise (cached per process).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_privacy.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedsynth.core import SynthesisConfig, synthesize  # noqa: E402
from fedsynth.data import DatasetSpec, load_partition  # noqa: E402
from fedsynth.paths import data_directory  # noqa: E402
from fedsynth.privacy.budget import ClippedBudget  # noqa: E402


def main() -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from fedsynth.privacy.synthesis import private_statement, private_synthesize

    budget = ClippedBudget(epsilon=1.0)
    start = time.perf_counter()
    private_statement(budget)  # imports Opacus, then its PRV search (cached per process)
    calibrated = time.perf_counter() - start
    print(f"load: {os.getloadavg()[0]:.2f}; one-off per private client process: importing Opacus and "
          f"calibrating the noise {calibrated:.2f} s")
    print("| dataset | N | N_s | k_max | non-private s (median) | private s (median) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, size in (("law_school_race", 800), ("dutch_gender", 1200)):
        spec = DatasetSpec.from_config(yaml.safe_load((ROOT / f"conf/dataset/{name}.yaml").read_text()))
        train = load_partition(spec, 0, seed=0, data_dir=data_directory(None)).train
        config = SynthesisConfig(rho_o=10.0, synthetic_size=size, synthetic_labels="balanced", k_max=200)
        plain, private = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            synthesize(train, config, seed=0)
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            private_synthesize(train, config, budget, seed=0, client_id=0)
            private.append(time.perf_counter() - start)
        ratio = statistics.median(private) / statistics.median(plain)
        print(f"| {name} | {len(train)} | {size} | 200 | {statistics.median(plain):.2f} | "
              f"{statistics.median(private):.2f} | {ratio:.2f} |", flush=True)
    print(f"load at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
