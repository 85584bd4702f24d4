"""Hydra callbacks for long sweeps: a sweep-level progress line, one torch thread per worker and,
at the end, the sweep's folder with the command that reports on it.

Enable them in a config (the ``conf/experiment`` presets do)::

    hydra:
      callbacks:
        torch_threads:
          _target_: fedsynth.callbacks.TorchThreads
        sweep_progress:
          _target_: fedsynth.callbacks.SweepProgress

Both work with any launcher: the basic launcher runs the jobs in the ``fedsynth`` process, the
joblib launcher (``hydra/launcher=parallel``) in worker processes, so the progress is kept in
files of the sweep directory (``.sweep/plan.json`` and ``.sweep/jobs.jsonl``), not in memory.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fedsynth.federated.client_process import client_cpu_seconds
from fedsynth.progress import PROGRESS_ENV

STATE_DIR = ".sweep"
PLAN_FILE = "plan.json"
JOBS_FILE = "jobs.jsonl"


# ----------------------------------------------------------------------------- torch threads


def _cpu_count() -> int:
    """Cores this process may use (CPU affinity and cgroup quota, as joblib counts them)."""
    try:
        import joblib

        return max(1, int(joblib.cpu_count()))
    except Exception:  # pragma: no cover - joblib is a dependency of the launcher plugin
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def threads_per_job(config: DictConfig, cpu_count: int | None = None) -> int | None:
    """Torch threads for one job of ``config``'s launcher: cores / parallel jobs (at least 1), or
    ``None`` when jobs run one at a time (the basic launcher: leave torch's default)."""
    launcher = OmegaConf.select(config, "hydra.launcher", default=None)
    n_jobs = None if launcher is None else OmegaConf.select(launcher, "n_jobs", default=None)
    if n_jobs is None:
        return None
    cores = cpu_count or _cpu_count()
    n_jobs = int(n_jobs)
    parallel = cores + 1 + n_jobs if n_jobs < 0 else n_jobs  # joblib: -1 = all cores, -2 = all but one
    return max(1, cores // max(1, parallel))


class TorchThreads(Callback):
    """Set torch's intra-op threads at the start of every job.

    Args:
        num_threads: threads per job; ``None`` (default) means cores / ``hydra.launcher.n_jobs``
            for a parallel launcher and torch's default for the sequential one.
    """

    def __init__(self, num_threads: int | None = None) -> None:
        self.num_threads = num_threads

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        threads = self.num_threads if self.num_threads is not None else threads_per_job(config)
        if threads is None:
            return
        import torch

        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = str(int(threads))  # for processes the job starts


# ----------------------------------------------------------------------------- sweep progress


def _process_cpu_seconds() -> float:
    """CPU time (user + system, all threads) of this process, its waited-for children and its
    client worker processes (which live across sweep points, so are never waited for)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + client_cpu_seconds()


def sweep_points(arguments: Sequence[str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of ``arguments`` (override strings: the sweeper's
    ``params`` first, then the command line's), each as its list of ``key=value`` overrides: a
    later override of a key replaces an earlier one, and the jobs are the Cartesian product of
    the keys' values in the order the keys first appear (Hydra 1.3's ``BasicSweeper``). Raises
    ``ValueError`` for a sweep the basic sweeper cannot run (intervals)."""
    final: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = override.get_key_element()
        if not override.is_sweep_override():
            final[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            final[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise ValueError(f"the basic sweeper cannot sweep {key} ({override.value_type.name})")
    return [list(point) for point in itertools.product(*final.values())]


def count_sweep_jobs(config: DictConfig) -> int | None:
    """The number of jobs the basic sweeper makes of ``hydra.sweeper.params`` and the command
    line's sweep overrides (:func:`sweep_points`; ``None`` when it cannot tell, e.g. another
    sweeper or interval sweeps)."""
    try:
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        arguments = [f"{key}={value}" for key, value in params.items()]
        arguments += list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        return len(sweep_points(arguments))
    except Exception:  # any config this cannot read: no total, the progress line still works
        return None


def read_jobs(path: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """The job records of ``jobs.jsonl`` that ended after ``since`` (a sweep folder reused by a
    later multirun keeps the earlier records; the plan's start time tells them apart)."""
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


def progress_line(done: int, failed: int, total: int | None, elapsed: float, width: int = 24) -> str:
    """One line: a bar, points done (and failed) of the total, elapsed time and an estimate of
    the time left (elapsed / done * remaining; the presets launch the heaviest points first, so
    early estimates are pessimistic)."""
    finished = done + failed
    failed_text = f", {failed} failed" if failed else ""
    if not total:
        return f"sweep: {finished} points finished{failed_text} | {format_duration(elapsed)} elapsed"
    fraction = min(1.0, finished / total)
    filled = int(round(fraction * width))
    bar = "#" * filled + "-" * (width - filled)
    left = f", ~{format_duration(elapsed / finished * (total - finished))} left" if 0 < finished < total else ""
    return (
        f"sweep [{bar}] {finished}/{total} points ({100 * fraction:.0f}%){failed_text} | "
        f"{format_duration(elapsed)} elapsed{left}"
    )


class SweepProgress(Callback):
    """After every job of a multirun, print a progress line for the whole sweep to stderr:

        sweep [######------------------] 8/30 points (27%) | 4m10s elapsed, ~11m28s left

    Args:
        stream: ``stderr`` (default) or ``stdout``.
    """

    def __init__(self, stream: str = "stderr") -> None:
        self.stream = stream

    @staticmethod
    def _state_dir(config: DictConfig) -> Path:
        return Path(str(OmegaConf.select(config, "hydra.sweep.dir"))) / STATE_DIR

    def _print(self, line: str) -> None:
        print(line, file=sys.stdout if self.stream == "stdout" else sys.stderr, flush=True)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        state = self._state_dir(config)
        state.mkdir(parents=True, exist_ok=True)
        total = count_sweep_jobs(config)
        (state / PLAN_FILE).write_text(json.dumps({"total": total, "start": time.time()}))
        (state / JOBS_FILE).touch()
        if total:
            self._print(f"sweep: {total} points -> {state.parent}")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_start = time.time()
        self._job_cpu = _process_cpu_seconds()
        if threads_per_job(config) is not None:
            # parallel workers share one terminal: per-client progress as log lines, not bars
            os.environ.setdefault(PROGRESS_ENV, "log")

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if not str(OmegaConf.select(config, "hydra.mode", default="")).endswith("MULTIRUN"):
            return
        state = self._state_dir(config)
        if not (state / PLAN_FILE).exists():  # the multirun did not start with this callback
            return
        status = getattr(getattr(job_return, "status", None), "name", "UNKNOWN")
        record = {
            "num": OmegaConf.select(config, "hydra.job.num", default=None),
            "status": status,
            "seconds": time.time() - getattr(self, "_job_start", time.time()),
            "cpu_seconds": _process_cpu_seconds() - getattr(self, "_job_cpu", _process_cpu_seconds()),
            "end": time.time(),
            "output_dir": OmegaConf.select(config, "hydra.runtime.output_dir", default=None),
        }
        with open(state / JOBS_FILE, "a", encoding="utf-8") as handle:  # one short append per job
            handle.write(json.dumps(record) + "\n")
        plan = json.loads((state / PLAN_FILE).read_text())
        lines = read_jobs(state / JOBS_FILE, since=plan["start"])
        failed = sum(1 for line in lines if line["status"] == "FAILED")
        self._print(progress_line(len(lines) - failed, failed, plan.get("total"), time.time() - plan["start"]))


class SweepEnd(Callback):
    """At the end of a multirun, print the sweep folder and the command that reports on it."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.sweep.dir)).resolve()
        print(f"sweep finished: {folder}\nreport: fedsynth-report {folder}", flush=True)
