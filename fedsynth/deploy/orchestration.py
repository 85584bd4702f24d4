"""Starting, watching and stopping Flower's processes for a deployment on this machine, through
Flower's public command line (``flwr run`` / ``flwr ls --format json``); the ServerApp writes the
outcome to the run config's ``results-path`` (:mod:`fedsynth.app`). Every process is started by the
deployment's own process (:func:`fedsynth.federated.lifeline.call_in_child`) and ends with it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

import httpx
import tomli

from fedsynth.outcome import RunFailed, failure_path

LOCALHOST = "127.0.0.1"
BIN_DIR = Path(sys.executable).parent
FLOWER_SETTINGS = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}
"""Flower's settings for every process of a deployment: no telemetry, no update check, no
installation of the app's dependencies (the SuperLink would ``uv sync`` a CUDA torch per run)."""
STATUS_POLL_S = 10.0
"""How often the run's status is asked while its outcome is awaited (each ``flwr ls`` costs a
second of CPU the clients would rather have)."""
APP_LINE = re.compile(r"fedsynth: |client \d+: ")
"""Log lines of fedsynth's apps (the clients' progress, the server's summary) shown while a run
goes on; Flower's own lines stay in the log files."""

log = logging.getLogger("fedsynth")


def flower_env(workdir: Path) -> dict[str, str]:
    """The environment of the deployment's Flower processes: :data:`FLOWER_SETTINGS`, Flower's
    state in ``workdir/flwr-home``, this environment's executables first on ``PATH`` (the
    SuperLink and SuperNodes start ``flwr-serverapp`` / ``flwr-clientapp`` by name)."""
    (workdir / "flwr-home").mkdir(parents=True, exist_ok=True)
    path = os.environ.get("PATH", "")
    return {**os.environ, **FLOWER_SETTINGS, "FLWR_HOME": str(workdir / "flwr-home"), "PATH": f"{BIN_DIR}{os.pathsep}{path}"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def flower_command(name: str) -> str:
    """Path of a Flower executable (``flwr``, ``flower-superlink``, ...) of this environment."""
    return str(BIN_DIR / name)


def start(command: Sequence[str], env: Mapping[str, str], log_path: Path, show_as: str | None = None) -> subprocess.Popen:
    """Start ``command`` with stdout and stderr appended to ``log_path``; with ``show_as``, a thread
    also logs its app lines (:data:`APP_LINE`: the clients' progress) as they come, after that name."""
    with open(log_path, "ab") as log_file:
        output = log_file if show_as is None else subprocess.PIPE
        process = subprocess.Popen(list(command), env=dict(env), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
    if show_as is not None:
        threading.Thread(target=_tee, args=(process.stdout, log_path, show_as), daemon=True).start()
    return process


def _tee(stream: IO[bytes], log_path: Path, name: str) -> None:
    """Copy a process's output to its log file and log its app lines (Flower's colours and level
    name removed); Flower's own lines stay in the file."""
    with open(log_path, "ab") as log_file:
        for line in stream:
            log_file.write(line)
            log_file.flush()
            text = line.decode("utf-8", errors="replace")
            if APP_LINE.search(text):
                plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
                log.info("%s: %s", name, re.sub(r"^(INFO|WARNING|ERROR)\s*:\s*", "", plain).strip())


def component(process: subprocess.Popen) -> str:
    """A started process as a line names it: ``flower-superlink (pid 12)``."""
    return f"{Path(str(process.args[0])).name} (pid {process.pid})"


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, log_path: Path, timeout: float = 60.0) -> None:
    """Poll ``ready()`` until it holds; ``RunFailed`` naming ``process`` and its log if it exits
    first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RunFailed(f"{component(process)} exited with code {process.returncode} before it was ready; see {log_path}")
        if time.monotonic() > deadline:
            raise RunFailed(f"{component(process)} was not ready within {timeout:g} s; see {log_path}")
        time.sleep(0.1)


def answers(url: str, verify: str | bool = True) -> bool:
    """Whether ``url`` (a SuperLink's ``/health``) answers with success now."""
    try:
        return httpx.get(url, timeout=1.0, verify=verify).is_success
    except httpx.HTTPError:
        return False


def write_connection(env: Mapping[str, str], name: str, address: str, root_certificates: Path | None = None) -> None:
    """Write ``$FLWR_HOME/config.toml`` with one SuperLink connection, ``name``, as the default."""
    lines = ["[superlink]", f'default = "{name}"', "", f"[superlink.{name}]", f'address = "{address}"']
    lines.append("insecure = true" if root_certificates is None else f'root-certificates = "{root_certificates}"')
    Path(env["FLWR_HOME"], "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def stage_app(app_dir: Path, dest: Path) -> Path:
    """Copy the app bundle's files (``pyproject.toml`` and what ``fab-include`` names) to
    ``dest``: ``flwr run`` on it builds the same FAB without walking the checkout's other files
    (a virtual environment costs seconds)."""
    pyproject = app_dir / "pyproject.toml"
    patterns = tomli.loads(pyproject.read_text(encoding="utf-8"))["tool"]["flwr"]["app"]["fab-include"]
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pyproject, dest / "pyproject.toml")
    for pattern in patterns:
        for source in app_dir.glob(pattern):
            if source.is_file() and "__pycache__" not in source.parts:
                (dest / source.relative_to(app_dir)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / source.relative_to(app_dir))
    return dest


def flwr(arguments: Sequence[str], env: Mapping[str, str], timeout: float = 120.0) -> dict:
    """``flwr ARGUMENTS --format json``: its JSON answer; ``RunFailed`` with its message if it fails."""
    done = subprocess.run(
        [flower_command("flwr"), *arguments, "--format", "json"],
        env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )
    start = done.stdout.find("{")
    answer = json.loads(done.stdout[start:]) if start >= 0 else {}
    if done.returncode != 0 or not answer.get("success", True):
        raise RunFailed(f"flwr {arguments[0]} failed: {' '.join((done.stdout + done.stderr).split())[-300:]}")
    return answer


def submit(app: Path, connection: str, run_config_file: Path, env: Mapping[str, str]) -> int:
    """``flwr run APP CONNECTION --run-config FILE``: the id of the run it started."""
    return int(flwr(["run", str(app), connection, "--run-config", str(run_config_file)], env)["run-id"])


def run_status(connection: str | None, run_id: int, env: Mapping[str, str]) -> str:
    """The run's status as ``flwr ls`` gives it (``running``, ``finished:completed``, ...);
    ``connection`` ``None``: the default one of ``$FLWR_HOME/config.toml``."""
    runs = flwr(["ls", *([connection] if connection else []), "--run-id", str(run_id)], env)["runs"]
    return str(runs[0]["status"]) if runs else "unknown"


def wait_for_outcome(
    results_path: Path, run_id: int, status: Callable[[], str], watch: Sequence[subprocess.Popen], timeout: float
) -> None:
    """Wait until the ServerApp has written the outcome (or its one-line failure); raise
    ``RunFailed`` naming a watched process (the SuperLink, a SuperNode) that exits, the
    failure's reason, or a run Flower ended without either."""
    deadline, next_status = time.monotonic() + timeout, time.monotonic() + STATUS_POLL_S
    while not results_path.is_file():
        if failure_path(results_path).is_file():
            raise RunFailed(failure_path(results_path).read_text(encoding="utf-8").strip())
        for process in watch:
            if process.poll() is not None:
                raise RunFailed(f"{component(process)} exited with code {process.returncode} during run {run_id}")
        if time.monotonic() > next_status:
            if (state := status()).startswith("finished") and not results_path.is_file():
                time.sleep(1.0)  # the ServerApp's file may be on its way
                if not results_path.is_file() and not failure_path(results_path).is_file():
                    raise RunFailed(f"run {run_id} ended ({state}) without an outcome; see the logs in {results_path.parent}")
            next_status = time.monotonic() + STATUS_POLL_S
        if time.monotonic() > deadline:
            raise RunFailed(f"run {run_id} did not finish within {timeout:g} s")
        time.sleep(0.2)
