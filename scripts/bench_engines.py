#!/usr/bin/env python
"""Benchmark the engines: the same ``fedsynth`` run on ``engine=inprocess`` and ``engine=simulation``.

Runs the ``fedsynth`` command as a user would (default: ``dataset=law_school_race``, the paper's
Law School race setting with N_s = N (set explicitly: the default N_s is 200), k_max = 1000), alternating the engines
``--repeat`` times so that both see the same machine load, and prints per run: the command's wall
time (Python and Hydra start-up included), the engine's wall time, the critical-path compute
(slowest client per exchange plus the server's own work, as the clients measured it), and the
engine overhead. Then the medians and the issue-14 target: the simulation engine adds at most 5 s
over ``engine=inprocess`` for the same run, on the command's wall time. With ``--sweep P`` it then
runs a P-point multirun (``seed=0,...,P-1``, Hydra's basic launcher) on each engine, alternating,
and prints each sweep's wall time and the issue-14 sweep ratio: (simulation sweep − one start-up)
/ in-process sweep, where one start-up is the single-run difference measured above (target
≤ 1.3: the points of a simulation sweep share one federation). Both engines must give the same
metrics; the script checks it.

    .venv/bin/python scripts/bench_engines.py                        # Law School race, 3 pairs
    .venv/bin/python scripts/bench_engines.py --repeat 1 -- method.k_max=200     # Law School, shorter
    .venv/bin/python scripts/bench_engines.py --repeat 1 -- dataset=synthetic      # another dataset
    .venv/bin/python scripts/bench_engines.py --repeat 3 --sweep 3 -- method.k_max=200   # and 3-point sweeps

Wall times move with the machine's load (printed): compare numbers from the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedsynth.reporting.results import RESULTS_FILE

ENGINES = ("inprocess", "simulation")
FEDSYNTH = Path(sys.executable).parent / "fedsynth"
DEFAULTS = ("dataset=law_school_race", "method=single_shot_paper", "method.synthetic_size=full", "method.synthetic_labels=copy")
"""The default run (the paper's setting with N_s = N on Law School); an override of the same key replaces one."""


def quiet(engine: str) -> list[str]:
    """The override that turns the clients' progress display off (the in-process engine's)."""
    return ["engine.progress=off"] if engine == "inprocess" else []


def run_once(engine: str, overrides: list[str], out: Path) -> dict[str, float]:
    """One ``fedsynth`` run; its timings and metrics."""
    command = [str(FEDSYNTH), *overrides, f"engine={engine}", *quiet(engine), f"hydra.run.dir={out}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    command_s = time.perf_counter() - start
    record = json.loads((out / RESULTS_FILE).read_text(encoding="utf-8"))
    return {
        "command_s": command_s,
        "engine_s": record["timings"]["wall_s"],
        "compute_s": record["timings"]["compute_s"],
        "server_s": record["timings"]["server_s"],
        "overhead_s": record["timings"]["overhead_s"],
        "accuracy": record["accuracy"],
        "spd": record["spd"],
    }


def sweep_once(engine: str, overrides: list[str], points: int, out: Path) -> tuple[float, list[dict]]:
    """One ``fedsynth -m`` sweep over ``seed=0..points-1``; its command wall time and its points' records."""
    seeds = ",".join(str(seed) for seed in range(points))
    command = [str(FEDSYNTH), "-m", *overrides, f"engine={engine}", *quiet(engine), f"seed={seeds}", f"hydra.sweep.dir={out}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall_s = time.perf_counter() - start
    records = [json.loads((out / str(point) / RESULTS_FILE).read_text(encoding="utf-8")) for point in range(points)]
    return wall_s, records


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; exit 1 if the engines disagree."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--sweep", type=int, default=0, metavar="P", help="then P-point sweeps, --repeat pairs (default: none)")
    parser.add_argument(
        "overrides", nargs="*",
        help="fedsynth overrides (law_school_race at the paper's N_s = N unless they name a dataset or N_s)",
    )
    args = parser.parse_args(argv)
    named = {override.split("=", 1)[0].lstrip("+~") for override in args.overrides}
    overrides = [default for default in DEFAULTS if default.split("=", 1)[0] not in named] + args.overrides

    print(f"fedsynth {' '.join(overrides)}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    print(f"{'engine':<11} {'command s':>9} {'engine s':>9} {'server s':>9} {'compute s':>9} {'overhead s':>10}  metrics")
    runs: dict[str, list[dict[str, float]]] = {engine: [] for engine in ENGINES}
    sweeps: dict[str, list[float]] = {engine: [] for engine in ENGINES}
    sweep_metrics: dict[str, set] = {engine: set() for engine in ENGINES}
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        for repeat in range(args.repeat):
            for engine in ENGINES:
                result = run_once(engine, overrides, Path(tmp) / f"{engine}-{repeat}")
                runs[engine].append(result)
                print(
                    f"{engine:<11} {result['command_s']:9.1f} {result['engine_s']:9.1f} {result['server_s']:9.1f} "
                    f"{result['compute_s']:9.1f} {result['overhead_s']:10.1f}  "
                    f"accuracy {result['accuracy']:.4f} SPD {result['spd']:+.4f}",
                    flush=True,
                )
        medians = {engine: statistics.median(r["command_s"] for r in runs[engine]) for engine in ENGINES}
        added = medians["simulation"] - medians["inprocess"]
        print(f"median command wall: inprocess {medians['inprocess']:.1f} s, simulation {medians['simulation']:.1f} s")
        verdict = "met" if added <= 5.0 else "NOT met"
        print(f"simulation adds {added:.1f} s (target: at most 5 s) -> {verdict}; load average now {os.getloadavg()[0]:.2f}")
        for repeat in range(args.repeat if args.sweep else 0):
            for engine in ENGINES:
                wall_s, records = sweep_once(engine, overrides, args.sweep, Path(tmp) / f"sweep-{engine}-{repeat}")
                sweeps[engine].append(wall_s)
                sweep_metrics[engine] |= {tuple(round(r[key], 12) for key in ("accuracy", "spd")) for r in records}
                points = " ".join(f"{r['wall_seconds']:.1f}" for r in records)
                print(f"{engine:<11} {args.sweep}-point sweep {wall_s:6.1f} s (points' engine walls: {points} s)", flush=True)
    if args.sweep:
        sweep_medians = {engine: statistics.median(sweeps[engine]) for engine in ENGINES}
        ratio = (sweep_medians["simulation"] - added) / sweep_medians["inprocess"]
        print(
            f"median {args.sweep}-point sweep: inprocess {sweep_medians['inprocess']:.1f} s, "
            f"simulation {sweep_medians['simulation']:.1f} s; (simulation - one start-up of {added:.1f} s) / inprocess "
            f"= {ratio:.2f} (target: at most 1.3) -> {'met' if ratio <= 1.3 else 'NOT met'}; "
            f"load average now {os.getloadavg()[0]:.2f}"
        )
    metrics = {(round(r["accuracy"], 12), round(r["spd"], 12)) for engine in ENGINES for r in runs[engine]}
    if len(metrics) != 1 or (args.sweep and sweep_metrics["inprocess"] != sweep_metrics["simulation"]):
        print(f"the engines disagree: {sorted(metrics)}, sweeps {sweep_metrics}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
