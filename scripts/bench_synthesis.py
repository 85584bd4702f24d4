#!/usr/bin/env python
"""Benchmark one client's synthesis (Algorithm 1) on Law School (race), as in issue 3.

One client of the paper's Law School setting (K = 2, client 0: N = 8319 training rows,
n = 11 features + intercept), N_s = N (``copy`` labels) by default, k_max = 1000. It times the
warm-started synthesis (``SynthesisConfig(warm_start=True)``, the default) and the naive variant
that solves every inner problem from θ = 0 with a fresh L-BFGS (``warm_start=False``), and prints
for each: wall and CPU time (medians over ``--repeat`` runs), outer iterations per second, mean
inner L-BFGS iterations per outer step, mean CG iterations per backward, peak memory and the final
P; then the naive/warm ratio. The machine's load average is printed too: on a shared machine, wall
times move with it. Results and what dominates: ``docs/performance.md``.

Runs on one thread (``torch.set_num_threads(1)``) unless ``--threads`` says otherwise: the
target is "≤ 3 s per client on one core". The data come through the data layer
(``conf/dataset/law_school_race.yaml``, from the data directory: docs/data.md).

    .venv/bin/python scripts/bench_synthesis.py                       # full run, both variants
    .venv/bin/python scripts/bench_synthesis.py --k-max 100 --repeat 3
    .venv/bin/python scripts/bench_synthesis.py --k-max 200 --variants warm --profile
    .venv/bin/python scripts/bench_synthesis.py --variants warm --hessian-ab 3  # formed vs matrix-free H

The speed targets live here (printed as met / not met), not in timed tests.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import resource
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml

import fedsynth.core.model as model_module
from fedsynth.core import SynthesisConfig, synthesize
from fedsynth.data import DatasetSpec, load_dataset, partition_clients

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 3.0
TARGET_RATIO = 10.0


@dataclass
class Run:
    """One timed synthesis."""

    seconds: float
    cpu_seconds: float
    outer: int
    inner_mean: float
    inner_max: int
    inner_unconverged: int
    cg_mean: float
    cg_unconverged: int
    final_objective: float
    rss_start_mb: float | None
    rss_peak_mb: float | None


def load_client(dataset: str, client: int, seed: int):
    """Client ``client``'s training rows of ``dataset`` (a ``conf/dataset/*.yaml`` name)."""
    with open(REPO / "conf" / "dataset" / f"{dataset}.yaml") as handle:
        spec = DatasetSpec.from_config(yaml.safe_load(handle))
    data = load_dataset(spec)
    return partition_clients(data, spec.num_clients, seed=seed)[client].train


def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def run_once(train, config: SynthesisConfig, seed: int) -> Run:
    """Time one synthesis and record the process's resident memory at its start and its peak
    during the run (VmRSS / VmHWM after resetting VmHWM; ``None`` where /proc is unavailable)."""
    gc.collect()
    reset = reset_peak_rss()
    rss_start = _proc_status_mb("VmRSS")
    start, cpu_start = time.perf_counter(), time.process_time()
    result = synthesize(train, config, seed=seed)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rss_peak = _proc_status_mb("VmHWM") if reset else None
    h = result.history
    inner = h.inner_iterations[: config.k_max]  # the last entry is synthesize's final solve
    cg = h.implicit.cg_iterations
    return Run(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        outer=config.k_max,
        inner_mean=statistics.fmean(inner) if inner else 0.0,
        inner_max=max(inner, default=0),
        inner_unconverged=h.inner_unconverged,
        cg_mean=statistics.fmean(cg) if cg else 0.0,
        cg_unconverged=h.implicit.unconverged,
        final_objective=h.objective[-1] if h.objective else float("nan"),
        rss_start_mb=rss_start,
        rss_peak_mb=rss_peak,
    )


def max_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def benchmark(train, config: SynthesisConfig, seed: int, repeat: int, name: str) -> tuple[float, float]:
    """Run and report one variant; return the median wall and CPU seconds."""
    runs = [run_once(train, config, seed) for _ in range(repeat)]
    seconds = sorted(r.seconds for r in runs)
    median = statistics.median(seconds)
    r = runs[0]
    print(f"\n[{name}] warm_start={config.warm_start}")
    print(f"  wall time          median {median:.3f} s   (runs: {', '.join(f'{s:.3f}' for s in seconds)})")
    cpu = statistics.median(x.cpu_seconds for x in runs)
    print(f"  CPU time           median {cpu:.3f} s   (process time: what this process ran, whatever the load)")
    print(f"  outer it/s         {r.outer / median:.1f}   ({1e3 * median / max(r.outer, 1):.2f} ms per outer step)")
    print(f"  inner L-BFGS it    mean {r.inner_mean:.2f} per outer step, max {r.inner_max}, "
          f"unconverged solves {r.inner_unconverged}")
    print(f"  CG it (backward)   mean {r.cg_mean:.2f}, unconverged {r.cg_unconverged}")
    print(f"  final P            {r.final_objective:.10f}")
    if r.rss_peak_mb is not None and r.rss_start_mb is not None:
        grow = max(x.rss_peak_mb - x.rss_start_mb for x in runs)
        print(f"  peak RSS           {max(x.rss_peak_mb for x in runs):.0f} MiB (process, torch included; "
              f"at most {grow:+.1f} MiB over the RSS at the start of a run)")
    else:
        print(f"  peak RSS           {max_rss_mb():.0f} MiB (process lifetime, getrusage)")
    return median, cpu


def profile(train, config: SynthesisConfig, seed: int, top: int) -> None:
    """cProfile one synthesis and print the top entries by own time and by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    synthesize(train, config, seed=seed)
    profiler.disable()
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(top)
        print(f"\n--- cProfile, warm_start={config.warm_start}, sorted by {key} ---")
        lines = [line for line in out.getvalue().splitlines() if line.strip()]
        print("\n".join(lines[-(top + 3):]))


def hessian_ab(train, config: SynthesisConfig, seed: int, rounds: int) -> None:
    """Interleave warm syntheses with the matrix-free Hessian-vector product and with the formed
    d × d Hessian (``fedsynth.core.model.DENSE_HESSIAN_MAX_COLUMNS``) in this one process, and print
    each run and the median CPU-time ratio (formed / matrix-free): the load hits both alike."""
    widest = model_module.DENSE_HESSIAN_MAX_COLUMNS
    times: dict[str, list[Run]] = {"matrix-free": [], "formed": []}
    try:
        for _ in range(rounds):
            for name, columns in (("matrix-free", 0), ("formed", widest)):
                model_module.DENSE_HESSIAN_MAX_COLUMNS = columns
                times[name].append(run_once(train, config, seed))
    finally:
        model_module.DENSE_HESSIAN_MAX_COLUMNS = widest
    print("\n[Hessian A/B] interleaved, warm start")
    for name, runs in times.items():
        print(f"  {name:12s} CPU {', '.join(f'{r.cpu_seconds:.3f}' for r in runs)} s; "
              f"wall {', '.join(f'{r.seconds:.3f}' for r in runs)} s; final P {runs[0].final_objective:.10f}")
    ratios = [f.cpu_seconds / m.cpu_seconds for f, m in zip(times["formed"], times["matrix-free"])]
    print(f"  formed / matrix-free CPU time: median {statistics.median(ratios):.3f} "
          f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k-max", type=int, default=1000, help="outer iterations (default 1000)")
    parser.add_argument("--synthetic-size", default="full", help="N_s: an integer or 'full' (= N, copy labels)")
    parser.add_argument("--labels", default=None, help="synthetic labels (default: copy for full, balanced otherwise)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per variant (median reported)")
    parser.add_argument("--variants", choices=("both", "warm", "naive"), default="both")
    parser.add_argument("--naive-k-max", type=int, default=None,
                        help="outer iterations of the naive run (default: --k-max); its time is scaled to --k-max")
    parser.add_argument("--rho-o", type=float, default=10.0)
    parser.add_argument("--lambda-theta", type=float, default=1e-3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--history-size", type=int, default=None, help="L-BFGS history (default: the library's)")
    parser.add_argument("--tolerance-grad", type=float, default=None, help="inner tolerance (default: the library's)")
    parser.add_argument("--no-extrapolate", action="store_true", help="warm start from θ_k, not 2θ_k − θ_{k−1}")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: one core)")
    parser.add_argument("--dataset", default="law_school_race")
    parser.add_argument("--client", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="also print the top cProfile entries (warm variant)")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--hessian-ab", type=int, default=0, metavar="ROUNDS",
                        help="also run ROUNDS interleaved pairs of warm syntheses with the matrix-free and the formed "
                             "Hessian of the implicit backward (issue 14 item 1) and print their CPU-time ratio")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    train = load_client(args.dataset, args.client, args.seed)
    size = None if args.synthetic_size == "full" else int(args.synthetic_size)
    labels = args.labels or ("copy" if size is None else "balanced")
    config = SynthesisConfig(
        rho_o=args.rho_o,
        lambda_theta=args.lambda_theta,
        lr=args.lr,
        k_max=args.k_max,
        synthetic_size=size,
        synthetic_labels=labels,
    )
    # options passed only when given, so the script also runs against older versions of the core
    inner = {}
    if args.history_size is not None:
        inner["history_size"] = args.history_size
    if args.tolerance_grad is not None:
        inner["tolerance_grad"] = args.tolerance_grad
    if args.no_extrapolate:
        inner["extrapolate"] = False
    if inner:
        config = replace(config, inner=replace(config.inner, **inner))
    load = os.getloadavg()
    print(f"fedsynth synthesis benchmark: {args.dataset} client {args.client}, N = {len(train)}, "
          f"n = {train.num_features + 1} (+ intercept), N_s = {size or len(train)} ({labels}), k_max = {args.k_max}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"inner: {config.inner}\ncg: {config.cg}")

    synthesize(train, replace(config, k_max=3), seed=args.seed)  # warm-up: lazy imports, allocator
    medians: dict[str, tuple[float, float]] = {}  # variant -> (wall, CPU) seconds for k_max outer steps
    if args.variants in ("both", "warm"):
        medians["warm"] = benchmark(train, config, args.seed, args.repeat, "warm start")
    if args.variants in ("both", "naive"):
        naive_k = args.naive_k_max or args.k_max
        wall, cpu = benchmark(train, replace(config, warm_start=False, k_max=naive_k), args.seed, args.repeat, "naive")
        medians["naive"] = (wall * args.k_max / naive_k, cpu * args.k_max / naive_k)
        if naive_k != args.k_max:
            print(f"  scaled to k_max = {args.k_max}: {medians['naive'][0]:.3f} s wall, {medians['naive'][1]:.3f} s CPU")

    if args.hessian_ab:
        hessian_ab(train, config, args.seed, args.hessian_ab)

    print()
    if "warm" in medians:
        wall, cpu = (t * 1000 / max(args.k_max, 1) for t in medians["warm"])
        if args.k_max == 1000:
            verdict = "met" if wall <= TARGET_SECONDS else "NOT met"
        else:  # the first outer steps cost more than later warm-started ones: no verdict from a scaled time
            verdict = f"not judged (scaled from k_max = {args.k_max}; run --k-max 1000 for the verdict)"
        print(f"target ≤ {TARGET_SECONDS:.0f} s per client (k_max = 1000): {wall:.2f} s wall ({cpu:.2f} s CPU) -> {verdict}")
    if len(medians) == 2:
        ratio = medians["naive"][0] / medians["warm"][0]
        cpu_ratio = medians["naive"][1] / medians["warm"][1]
        if (args.naive_k_max or args.k_max) == args.k_max == 1000:
            verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        else:
            verdict = "not judged (from scaled or shortened runs; run --k-max 1000 for the verdict)"
        print(f"naive / warm time ratio: {ratio:.2f}x wall ({cpu_ratio:.2f}x CPU) (target ≥ {TARGET_RATIO:.0f}x) -> {verdict}")
    print(f"load average now: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    if args.profile:
        profile(train, config, args.seed, args.profile_top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
