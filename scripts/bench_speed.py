#!/usr/bin/env python
"""Issue 14's speed and scale goals in one table, every number measured by this invocation.

Runs, one after the other (never two at once):

1. ``scripts/bench_synthesis.py --variants warm``: one Law School client's synthesis (≤ 3 s);
2. the whole ``fedsynth engine=inprocess dataset=law_school_race method=single_shot_paper method.rho_o=10
   method.synthetic_size=full method.synthetic_labels=copy method.k_max=1000 seed=0`` command
   (≤ 7 s), with the peak RSS of each of its client processes (goal 6);
3. ``scripts/bench_engines.py``: what ``engine=simulation`` adds over in-process on the same run;
4. ``scripts/bench_scale.py`` (K-scaling), when the script exists;
5. a narrowed Table 2 sweep (``+experiment=table2 seed=0``, 30 of the 90 points) on the parallel
   launcher, its wall time scaled to 90 points (an extrapolation, printed as one), with the
   client processes' RSS at the sweep's first and last quarter (goal 6: no growth across points).

Every line of a sub-benchmark that ends in ``-> met`` / ``-> NOT met`` / ``-> not judged ...``
becomes a row of the table too, so the benchmarks keep their own targets and verdicts. A part that
fails prints its last output lines and the row says "not measured". ``--quick`` runs a shorter
version (k_max = 200 synthesis, one engine pair at k_max = 200, 12 Table 2 points); its
ratios are printed but the targets are judged only on the full runs.

    .venv/bin/python scripts/bench_speed.py            # everything (≈ 15-25 min on 2 cores)
    .venv/bin/python scripts/bench_speed.py --quick    # a few minutes
    .venv/bin/python scripts/bench_speed.py --only command,table2

Wall times move with the machine's load: the load average is printed with every part.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
COMMAND_OVERRIDES = (
    "engine=inprocess", "dataset=law_school_race", "method=single_shot_paper", "method.rho_o=10", "method.synthetic_size=full",
    "method.synthetic_labels=copy", "method.k_max=1000", "seed=0", "engine.progress=off",
)
"""Issue 14's second row: the whole in-process command on Law School with N_s = N."""
TABLE2_POINTS = 90
CLIENT_PROCESS_MARK = "multiprocessing.forkserver"
VERDICT = re.compile(r"^(?P<what>.*?)\s*->\s*(?P<verdict>met|NOT met|not judged[^;]*)")
PARTS = ("synthesis", "command", "engines", "scale", "table2")


@dataclass
class Row:
    """One line of the final table."""

    goal: str
    target: str
    measured: str
    verdict: str


def load() -> str:
    """The 1-minute load average, for every part's header."""
    return f"{os.getloadavg()[0]:.2f}"


def flower_environment() -> dict[str, str]:
    """This environment with Flower's and Ray's state in temporary folders (as the tests set it)."""
    environment = dict(os.environ)
    environment.update(
        FLWR_HOME=tempfile.mkdtemp(prefix="bench-flwr-"),
        RAY_TMPDIR=tempfile.mkdtemp(prefix="bench-ray-"),
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        FLWR_TELEMETRY_ENABLED="0",
    )
    return environment


class ClientMemory:
    """Samples the resident memory of the client processes under this process while it runs:
    the peak (``VmHWM``) of each, and its ``VmRSS`` over time."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_mib: dict[int, float] = {}
        self.samples: dict[int, list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "ClientMemory":
        self.start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.end = time.monotonic()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in client_process_ids():
                status = read_status(pid)
                if "VmHWM" in status:
                    self.peak_mib[pid] = max(self.peak_mib.get(pid, 0.0), status["VmHWM"])
                    self.samples.setdefault(pid, []).append((time.monotonic(), status["VmRSS"]))

    def growth_mib(self) -> float | None:
        """The largest rise of one client process's RSS from the first quarter of the run to its
        last quarter (processes that lived through both), or ``None`` if none did."""
        span = self.end - self.start
        early, late = self.start + span / 4, self.end - span / 4
        rises = []
        for samples in self.samples.values():
            first = [rss for t, rss in samples if t <= early]
            last = [rss for t, rss in samples if t >= late]
            if first and last:
                rises.append(max(last) - max(first))
        return max(rises) if rises else None


def client_process_ids() -> list[int]:
    """The in-process engine's client processes running now (any descendant of ours)."""
    ours = os.getpid()
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [ours]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if CLIENT_PROCESS_MARK in commands.get(child, ""):
                found.append(child)
    return found


def read_status(pid: int) -> dict[str, float]:
    """``VmHWM`` and ``VmRSS`` of ``pid`` in MiB (empty if it has gone)."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        return {}
    return values


def adopt_orphans() -> None:
    """Make this process the child subreaper of what it starts (Linux): a descendant whose
    parent was killed without waiting for it (the in-process engine's server process, killed at
    exit, leaves its fork server and clients) is then collected here, so its CPU time counts."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def collect_orphans(wait_s: float = 10.0) -> None:
    """Wait (at most ``wait_s``) for the adopted descendants that are still ending."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def run_part(title: str, command: list[str], cwd: Path, environment: dict[str, str]) -> tuple[str | None, float, float]:
    """Run ``command``; return its output (``None`` if it failed), wall seconds and the CPU
    seconds of it and all its descendants."""
    print(f"\n=== {title} (load average {load()})\n$ {' '.join(command)}", flush=True)
    adopt_orphans()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - start
    collect_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        print("\n".join(output.splitlines()[-15:]))
        print(f"(exit code {done.returncode} after {wall:.1f} s)")
        return None, wall, cpu
    print(done.stdout.rstrip())
    print(f"({wall:.1f} s wall, {cpu:.1f} s CPU with its child processes; load average now {load()})", flush=True)
    return output, wall, cpu


def verdict_rows(part: str, output: str | None) -> list[Row]:
    """The sub-benchmark's own ``... -> verdict`` lines as rows."""
    if output is None:
        return [Row(part, "(see its output)", "not measured: the benchmark failed", "—")]
    rows = []
    for line in output.splitlines():
        match = VERDICT.match(line.strip())
        if match:
            rows.append(Row(part, "(its own)", match["what"], match["verdict"]))
    return rows or [Row(part, "(its own)", "no verdict line in its output", "—")]


def judged(value: float, target: float, full: bool) -> str:
    """met / NOT met for a full run; a quick run's figure is not judged."""
    if not full:
        return "not judged (--quick)"
    return "met" if value <= target else "NOT met"


def main() -> None:
    """Run the selected parts and print the goals table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs; the targets are not judged")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--jobs", type=int, default=None, help="parallel sweep jobs for table2 (default: one per core)")
    args = parser.parse_args()
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)} in --only; choose from {', '.join(PARTS)}")
    full = not args.quick
    environment = flower_environment()
    work = Path(tempfile.mkdtemp(prefix="bench-speed-"))
    fedsynth = [PYTHON, "-m", "fedsynth.cli"]
    print(f"fedsynth speed benchmark{' (quick)' if args.quick else ''}: {os.cpu_count()} cores, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; scratch {work}")
    rows: list[Row] = []

    if "synthesis" in parts:
        command = [PYTHON, str(ROOT / "scripts/bench_synthesis.py"), "--variants", "warm"]
        command += ["--k-max", "200"] if args.quick else ["--repeat", "2"]
        output, _, _ = run_part("1. one client's synthesis", command, ROOT, environment)
        rows += verdict_rows("1. synthesis", output)

    if "command" in parts:
        command = [*fedsynth, *COMMAND_OVERRIDES, f"hydra.run.dir={work / 'command'}"]
        with ClientMemory() as memory:
            output, wall, cpu = run_part("2. the whole in-process command", command, work, environment)
        measured = f"{wall:.1f} s wall ({cpu:.1f} s CPU, all processes)" if output else "not measured: it failed"
        rows.append(Row("2. whole in-process command", "≤ 7 s", measured, judged(wall, 7.0, True) if output else "—"))
        peaks = sorted(memory.peak_mib.values())
        rows.append(Row("6. peak RSS per client process", "report",
                        f"{len(peaks)} processes: {', '.join(f'{p:.0f}' for p in peaks)} MiB" if peaks else "no client process seen",
                        "reported"))

    if "engines" in parts:
        command = [PYTHON, str(ROOT / "scripts/bench_engines.py"), "--repeat", "1"]
        if args.quick:
            command += ["--", "method.k_max=200"]
        output, _, _ = run_part("3. engines: simulation against in-process", command, work, environment)
        if output:
            match = re.search(r"median command wall: inprocess ([\d.]+) s, simulation ([\d.]+) s", output)
            if match:
                added = float(match[2]) - float(match[1])
                rows.append(Row("3. simulation adds over in-process", "≤ 5 s",
                                f"{added:.1f} s ({match[2]} s vs {match[1]} s, same invocation)", judged(added, 5.0, full)))
        rows += verdict_rows("3. bench_engines", output)

    if "scale" in parts:
        script = ROOT / "scripts/bench_scale.py"
        if script.exists():
            command = [PYTHON, str(script), *(["--quick"] if args.quick and "--quick" in script.read_text() else [])]
            output, _, _ = run_part("4. K-scaling", command, work, environment)
            rows += verdict_rows("4. bench_scale", output)
        else:
            rows.append(Row("4. K = 100 Dutch on simulation", "≤ 15 s", "not measured: scripts/bench_scale.py is not there", "—"))

    if "table2" in parts:
        narrowing = ["seed=0"] + (["method.rho_o=0,10"] if args.quick else [])
        points = 12 if args.quick else 30
        jobs = args.jobs or os.cpu_count() or 1
        command = [*fedsynth, "-m", "+experiment=table2", *narrowing, "hydra/launcher=parallel",
                   f"hydra.launcher.n_jobs={jobs}", f"hydra.sweep.dir={work / 'table2'}"]
        with ClientMemory(interval=2.0) as memory:
            output, wall, cpu = run_part(f"5. Table 2 narrowed to {points} points ({jobs} jobs)", command, work, environment)
        done = len(list((work / "table2").glob("*/results.json")))
        if output and done == points:
            scaled = wall * TABLE2_POINTS / points
            rows.append(Row("5. Table 2, 90 runs", "≤ 8 min",
                            f"{scaled / 60:.1f} min, extrapolated from {points} points in {wall:.0f} s wall "
                            f"({cpu:.0f} s CPU)", judged(scaled, 480.0, full)))
        else:
            rows.append(Row("5. Table 2, 90 runs", "≤ 8 min", f"not measured: {done} of {points} points finished", "—"))
        growth = memory.growth_mib()
        peaks = list(memory.peak_mib.values())
        rows.append(Row("6. client RSS across sweep points", "no growth",
                        (f"peak {max(peaks):.0f} MiB over {len(peaks)} processes; largest rise first→last quarter "
                         f"{growth:+.0f} MiB" if growth is not None else "no process lived through the sweep")
                        if peaks else "no client process seen", "reported"))

    print(f"\n=== goals (load average now {load()})")
    widths = [max(len(getattr(row, key)) for row in rows + [Row("goal", "target", "measured", "verdict")])
              for key in ("goal", "target", "measured")]
    header = Row("goal", "target", "measured", "verdict")
    for row in [header, *rows]:
        print(f"{row.goal:<{widths[0]}}  {row.target:<{widths[1]}}  {row.measured:<{widths[2]}}  {row.verdict}")


if __name__ == "__main__":
    main()
