"""Starting, driving and stopping Flower's processes (SuperLink, SuperNodes, ``flwr`` CLI).

Shared by the simulation engine and ``fedsynth-deploy`` (:mod:`fedsynth.deploy_local`). Every process gets
:func:`flower_env`: a private ``FLWR_HOME``, telemetry, update checks and runtime dependency
installation off, and Ray kept on 127.0.0.1. Processes start in their own session so that
:func:`stop_process` can end each one with everything it spawned (Ray included), by its PID.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import httpx
import tomli
from flwr.proto.control_pb2 import ListRunsRequest  # pylint: disable=no-name-in-module
from flwr.supercore.control import ControlHttpClient

from fedsynth.federated.environment import BIN_DIR, FLOWER_DEFAULTS, apply_defaults
from fedsynth.federated.outcome import RunFailed, RunOutcome, failure_path

LOCALHOST = "127.0.0.1"


def flower_env(workdir: Path, ray_tmpdir: Path | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Flower and Ray processes: :data:`~fedsynth.federated.environment.FLOWER_DEFAULTS`
    (overriding the caller's values), Flower's state in ``workdir/flwr-home``,
    Ray's in ``ray_tmpdir`` (default ``workdir/ray``; Ray's socket paths under it must stay below
    108 bytes, so keep it short)."""
    env = dict(os.environ if base is None else base)
    ray_tmpdir = ray_tmpdir or workdir / "ray"
    for folder in (workdir / "flwr-home", ray_tmpdir):
        folder.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            **FLOWER_DEFAULTS,
            "FLWR_HOME": str(workdir / "flwr-home"),
            "RAY_TMPDIR": str(ray_tmpdir),
            # Every process here (ServerApp, each client) stands for one CPU: no torch thread pools.
            "OMP_NUM_THREADS": "1",
        }
    )
    # The SuperLink and SuperNodes start flwr-serverapp / flwr-clientapp / flwr-simulation by
    # name: find this environment's executables first.
    return dict(apply_defaults(env))


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


class SessionTracker:
    """The sessions the process trees of some started processes have had, and the processes of
    interest seen in them (``watch_names``: command-line pattern -> the name a message gives it,
    e.g. ``{"flwr-simulation": "flwr-simulation"}``), remembered across the run.

    A process whose parent died is re-parented and no longer in the tree: a SuperExec whose
    SuperLink was killed, Ray's services whose simulation process was killed. What was seen
    while the tree was whole is what :func:`stop_process` ends, and what :meth:`lost` reports.
    """

    def __init__(self, roots: Sequence[subprocess.Popen], watch_names: Mapping[str, str] | None = None) -> None:
        self.roots = list(roots)
        self.watch_names = dict(watch_names or {})
        self.sessions: set[int] = set()
        self.seen: dict[int, str] = {}
        self.ignored: set[int] = set()

    def start_watching(self) -> None:
        """Look at the trees now and ignore the watched processes already there from now on: on a
        federation that serves runs one after another, an earlier run's processes may still be
        ending when the next run starts."""
        self.update()
        self.ignored |= set(self.seen)
        self.seen.clear()

    def update(self) -> None:
        """Look at the trees now: remember their sessions and the watched processes in them."""
        own = os.getsid(0)
        for root in self.roots:
            self.sessions |= sessions_of_tree(root.pid) - {own}
        for pid in processes_in_sessions(self.sessions):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            for pattern, name in self.watch_names.items():
                if pattern in command and pid not in self.ignored:
                    self.seen.setdefault(pid, name)

    def lost(self) -> str | None:
        """``"<name> (pid N)"`` of a watched process seen earlier that is gone now, else None."""
        alive = _process_table()
        for pid, name in self.seen.items():
            if pid not in alive:
                return f"{name} (pid {pid})"
        return None


def stop_process(process: subprocess.Popen, grace_s: float = 15.0, sessions: Iterable[int] = ()) -> None:
    """Stop a process started by :func:`start_process` and everything it started: SIGTERM to
    its process group, SIGKILL after ``grace_s`` seconds (at once with 0), then SIGKILL to every
    session of its process tree, and to ``sessions`` (a :class:`SessionTracker`'s).

    Flower's SuperExec starts its own session, and the simulation process, Ray's services and
    client actors live there: they are found through the process tree before anything is
    stopped, so that they cannot outlive the SuperLink as orphans.
    """
    sessions = (sessions_of_tree(process.pid) | set(sessions)) - {os.getsid(0)}
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        try:
            process.wait(timeout=grace_s if grace_s > 0 else None)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
    sessions.add(process.pid)
    deadline = time.monotonic() + 15.0
    while (leftovers := processes_in_sessions(sessions)) and time.monotonic() < deadline:
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def wait_for_exit(process: subprocess.Popen, timeout: float) -> None:
    """Give ``process`` up to ``timeout`` seconds to end on its own."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pgid`` (it may be gone already)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _process_table() -> dict[int, tuple[int, int]]:
    """``{pid: (parent pid, session id)}`` of every live (not zombie) process, from ``/proc``
    (empty where there is none)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent, _, session = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        if state != "Z":
            table[int(stat.parent.name)] = (int(parent), int(session))
    return table


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not ended, not a zombie)."""
    return pid in _process_table()


def process_tree(root: int) -> dict[int, str]:
    """``{pid: command line}`` of every live descendant of ``root`` (not ``root`` itself); a
    process that is ending shows an empty command line."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in _process_table().items():
        children.setdefault(parent, []).append(pid)
    found, pending = {}, list(children.get(root, []))
    while pending:
        pid = pending.pop()
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pending.extend(children.get(pid, []))
    return found


def sessions_of_tree(root: int) -> set[int]:
    """Session ids of ``root`` and of all its descendants."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    sessions, pending = set(), [root]
    while pending:
        pid = pending.pop()
        if pid in table:
            sessions.add(table[pid][1])
        pending.extend(children.get(pid, []))
    return sessions


def processes_in_sessions(sessions: set[int]) -> list[int]:
    """Pids of the processes that belong to one of ``sessions``."""
    return [pid for pid, (_, session) in _process_table().items() if session in sessions]


def wait_until_ready(
    url: str,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
    verify: str | bool = True,
) -> None:
    """Poll ``url`` (a SuperLink's ``/health``) until it answers; fail early if ``process`` (the
    SuperLink) exits, with the end of its ``log_path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = tail(log_path) if log_path is not None else ""
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode}:\n{log}")
        try:
            if httpx.get(url, timeout=1.0, verify=verify).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s:\n{tail(log_path) if log_path else ''}")


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


def start_flwr_run(
    app_dir: Path,
    connection: str,
    run_config_file: Path,
    env: Mapping[str, str],
    log_path: Path,
    federation_config: str | None = None,
    ready_url: str | None = None,
) -> subprocess.Popen:
    """Start ``flwr run APP CONNECTION --run-config FILE --stream``: it submits the run and
    follows its logs into ``log_path``. Read the run id with :func:`started_run_id` and wait for
    the run with :func:`wait_for_run` (``--stream`` exits 0 even when the run fails).

    With ``ready_url`` (the SuperLink's ``/health``), the command is started right away and
    waits, after its imports, until the SuperLink answers (see
    :mod:`fedsynth.federated.flwr_when_ready`): its start-up overlaps the SuperLink's.
    """
    arguments = ["run", str(app_dir), connection, "--run-config", str(run_config_file), "--stream"]
    if federation_config:
        arguments += ["--federation-config", federation_config]
    if ready_url is None:
        command = [flower_command("flwr"), *arguments]
    else:
        command = [sys.executable, "-m", "fedsynth.federated.flwr_when_ready", ready_url, *arguments]
    return start_process(command, env, log_path)


def started_run_id(process: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> int:
    """The id of the run a :func:`start_flwr_run` process submitted, once its log reports it;
    raise with the log if the process exits (or ``timeout`` passes) before that."""
    marker = "Successfully started run "
    deadline = time.monotonic() + timeout
    while True:
        text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        if marker in text:
            return int(text.rsplit(marker, 1)[1].split()[0])
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"flwr run failed (exit code {process.returncode}):\n{tail(log_path)}")
        time.sleep(0.05)


def control_client(address: str, root_certificates: Path | None = None) -> ControlHttpClient:
    """A client of the SuperLink's Control API at ``address`` (the API ``flwr`` itself uses);
    insecure unless ``root_certificates`` (the CA's PEM file) is given."""
    return ControlHttpClient.from_server_address(
        server_address=address,
        insecure=root_certificates is None,
        root_certificates=None if root_certificates is None else str(root_certificates),
        interceptors=(),
    )


def run_status(client: ControlHttpClient, run_id: int) -> str:
    """The status of a run as ``flwr ls`` shows it: ``pending``, ``starting``, ``running``, or
    ``finished:<completed|failed|stopped>``."""
    runs = client.ListRuns(ListRunsRequest(run_id=run_id)).run_dict
    if run_id not in runs:
        raise RuntimeError(f"the SuperLink does not know run {run_id}")
    status = runs[run_id].status
    return f"{status.status}:{status.sub_status}" if status.sub_status else status.status


def wait_for_run(
    client: ControlHttpClient,
    run_id: int,
    timeout: float,
    watch: Sequence[subprocess.Popen] = (),
    result_file: Path | None = None,
    poll_s: float = 2.0,
    tracker: SessionTracker | None = None,
) -> str:
    """Wait until run ``run_id`` is finished or has written ``result_file`` (or its
    :func:`~fedsynth.federated.outcome.failure_path`), and return the run's status at that moment
    (``running``, ``finished:completed``, ``finished:failed``, ...); raise
    :class:`~fedsynth.federated.outcome.RunFailed` naming the component if a ``watch``ed process
    (the SuperLink, SuperNodes) exits or the SuperLink stops answering, ``RuntimeError`` if
    ``timeout`` seconds pass. A ``tracker`` is updated at every status request, and a watched
    process it saw (``flwr-simulation``, a Ray client actor) that is gone before the run's end
    fails the run too.

    The ServerApp writes its outcome file atomically as its last act: once it exists, the run's
    work is done and the caller need not wait for Flower's teardown (Ray's shutdown takes
    seconds). The file is looked for every 0.05 s; the status is asked every ``poll_s`` seconds
    (each request costs the SuperLink CPU that the clients would rather have).
    """
    deadline = time.monotonic() + timeout
    next_poll = 0.0
    status = "unknown"
    while True:
        written = result_file is not None and (result_file.is_file() or failure_path(result_file).is_file())
        if not written:
            check_alive(watch, run_id)
            lost = tracker.lost() if tracker is not None else None
            if lost is not None:
                status = _status_soon(client, run_id, within_s=3.0)
                if status.startswith("finished"):  # the run ended by itself and took it along
                    return status
                raise RunFailed(f"{lost} exited during run {run_id}")
        if written or time.monotonic() >= next_poll:
            if tracker is not None:
                tracker.update()
            try:
                status = run_status(client, run_id)
            except httpx.HTTPError as error:
                time.sleep(0.2)  # a SuperLink that died closes the connection before it is reaped
                check_alive(watch, run_id)
                raise RunFailed(f"the SuperLink stopped answering during run {run_id} ({type(error).__name__})") from None
            if written or status.startswith("finished"):
                return status
            next_poll = time.monotonic() + poll_s
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not finish within {timeout:g} s (status {status!r})")
        time.sleep(0.05)


def _status_soon(client: ControlHttpClient, run_id: int, within_s: float) -> str:
    """The run's status once it is ``finished:*``, or its last status after ``within_s`` seconds
    (a run whose ServerApp failed stops its processes just before Flower records the end)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            status = run_status(client, run_id)
        except httpx.HTTPError:
            return "unknown"
        if status.startswith("finished") or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def component_name(process: subprocess.Popen) -> str:
    """A started process as a line names it: its program and PID, e.g. ``flower-superlink (pid 12)``."""
    return f"{Path(str(process.args[0])).name} (pid {process.pid})"


def check_alive(watch: Sequence[subprocess.Popen], run_id: int) -> None:
    """Raise :class:`~fedsynth.federated.outcome.RunFailed` naming the first of ``watch`` that
    has exited."""
    for process in watch:
        if process.poll() is not None:
            raise RunFailed(f"{component_name(process)} exited with code {process.returncode} during run {run_id}")


def run_failed(status: str, result_file: Path) -> bool:
    """Whether a run whose status :func:`wait_for_run` returned failed: it ended without writing
    its outcome, or Flower marked it failed or stopped."""
    return not result_file.is_file() or (status.startswith("finished") and status != "finished:completed")


def read_run_outcome(
    status: str, result_file: Path, runner: subprocess.Popen, run_log: Path, *, context: str = ""
) -> RunOutcome:
    """The outcome of a run that :func:`wait_for_run` saw end: raise :class:`RunFailed` with the
    server's one-line reason if it wrote one, ``RuntimeError`` with the end of the run's log (and
    ``context``, e.g. another log's tail) if the run failed otherwise (:func:`run_failed`)."""
    if failure_path(result_file).is_file():
        raise RunFailed(failure_path(result_file).read_text(encoding="utf-8").strip())
    if run_failed(status, result_file):
        wait_for_exit(runner, timeout=15.0)  # the log stream delivers the rest
        raise RuntimeError(f"run ended with status {status!r}; its log:\n{tail(run_log)}{context}")
    return RunOutcome.read_json(result_file)


def wait_for_text(path: Path, text: str, offset: int, timeout_s: float, done: Callable[[], bool]) -> bool:
    """Wait until ``text`` is in the file ``path`` after byte ``offset``, or ``done()`` holds, at
    most ``timeout_s`` seconds (the lines a log stream still delivers after the work it logs has
    ended); return whether the text came."""
    deadline = time.monotonic() + timeout_s
    needle = text.encode()
    while True:
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(offset)
                if needle in handle.read():
                    return True
        if done() or time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file ("" if there is none)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
APP_LINE = re.compile(r"fedsynth: |client \d+: ")
"""Log lines of fedsynth's apps (the clients' progress, the server's summary): the engines show
them while a run goes on; Flower's own lines stay in the log files."""
_FLOWER_PREFIX = re.compile(r"^(\(\S+ pid=\d+\) )?(INFO|WARNING|ERROR|DEBUG)\s*:\s*")

log = logging.getLogger(__name__)


def show_app_line(line: str, source: str = "") -> None:
    """Log one app line of a Flower log (without Ray's actor prefix and Flower's level), after
    ``source`` (e.g. the SuperNode) when given."""
    text = _FLOWER_PREFIX.sub("", line)
    log.info("%s%s", f"{source}: " if source else "", text)


class LogFollower:
    """Follow a growing log file in a thread, from byte ``offset`` on: every new complete line
    that ``keep`` accepts goes, without terminal colour codes, to ``on_line``. Use as a context
    manager; on exit the lines written so far are delivered, then the thread ends."""

    def __init__(
        self,
        path: Path,
        keep: Callable[[str], bool],
        on_line: Callable[[str], None],
        poll_s: float = 0.2,
        offset: int = 0,
    ) -> None:
        self._path, self._keep, self._on_line, self._poll_s = path, keep, on_line, poll_s
        self._stop = threading.Event()
        self._offset = offset
        self._thread = threading.Thread(target=self._run, name=f"follow {path.name}", daemon=True)

    def __enter__(self) -> "LogFollower":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            self._deliver()
        self._deliver()

    def _deliver(self) -> None:
        """Hand on the complete lines written since the last call."""
        if not self._path.exists():
            return
        with open(self._path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for raw in data[:end].decode("utf-8", errors="replace").splitlines():
            line = ANSI_ESCAPE.sub("", raw).rstrip()
            if line and self._keep(line):
                self._on_line(line)
