"""Starting, driving and stopping Flower's processes (SuperLink, SuperNodes, ``flwr`` CLI).

Shared by the simulation engine and ``scripts/deploy_local.py``. Every process gets
:func:`flower_env`: a private ``FLWR_HOME``, telemetry, update checks and runtime dependency
installation off, and Ray kept on 127.0.0.1. Processes start in their own session so that
:func:`stop_process` can end each one with everything it spawned (Ray included), by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import httpx
import tomli

LOCALHOST = "127.0.0.1"
BIN_DIR = Path(sys.executable).parent


def flower_env(workdir: Path, ray_tmpdir: Path | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Flower and Ray processes: Flower's state in ``workdir/flwr-home``,
    Ray's in ``ray_tmpdir`` (default ``workdir/ray``; Ray's socket paths under it must stay below
    108 bytes, so keep it short)."""
    env = dict(os.environ if base is None else base)
    ray_tmpdir = ray_tmpdir or workdir / "ray"
    for folder in (workdir / "flwr-home", ray_tmpdir):
        folder.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "FLWR_HOME": str(workdir / "flwr-home"),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "RAY_TMPDIR": str(ray_tmpdir),
            "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            # Every process here (ServerApp, each client) stands for one CPU: no torch thread pools.
            "OMP_NUM_THREADS": "1",
            # The SuperLink and SuperNodes start flwr-serverapp / flwr-clientapp / flwr-simulation
            # by name: find this environment's executables first.
            "PATH": f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def flower_command(name: str) -> str:
    """Path of a Flower executable (``flwr``, ``flower-superlink``, ...) of this interpreter."""
    path = BIN_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: install flwr[simulation] in this environment")
    return str(path)


def start_process(command: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``command`` in a new session with stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a process started by :func:`start_process` and its session (SIGTERM, then SIGKILL)."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=timeout)
    # Children that outlived their parent (Ray workers) are still in the session.
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group led by ``process`` (it may be gone already)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def wait_until_ready(
    url: str, process: subprocess.Popen, log_path: Path, timeout: float = 60.0, verify: str | bool = True
) -> None:
    """Poll ``url`` (a SuperLink's ``/health``) until it answers; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode}:\n{tail(log_path)}")
        try:
            if httpx.get(url, timeout=1.0, verify=verify).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s:\n{tail(log_path)}")


def write_connection(
    env: Mapping[str, str], name: str, address: str, root_certificates: Path | None = None
) -> None:
    """Write ``$FLWR_HOME/config.toml`` with one SuperLink connection, ``name``, as the default."""
    lines = ["[superlink]", f'default = "{name}"', "", f"[superlink.{name}]", f'address = "{address}"']
    if root_certificates is None:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{root_certificates}"')
    Path(env["FLWR_HOME"], "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def stage_app(app_dir: Path, dest: Path) -> Path:
    """Copy the files of the app bundle (``pyproject.toml`` and what ``fab-include`` names) to
    ``dest`` and return it. ``flwr run`` on ``dest`` builds the same FAB as on ``app_dir``, without
    walking ``app_dir``'s other content (a virtual environment there costs seconds per run)."""
    pyproject = app_dir / "pyproject.toml"
    patterns = tomli.loads(pyproject.read_text(encoding="utf-8"))["tool"]["flwr"]["app"].get("fab-include")
    if not patterns:
        raise ValueError(f"{pyproject}: [tool.flwr.app] needs fab-include to stage the app")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pyproject, dest / "pyproject.toml")
    for pattern in patterns:
        for source in app_dir.glob(pattern):
            if source.is_file() and "__pycache__" not in source.parts:
                target = dest / source.relative_to(app_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    return dest


def flwr_run(
    app_dir: Path,
    connection: str,
    run_config_file: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float,
    federation_config: str | None = None,
) -> int:
    """``flwr run APP CONNECTION --run-config FILE --stream``: submit the run, follow its logs
    into ``log_path`` until it ends, and return its run id. Fails if the run could not start;
    whether the run succeeded is for :func:`run_status` to say (``--stream`` exits 0 either way).
    """
    command = [flower_command("flwr"), "run", str(app_dir), connection, "--run-config", str(run_config_file), "--stream"]
    if federation_config:
        command += ["--federation-config", federation_config]
    with open(log_path, "ab") as log_file:
        completed = subprocess.run(
            command, env=dict(env), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout
        )
    text = log_path.read_text(encoding="utf-8", errors="replace")
    marker = "Successfully started run "
    if completed.returncode != 0 or marker not in text:
        raise RuntimeError(f"flwr run failed (exit code {completed.returncode}):\n{tail(log_path)}")
    return int(text.rsplit(marker, 1)[1].split()[0])


def run_status(connection: str, run_id: int, env: Mapping[str, str]) -> str:
    """The status of a run, e.g. ``finished:completed`` or ``finished:failed``."""
    completed = subprocess.run(
        [flower_command("flwr"), "ls", connection, "--run-id", str(run_id), "--format", "json"],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"flwr ls failed: {completed.stdout}{completed.stderr}")
    return parse_run_status(completed.stdout, run_id)


def parse_run_status(text: str, run_id: int) -> str:
    """The status of ``run_id`` in the JSON output of ``flwr ls --format json``."""
    for run in json.loads(text).get("runs", []):
        if int(run.get("run-id")) == run_id:
            return str(run.get("status"))
    raise RuntimeError(f"run {run_id} is not listed by flwr ls: {text}")


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file ("" if there is none)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
