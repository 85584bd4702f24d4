#!/usr/bin/env python
"""How long a user waits for a config or data error: each case through the ``fedsynth`` command
on every engine, and through ``fedsynth-deploy``, timed from start to exit (the issue-12
target: under 3 s, one line, exit code 2). Prints one line per case and the maximum.

    .venv/bin/python scripts/bench_errors.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEDSYNTH = Path(sys.executable).parent / "fedsynth"
CASES = {
    "config value": ["dataset=law_school_race", "method.rho_o=abc"],
    "N_s above N": ["dataset=law_school_race", "method.synthetic_size=50000"],
    "sha256 of law_school.csv": ["dataset=law_school_race", "dataset.sha256=" + "0" * 64],
    "N_s above N (dutch)": ["dataset=dutch_gender", "method.synthetic_size=90000"],
}


def timed(command: list[str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)
    lines = done.stderr.strip().splitlines()
    return time.perf_counter() - start, done.returncode, lines[-1] if lines else ""


def main() -> int:
    """Run every case and print the timings."""
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in CASES.items():
            for runner in ("inprocess", "simulation", "deploy"):
                if runner == "deploy":
                    command = [str(Path(sys.executable).parent / "fedsynth-deploy"), "--out", f"{tmp}/d{time.time_ns()}", *overrides]
                else:
                    command = [str(FEDSYNTH), f"hydra.run.dir={tmp}/run", f"engine={runner}", *overrides]
                seconds, code, last = timed(command, Path(tmp))
                worst = max(worst, seconds)
                print(f"{seconds:5.2f} s  exit {code}  {runner:<11} {name}: {last[:110]}")
    print(f"slowest: {worst:.2f} s (target < 3 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
