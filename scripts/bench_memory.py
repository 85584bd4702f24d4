#!/usr/bin/env python
"""Memory of a ``fedsynth`` run and of a sweep: peak RSS per process, by role, read from ``/proc``.

Runs the ``fedsynth`` command as a user would and samples every process of its tree every
``--interval`` seconds: each process's peak RSS (the kernel's ``VmHWM``, last read before it
ended) and the tree's total RSS at each sample. Prints, per role (client processes, the
ServerApp's ``flwr-simulation``, the SuperLink, Ray's services, the ``fedsynth`` command), the
number of processes and their largest and median peak RSS, then the tree's peak total.

With ``--sweep P`` the command is a P-point multirun (``seed=0,...,P-1``): on the simulation
engine its points share one federation and one Flower run, and the RSS of its long-lived
processes (the command, the SuperLink, the ServerApp, the client processes, Ray's services) is
printed at the start of each point (when the point's output folder appears) and at the end of the
last one: they must not grow from point to point.

    .venv/bin/python scripts/bench_memory.py                           # Dutch, K = 100, N_s = 100 balanced, k_max = 200
    .venv/bin/python scripts/bench_memory.py --sweep 3                 # the same run as a 3-point sweep
    .venv/bin/python scripts/bench_memory.py -- engine=inprocess       # another engine or other overrides
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

FEDSYNTH = Path(sys.executable).parent / "fedsynth"
DEFAULTS = (
    "dataset=dutch_gender",
    "dataset.num_clients=100",
    "method=single_shot_paper",
    "method.synthetic_size=100",
    "method.synthetic_labels=balanced",
    "method.k_max=200",
    "engine=simulation",
)
"""The issue's K = 100 run; an override of the same key replaces one."""
ROLES = (
    ("client (Ray actor)", "ray::ClientAppActor"),
    ("client process or the run's own process (forkserver)", "multiprocessing.forkserver"),
    ("Ray GCS", "gcs_server"),
    ("Ray raylet", "raylet"),
    ("Ray idle worker", "ray::IDLE"),
    ("Ray service", "/ray/"),
    ("fedsynth command", "fedsynth"),
)
"""Role of a process: the first command-line pattern it contains (``ray::`` names first: a Ray
worker's command line is rewritten when it becomes an actor)."""
LONG_LIVED = (
    "fedsynth command", "client (Ray actor)", "client process or the run's own process (forkserver)", "Ray GCS", "Ray raylet",
)


def role_of(command: str) -> str:
    """The role (:data:`ROLES`) of a command line, ``other`` if none."""
    return next((role for role, pattern in ROLES if pattern in command), "other")


def tree(root: int) -> dict[int, str]:
    """``{pid: command line}`` of ``root`` and its live descendants."""
    try:
        command = Path(f"/proc/{root}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return {}
    found = {root: command}
    for child in psutil.Process(root).children(recursive=True):
        try:
            found[child.pid] = " ".join(child.cmdline())
        except psutil.Error:
            continue
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """``(RSS, peak RSS)`` of ``pid`` in KiB (0, 0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    values = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith(("VmRSS", "VmHWM"))}
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def main(argv: list[str] | None = None) -> int:
    """Run the command, sample its processes, print the table; exit with the command's code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=int, default=0, metavar="P", help="a P-point sweep over seed (default: one run)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples (default 0.2)")
    parser.add_argument("overrides", nargs="*", help="fedsynth overrides (the issue's K = 100 Dutch run unless replaced)")
    args = parser.parse_args(argv)
    named = {override.split("=", 1)[0].lstrip("+~") for override in args.overrides}
    overrides = [default for default in DEFAULTS if default.split("=", 1)[0] not in named] + args.overrides

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        if args.sweep:
            seeds = ",".join(str(seed) for seed in range(args.sweep))
            command = [str(FEDSYNTH), "-m", *overrides, f"seed={seeds}", f"hydra.sweep.dir={tmp}/out"]
        else:
            command = [str(FEDSYNTH), *overrides, f"hydra.run.dir={tmp}/out"]
        print(f"{' '.join(command[1:-1])}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
        start = time.perf_counter()
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peaks: dict[int, tuple[str, int]] = {}  # pid -> (role, peak RSS KiB)
        peak_total, points, last = 0, [], {}  # points: (a point's output folder, {role: RSS KiB} then)
        while run.poll() is None:
            total, long_lived = 0, {}
            for pid, line in tree(run.pid).items():
                rss, hwm = memory_kib(pid)
                if not line.strip():
                    continue  # ending: its command line is gone already
                role = role_of(line)
                total += rss
                peaks[pid] = (role, max(hwm, peaks.get(pid, (role, 0))[1]))
                if role in LONG_LIVED:
                    long_lived[role] = long_lived.get(role, 0) + rss
            started = Path(tmp, "out", str(len(points)))
            if args.sweep and started.is_dir():
                points.append((started.name, long_lived))
            last = long_lived if len(long_lived) >= len(last) else last  # the end: the last sample with all of them
            peak_total = max(peak_total, total)
            time.sleep(args.interval)
        wall_s = time.perf_counter() - start
        stderr = run.stderr.read().decode(errors="replace") if run.stderr else ""
    if run.returncode != 0:
        print(f"fedsynth failed (exit code {run.returncode}):\n{stderr[-3000:]}")
        return run.returncode

    print(f"wall {wall_s:.1f} s; {len(peaks)} processes seen; peak RSS of the whole tree {peak_total / 1024:.0f} MiB")
    print(f"{'role':<28} {'processes':>9} {'max peak MiB':>12} {'median peak MiB':>15}")
    by_role: dict[str, list[int]] = {}
    for role, peak in peaks.values():
        by_role.setdefault(role, []).append(peak)
    for role in [role for role, _ in ROLES] + ["other"]:
        if role in by_role:
            values = by_role[role]
            print(f"{role:<28} {len(values):9d} {max(values) / 1024:12.0f} {statistics.median(values) / 1024:15.0f}")
    if args.sweep:
        print("RSS of the long-lived processes (MiB) at the start of each point, and at the end of the last:")
        roles = [role for role in LONG_LIVED if any(role in sample for _, sample in points)]
        print("point  " + "  ".join(f"{role:>20}" for role in roles))
        for label, sample in [*((str(index), sample) for index, (_, sample) in enumerate(points)), ("end", last)]:
            print(f"{label:<6} " + "  ".join(f"{sample.get(role, 0) / 1024:20.0f}" for role in roles))
    print(f"load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
