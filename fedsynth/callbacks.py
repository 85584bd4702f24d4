"""The ``fedsynth`` command's Hydra callbacks (``conf/config.yaml``), for single runs and sweeps:

* :class:`OutputFolder`: a run or sweep claims its output folder before Hydra writes into it: a
  folder another run holds, or that holds another run's output, or that cannot be written, is
  one line and exit 2, with nothing written;
* :class:`SweepCheck`: every point of a sweep is composed and checked before the first one runs;
* :class:`TorchThreads`: torch's threads per job of a parallel launcher;
* :class:`SweepProgress`: a sweep-level progress line after every point (state in
  :mod:`fedsynth.sweep_state`, so that every launcher's workers can add to it);
* :class:`SweepEnd`: the sweep's folder and the command that reports on it.

A callback's error ends the command with :func:`fedsynth.cli.fail` (Hydra turns a callback's
exceptions into warnings; an exit passes through).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import joblib
import psutil
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fedsynth import progress
from fedsynth.sweep_state import JOBS_FILE, PLAN_FILE, STATE_DIR, format_duration, read_jobs

MIN_FREE_BYTES = 16 * 2**20
"""The free space an output folder needs before a run starts (its logs, configs and results)."""
_claimed: list[int] = []
"""Descriptors of the folders this process holds (released when it ends, however it ends)."""


# ----------------------------------------------------------------------------- output folders


def claim_folder(folder: Path, key: str, fresh: bool) -> None:
    """Create ``folder`` and hold an exclusive lock on it for this process's lifetime; exit with
    one line when another process holds it, when ``fresh`` and it holds another run's output
    (``.hydra/``), when it cannot be written, or when its file system is nearly full."""
    from fedsynth.cli import fail

    how = f"set {key} to another folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        fail(f"cannot create the output folder {folder}: {error.strerror}; {how}", 2)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fail(f"the output folder {folder} belongs to another run in progress; {how}", 2)
    if fresh and (folder / ".hydra").exists():
        fail(f"the output folder {folder} holds another run's output (.hydra/); {how} (nothing is overwritten)", 2)
    if not os.access(folder, os.W_OK) or _read_only(folder):
        fail(f"the output folder {folder} cannot be written (read-only); {how}", 2)
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        fail(f"the output folder {folder} has only {free // 1024} KiB free on its file system; free space or {how}", 2)
    _claimed.append(descriptor)


def _read_only(folder: Path) -> bool:
    """Whether ``folder``'s file system is mounted read-only (root may write anything else)."""
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


class OutputFolder(Callback):
    """Claims the run's folder (``hydra.run.dir``, which must not hold another run) or the sweep's
    (``hydra.sweep.dir``, which a later sweep may reuse) before Hydra writes into it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        claim_folder(Path(str(config.hydra.run.dir)), "hydra.run.dir", fresh=True)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        claim_folder(Path(str(config.hydra.sweep.dir)), "hydra.sweep.dir", fresh=False)


# ----------------------------------------------------------------------------- sweep points


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


def sweep_arguments(config: DictConfig) -> list[str]:
    """The override strings of a multirun: the sweeper's ``params``, then the command line's."""
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    return [f"{key}={value}" for key, value in params.items()] + list(
        OmegaConf.select(config, "hydra.overrides.task", default=[]) or []
    )


def count_sweep_jobs(config: DictConfig) -> int | None:
    """The number of jobs the basic sweeper makes of a multirun (``None`` when it cannot tell,
    e.g. another sweeper or interval sweeps)."""
    try:
        return len(sweep_points(sweep_arguments(config)))
    except Exception:  # any config this cannot read: no total, the progress line still works
        return None


class SweepCheck(Callback):
    """Composes and checks (:func:`fedsynth.api.check`) every point of a sweep of Hydra's basic
    sweeper before the first runs: a bad point is one line naming it, exit 2, nothing run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose

        from fedsynth import api
        from fedsynth.cli import describe_error, fail

        if OmegaConf.select(config, "hydra.sweeper._target_", default="") != "hydra._internal.core_plugins.basic_sweeper.BasicSweeper":
            return
        points = sweep_points(sweep_arguments(config))
        for number, point in enumerate(points):
            try:
                composed = compose(config_name=str(config.hydra.job.config_name), overrides=point)
                api.check(composed)
                api.engine(composed, start=False)
            except Exception as error:  # noqa: BLE001 - every kind becomes one line
                message = describe_error(error)
                if message is None:
                    raise
                fail(f"sweep point {number} of {len(points)} ({' '.join(point)}): {message}; nothing was run", 2)


# ----------------------------------------------------------------------------- torch threads


def threads_per_job(config: DictConfig, cpu_count: int | None = None) -> int | None:
    """Torch threads for one job of ``config``'s launcher: cores / parallel jobs (at least 1), or
    ``None`` when jobs run one at a time (the basic launcher: leave torch's default)."""
    launcher = OmegaConf.select(config, "hydra.launcher", default=None)
    n_jobs = None if launcher is None else OmegaConf.select(launcher, "n_jobs", default=None)
    if n_jobs is None:
        return None
    cores = cpu_count or max(1, int(joblib.cpu_count()))  # CPU affinity and cgroup quota, as joblib counts
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


def _cpu_seconds() -> float:
    """CPU time (user + system, all threads) of this process, its waited-for children and its
    live descendants (the in-process engine's client processes live across sweep points)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


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
        self._job_cpu = _cpu_seconds()
        if threads_per_job(config) is not None:
            progress.set_mode("log")  # parallel workers share one terminal: log lines, not bars

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
            "cpu_seconds": _cpu_seconds() - getattr(self, "_job_cpu", _cpu_seconds()),
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
        venv_bin = Path(sys.executable).parent
        print(f"sweep finished: {folder}\nreport: {venv_bin / 'fedsynth-report'} {folder}", flush=True)
