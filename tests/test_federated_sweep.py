"""One Flower simulation for a whole sweep (issue 14, item 3; issue 23): the ``fedsynth`` launcher
gets a sweep's points as a list up front and hands them to one ``run_simulation`` (one Ray, the
same client actors); a failed point ends it, a killed component ends the sweep with one line, and
no process is left behind (real Flower runs: 20-60 s each)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsynth.api import InProcessEngine, RunFailed, SimulationEngine
from fedsynth.federated.simulation import _SHARED, shared_simulation
from federated_support import faulty_experiment, tiny_experiment
from test_process_cleanup import LONG_RUN, descendants, is_running, last_line, survivors

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parent
TINY_SWEEP = ["method.k_max=3", "method.synthetic_size=20", "method.synthetic_labels=proportional"]


def test_one_simulation_serves_the_points_in_order_and_a_failed_point_ends_it(monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
    engine = SimulationEngine()
    points = [tiny_experiment(), tiny_experiment("seed=1")]
    with shared_simulation(points, engine):
        child = _SHARED.get().child
        first, second = engine.run(points[0]), engine.run(points[1])
        assert _SHARED.get().pending == [] and child.process.is_alive()  # one process for both points
    assert not is_running(child.process.pid)
    alone = InProcessEngine().run(tiny_experiment("seed=1"))
    assert second.theta == pytest.approx(alone.theta, rel=1e-9, abs=1e-12) and second.metrics == pytest.approx(alone.metrics)
    assert first.metrics != second.metrics
    failing = faulty_experiment({str(client): "crash" for client in range(4)})
    with shared_simulation([failing, tiny_experiment("dataset.num_clients=4")], engine):
        child = _SHARED.get().child
        with pytest.raises(RunFailed, match="only 0 of 4 clients gave a valid reply"):
            from fedsynth import api

            api.run(failing, engine)
    assert not is_running(child.process.pid)


def start_sweep(tmp_path: Path, *overrides: str) -> subprocess.Popen:
    """``fedsynth -m`` on the simulation engine, its stderr in ``tmp_path/stderr.txt``."""
    command = [sys.executable, "-m", "fedsynth.cli", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path)


def test_a_sweep_starts_flower_and_ray_once_for_all_its_points_and_leaves_nothing(tmp_path: Path) -> None:
    sweep = start_sweep(tmp_path, *TINY_SWEEP, "seed=0,1,2")
    seen: dict[int, str] = {}
    niceness: dict[int, int] = {}
    while sweep.poll() is None:
        for pid, line in descendants(sweep.pid).items():
            if "ClientAppActor" in line:
                with contextlib.suppress(OSError):
                    niceness.setdefault(pid, os.getpriority(os.PRIO_PROCESS, pid))
            if line:  # an ending process shows an empty command line: keep what it was
                seen[pid] = line
        time.sleep(0.1)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert sweep.returncode == 0, stderr[-3000:]
    assert sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/results.json")) == ["0", "1", "2"]
    for point in ("0", "1", "2"):  # each point's log has the server's lines of that point
        log = (tmp_path / "sweep" / point / "cli.log").read_text()
        assert log.count("3 clients (one per SuperNode)") == 1 and f"seed={point}" in log, log
    assert all(stderr.count(f"client {client}: outer iteration 3/3, P = ") == 3 for client in range(3)), stderr[-3000:]
    raylets = [pid for pid, line in seen.items() if "raylet/raylet" in line]
    actors = [pid for pid, line in seen.items() if "ClientAppActor" in line]
    assert len(raylets) == 1, raylets  # one Ray for the sweep
    assert 0 < len(actors) <= 2, actors  # one pool of client actors (2 cores) for the three points
    # Ray's workers at the command's own priority, not 15 steps below it (Ray's default)
    assert set(niceness.values()) == {os.getpriority(os.PRIO_PROCESS, 0)}, niceness
    assert survivors(seen, wait_s=10.0) == {}


def test_a_simulation_killed_mid_sweep_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    sweep = start_sweep(tmp_path, *LONG_RUN, "seed=0,1")
    deadline = time.monotonic() + 240
    while not any("ClientAppActor" in line for line in descendants(sweep.pid).values()):
        assert sweep.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()[-3000:]
        time.sleep(0.2)
    time.sleep(2.0)
    tree = descendants(sweep.pid)
    victim = next(pid for pid in tree if os.getpgid(pid) == pid)  # the run's own process leads its group
    os.kill(victim, signal.SIGKILL)
    assert sweep.wait(timeout=60) == 1
    assert survivors(tree, wait_s=15.0) == {}
    line = last_line(tmp_path)
    assert line.startswith("fedsynth: error: ") and f"the Flower simulation (pid {victim})" in line, line
    assert not list((tmp_path / "sweep").glob("*/results.json"))  # the failed point wrote nothing
