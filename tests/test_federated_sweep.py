"""One federation and one Flower run for a whole sweep (issue 14, item 3): the points of a multirun
on the simulation engine share one SuperLink and one Flower run (one ``flwr-simulation``, one Ray
instance, the same client actors), started on first use and stopped at the end, after a failed
point, or when a component dies, leaving no process behind (real Flower runs: 20-60 s each)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsynth.federated import InProcessEngine, simulation
from fedsynth.federated.outcome import RunFailed
from federated_support import faulty_experiment, tiny_experiment
from test_process_cleanup import LONG_RUN, descendants, last_line, survivors

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parent
TINY_SWEEP = ["method.k_max=3", "method.synthetic_size=20", "method.synthetic_labels=proportional"]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    return simulation.processes.is_running(pid)


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (``None`` once it has ended)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_kept_federation_serves_points_in_one_run_until_stopped_and_a_failed_point_retires_it(monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
    engine = simulation.SimulationEngine(keep_federation=True)
    try:
        first = engine.run(tiny_experiment())
        federation = simulation.current_federation()
        assert federation is not None and federation.alive() and (federation.runs, federation.points) == (1, 1)
        run_id = federation.serving.run_id
        second = engine.run(tiny_experiment("seed=1"))
        assert simulation.current_federation() is federation and (federation.runs, federation.points) == (1, 2)
        assert federation.serving.run_id == run_id  # the same Flower run served both points
        alone = InProcessEngine().run(tiny_experiment("seed=1"))
        assert second.theta == pytest.approx(alone.theta, rel=1e-9, abs=1e-12) and second.metrics == pytest.approx(alone.metrics)
        assert [c["compute_s"].keys() for c in second.clients] == [c["compute_s"].keys() for c in alone.clients]
        four = engine.run(tiny_experiment("dataset.num_clients=4"))  # other SuperNodes: another run
        assert (federation.runs, federation.points) == (2, 3) and len(four.clients) == 4
        with pytest.raises(RunFailed, match="only 0 of 4 clients gave a valid reply"):  # a point from the inbox
            engine.run(faulty_experiment({str(client): "crash" for client in range(4)}))
        assert simulation.current_federation() is None  # a failed point retires the federation, with its processes
        assert not any(alive(process.pid) for process in federation.components)
        assert not any(alive(pid) for pid in simulation.processes.processes_in_sessions(federation.sessions))
        third = engine.run(tiny_experiment())  # the next point starts a fresh one
        assert simulation.current_federation() is not federation
        assert third.metrics == pytest.approx(first.metrics, rel=1e-9, abs=1e-12)
        kept = simulation.current_federation()
    finally:
        simulation.stop_kept_federation()
    assert not any(alive(process.pid) for process in kept.components)
    assert not simulation.processes.processes_in_sessions(kept.sessions)


def start_sweep(tmp_path: Path, *overrides: str) -> subprocess.Popen:
    """``fedsynth -m`` on the simulation engine, its stderr in ``tmp_path/stderr.txt``."""
    command = [sys.executable, "-m", "fedsynth.cli", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path)


def test_a_sweep_keeps_one_superlink_and_one_flower_run_for_all_its_points_and_leaves_nothing(tmp_path: Path) -> None:
    sweep = start_sweep(tmp_path, *TINY_SWEEP, "seed=0,1,2")
    seen: dict[int, str] = {}
    forks: dict[int, str] = {}  # forked, not yet exec'd: a child shows its parent's command line
    niceness: dict[int, int] = {}
    while sweep.poll() is None:
        tree = descendants(sweep.pid)
        for pid, line in tree.items():
            if "ClientAppActor" in line:
                with contextlib.suppress(OSError):
                    niceness.setdefault(pid, os.getpriority(os.PRIO_PROCESS, pid))
            if line:  # an ending process shows an empty command line: keep what it was
                seen[pid] = line
            else:
                seen.setdefault(pid, line)
            if line and tree.get(parent_of(pid)) == line:
                forks.setdefault(pid, line)
        time.sleep(0.1)
    # a child that never showed another command line than its parent's is not a process of its own
    counted = {pid: line for pid, line in seen.items() if forks.get(pid) != line}
    assert sweep.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    assert sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/results.json")) == ["0", "1", "2"]
    for point in ("0", "1", "2"):  # each point's log has its clients' progress: the run's log, cut per point
        log = (tmp_path / "sweep" / point / "cli.log").read_text()
        assert all(log.count(f"client {client}: outer iteration 3/3, P = ") == 1 for client in range(3)), log
    superlinks = [pid for pid, line in counted.items() if "flower-superlink" in line]
    simulations = [pid for pid, line in counted.items() if "bin/flwr-simulation" in line]
    actors = [pid for pid, line in counted.items() if "ClientAppActor" in line]
    assert len(superlinks) == 1 and len(simulations) == 1, (superlinks, simulations)  # one Flower run
    assert 0 < len(actors) <= 2, actors  # one pool of client actors (2 cores) for the three points
    # Ray's workers at the command's own priority, not 15 steps below it (Ray's default)
    assert set(niceness.values()) == {os.getpriority(os.PRIO_PROCESS, 0)}, niceness
    assert survivors(seen, wait_s=10.0) == {}


def test_a_superlink_killed_mid_sweep_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    sweep = start_sweep(tmp_path, *LONG_RUN, "seed=0,1")
    deadline = time.monotonic() + 240
    while not any("ClientAppActor" in line for line in descendants(sweep.pid).values()):
        assert sweep.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()[-3000:]
        time.sleep(0.2)
    time.sleep(2.5)  # one status poll later: the engine has seen every component
    tree = descendants(sweep.pid)
    victim = next(pid for pid, line in tree.items() if "flower-superlink" in line)
    os.kill(victim, signal.SIGKILL)
    assert sweep.wait(timeout=60) == 1
    assert survivors(tree, wait_s=10.0) == {}
    line = last_line(tmp_path)
    assert line.startswith("fedsynth: error: ") and f"flower-superlink (pid {victim})" in line, line
    assert not list((tmp_path / "sweep").glob("*/results.json"))  # the failed point wrote nothing
