"""The files a sweep keeps its progress in, written by the ``fedsynth`` command's callbacks
(:mod:`fedsynth.callbacks`) and read by ``fedsynth-report`` (no runtime here).

``<sweep dir>/.sweep/plan.json``: ``{"total": points or null, "start": time}``;
``<sweep dir>/.sweep/jobs.jsonl``: one line per finished point (``num``, ``status``, ``seconds``,
``cpu_seconds``, ``end``, ``output_dir``). A sweep folder reused by a later multirun keeps the
earlier lines; the plan's start time tells them apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE_DIR = ".sweep"
PLAN_FILE = "plan.json"
JOBS_FILE = "jobs.jsonl"


def read_jobs(path: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """The job records of ``jobs.jsonl`` that ended after ``since``."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("end", since) >= since]


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``, ``3725`` -> ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
