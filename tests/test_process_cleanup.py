"""Nothing left behind (issue 12, item 2; issue 24): a stop signal to the ``fedsynth`` command,
SIGKILL included, or the death of a component of Flower's simulation, ends the run with one clear
line and leaves none of the processes the run started alive, checked by PID (each case is a real
Flower simulation: ≈ 20-40 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import psutil

pytestmark = pytest.mark.slow

LONG_RUN = [
    "dataset.generator.num_rows=600",
    "method.synthetic_size=30",
    "method.k_max=100000",  # still synthesizing when the test strikes
    "method.tolerance=0",  # (no stopping rule)
]


def descendants(root: int) -> dict[int, str]:
    """``{pid: command line}`` of every live descendant of ``root``."""
    found = {}
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    for child in children:
        try:
            found[child.pid] = " ".join(child.cmdline())
        except psutil.Error:
            continue
    return found


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not ended, not a zombie)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_and_wait(tmp_path: Path, overrides: list[str], ready) -> tuple[subprocess.Popen, dict[int, str]]:
    """Start ``fedsynth`` with ``overrides`` (and :data:`LONG_RUN`); return it and its process
    tree once ``ready(tree)`` holds and two more seconds have passed (the clients compute)."""
    command = [sys.executable, "-m", "fedsynth.cli", f"hydra.run.dir={tmp_path}", *overrides, *LONG_RUN]
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while True:
        tree = descendants(run.pid)
        if ready(tree):
            time.sleep(2.0)
            return run, descendants(run.pid)
        if run.poll() is not None or time.monotonic() > deadline:
            for pid in [*tree, run.pid]:  # leave nothing behind either way
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            pytest.fail(f"the run did not get going: {(tmp_path / 'stderr.txt').read_text()[-2000:]}")
        time.sleep(0.2)


def start_run(tmp_path: Path) -> tuple[subprocess.Popen, dict[int, str]]:
    """``fedsynth`` on the simulation engine, once a Ray client actor exists."""
    return start_and_wait(tmp_path, [], lambda tree: any("ClientAppActor" in line for line in tree.values()))


def survivors(tree: dict[int, str], wait_s: float) -> dict[int, str]:
    """Those of ``tree`` still alive (not zombies) after at most ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = {pid: line for pid, line in tree.items() if is_running(pid)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def last_line(tmp_path: Path) -> str:
    return (tmp_path / "stderr.txt").read_text(errors="replace").strip().splitlines()[-1]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_ends_every_process_of_the_run(tmp_path: Path, signum: int) -> None:
    run, tree = start_run(tmp_path)
    assert any("raylet" in line for line in tree.values()) and any("gcs_server" in line for line in tree.values())
    sent = time.monotonic()
    run.send_signal(signum)
    assert run.wait(timeout=30) == 128 + signum
    left = survivors(tree, wait_s=max(0.0, 10.0 - (time.monotonic() - sent)))
    assert left == {}, left
    assert last_line(tmp_path) == (
        f"fedsynth: error: stopped by {signal.Signals(signum).name}; every process of the run was stopped"
    )


def test_a_killed_command_leaves_no_process_of_its_simulation(tmp_path: Path) -> None:
    """SIGKILL, which runs no handler: the run's process group (Ray's services and actors) is
    killed by the run's own process when the command's end closes its pipe."""
    run, tree = start_run(tmp_path)
    run.kill()
    run.wait(timeout=30)
    assert survivors(tree, wait_s=15.0) == {}


def simulation_process(tree: dict[int, str]) -> int:
    """The run's own process: the one of the tree that leads a process group of its own."""
    return next(pid for pid in tree if os.getpgid(pid) == pid)


@pytest.mark.parametrize(
    ("component", "named"),
    [
        ("simulation", "the Flower simulation"),
        ("raylet", "exited"),  # its actors die with it: the first to answer is named
        ("ray::ClientAppActor", "Ray client actor"),
    ],
)
def test_a_dead_component_ends_the_run_with_one_line_naming_it(tmp_path: Path, component: str, named: str) -> None:
    run, tree = start_run(tmp_path)
    if component == "simulation":
        victim = simulation_process(tree)
    else:
        victim = next(pid for pid, line in tree.items() if component in line.split(" ", 1)[0])
    os.kill(victim, signal.SIGKILL)
    assert run.wait(timeout=90) == 1
    assert survivors(tree, wait_s=15.0) == {}
    line = last_line(tmp_path)
    assert line.startswith("fedsynth: error: ") and named in line, line
    if component != "raylet":
        assert f"(pid {victim})" in line, line


def start_in_process_run(tmp_path: Path) -> tuple[subprocess.Popen, dict[int, str]]:
    """``fedsynth engine=inprocess``, once its fork server has forked (at least) two clients."""
    return start_and_wait(
        tmp_path, ["engine=inprocess"], lambda tree: sum("multiprocessing.forkserver" in line for line in tree.values()) >= 3
    )


def test_a_stop_signal_ends_the_in_process_clients(tmp_path: Path) -> None:
    """The in-process engine's fork server and the clients it forked end with the command."""
    run, tree = start_in_process_run(tmp_path)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 128 + signal.SIGTERM
    assert survivors(tree, wait_s=10.0) == {}
    assert last_line(tmp_path).endswith("every process of the run was stopped")


def test_a_killed_command_takes_its_in_process_clients_with_it(tmp_path: Path) -> None:
    """Even a SIGKILL, which runs no handler: each client's watcher thread sees the command's
    pipe close (busy computing, the client would not notice its work queue closing), and the
    fork server ends once no process of the command holds its pipe."""
    run, tree = start_in_process_run(tmp_path)
    run.kill()
    run.wait(timeout=30)
    assert survivors(tree, wait_s=10.0) == {}
