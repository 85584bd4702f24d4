#!/usr/bin/env python
"""Benchmark how a run's time grows with the number of clients K and with the dataset size N.

Runs the ``fedsynth`` command as a user would (issue 14, goal 4: N_s = 100 balanced, k_max = 200,
``engine=simulation`` by default) once per point and prints, per point, the command's wall time
(Python, Hydra and Flower start-up included), the engine's wall time, the critical-path compute
(slowest client per exchange plus the server), the engine overhead, and the run's metrics.

    .venv/bin/python scripts/bench_scale.py                      # Dutch, K = 10, 30, 100, 300
    .venv/bin/python scripts/bench_scale.py --clients 100        # the goal's point only (≤ 15 s)
    .venv/bin/python scripts/bench_scale.py --sizes --clients 100 # N: Law School, Dutch, synthetic ×10 at K = 100
    .venv/bin/python scripts/bench_scale.py --data --sizes        # a node's data preparation only, no Flower

``--data`` times, in this process, what a client node does to get its own part
(``fedsynth.federated.client_logic.load_client_data``: the dataset read once per process, the
split's shuffle, the node's own rows), for K = 10, 30, 100, 300 on each dataset: the first call (the
file read and encoded), in CPU seconds of this process (less sensitive to the load than wall time), and the median of the next calls (what every further message cost before a
node kept its part; now it is paid once per run).

Wall times move with the machine's load (printed): compare numbers from the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedsynth.reporting.results import RESULTS_FILE

FEDSYNTH = Path(sys.executable).parent / "fedsynth"
SETTING = ("method=single_shot_paper", "method.synthetic_size=100", "method.synthetic_labels=balanced", "method.k_max=200")
"""Issue 14's fourth row: the paper's setting with N_s = 100 balanced rows per client, 200 outer steps."""
DATASETS = {
    "law_school": ("dataset=law_school_race",),
    "dutch": ("dataset=dutch_gender",),
    "synthetic_x10": ("dataset=synthetic", "dataset.generator.num_rows=40000"),
}
"""The N axis: Law School (20798 rows), Dutch (60420 rows), the built-in table at 10× its 4000 rows."""


def run_point(overrides: list[str], out: Path) -> dict[str, float]:
    """One ``fedsynth`` run: its timings and metrics."""
    quiet = ["engine.progress=off"] if "engine=inprocess" in overrides else []
    start = time.perf_counter()
    subprocess.run([str(FEDSYNTH), *overrides, *quiet, f"hydra.run.dir={out}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command_s = time.perf_counter() - start
    record = json.loads((out / RESULTS_FILE).read_text(encoding="utf-8"))
    timings = record["timings"]
    return {"command_s": command_s, "engine_s": timings["wall_s"], "compute_s": timings["compute_s"],
            "overhead_s": timings["overhead_s"], "accuracy": record["accuracy"], "spd": record["spd"]}


def data_point(dataset: tuple[str, ...], clients: int) -> tuple[float, float, int]:
    """CPU seconds (this process) of a node's data preparation for client 0 of ``clients``: the first call and the
    median of 5 repeats; and the node's row count."""
    from fedsynth import api
    from fedsynth.federated.client_logic import load_client_data

    experiment = api.check(api.compose([*dataset, f"dataset.num_clients={clients}"]))
    node = {"partition-id": 0, "num-partitions": clients}
    start = time.process_time()
    part = load_client_data(experiment, node)
    first = time.process_time() - start
    repeats = []
    for _ in range(5):
        start = time.process_time()
        load_client_data(experiment, node)
        repeats.append(time.process_time() - start)
    return first, sorted(repeats)[2], len(part.train) + len(part.test)


def main(argv: list[str] | None = None) -> int:
    """Run the points the arguments select and print one line per point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 30, 100, 300], help="values of K")
    parser.add_argument("--sizes", action="store_true", help="vary N (the datasets) at the first K instead")
    parser.add_argument("--engine", default="simulation", choices=("simulation", "inprocess"))
    parser.add_argument("--data", action="store_true", help="time a node's data preparation only (no run)")
    parser.add_argument("overrides", nargs="*", help="extra fedsynth overrides (after --)")
    args = parser.parse_args(argv)
    if args.data:
        print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
        print(f"{'dataset':<14}{'K':>5}{'rows/node':>11}{'first_cpu_s':>13}{'repeat_cpu_ms':>15}", flush=True)
        for name, dataset in (DATASETS.items() if args.sizes else [("dutch", DATASETS["dutch"])]):
            for clients in args.clients:
                first, repeat, rows = data_point(dataset, clients)
                print(f"{name:<14}{clients:>5}{rows:>11}{first:>13.3f}{repeat * 1e3:>15.2f}", flush=True)
        return 0
    if args.sizes:
        points = [(name, args.clients[0], overrides) for name, overrides in DATASETS.items()]
    else:
        points = [("dutch", k, DATASETS["dutch"]) for k in args.clients]
    print(f"load average before: {os.getloadavg()[0]:.2f} (engine={args.engine})", flush=True)
    print(f"{'dataset':<14}{'K':>5}{'command_s':>11}{'engine_s':>10}{'compute_s':>11}{'overhead_s':>12}"
          f"{'accuracy':>10}{'spd':>9}  load", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        for index, (name, clients, dataset) in enumerate(points):
            overrides = [*dataset, f"dataset.num_clients={clients}", *SETTING, f"engine={args.engine}", *args.overrides]
            row = run_point(overrides, Path(tmp) / str(index))
            print(f"{name:<14}{clients:>5}{row['command_s']:>11.2f}{row['engine_s']:>10.2f}{row['compute_s']:>11.2f}"
                  f"{row['overhead_s']:>12.2f}{row['accuracy']:>10.4f}{row['spd']:>9.4f}  {os.getloadavg()[0]:.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
