"""A client as a CPU process of its own, and the pool of them, for the in-process engine.

A :class:`ClientProcess` is forked, with one end of a socket pair, by this process's
:class:`ForkServer`, a ``python -c "...serve_forks(FD)"`` process that imported torch and the
client logic once; the engine talks to the client with :mod:`multiprocessing.connection` framing:
each :class:`ClientRequest` (one message for one node, with the node's state) gets one
:class:`ClientAnswer` (the reply and the node's new state, or the failure). The processes are
independent of the caller's :mod:`multiprocessing` set-up (they work inside joblib's loky workers
too) and answer messages until the pipe closes; their log records come back over the pipe and go
to the caller's loggers.
"""

from __future__ import annotations

import atexit
import collections
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Mapping, NoReturn


@dataclass(frozen=True)
class ClientRequest:
    """One message for one node: the node config, the message type, the serialized message
    content (the experiment included) and the node's serialized ``Context.state``;
    ``environment`` holds variables to set in the client process first."""

    node_config: dict[str, Any]
    message_type: str
    content: bytes
    state: bytes
    environment: dict[str, str]


@dataclass(frozen=True)
class ClientAnswer:
    """The serialized reply and the node's new state, or ``error``, why there is none;
    ``cpu_seconds``: the CPU time the client process used since its previous answer (since it
    started, for its first)."""

    reply: bytes = b""
    state: bytes = b""
    error: str | None = None
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class _LogLine:
    """A log record of the client process, formatted there."""

    logger: str
    level: int
    message: str


class ClientProcess:
    """One client process and the pipe to it; it answers one request at a time. The process is
    forked by this process's :class:`ForkServer`, so it starts with torch and the client logic
    already imported."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.server = fork_server()
        try:
            self.pid = self.server.fork(theirs)
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())

    def ask(self, request: ClientRequest, deadline: float) -> ClientAnswer:
        """Send ``request`` and return the answer; the client's log lines are logged here as they
        arrive. Raises ``TimeoutError`` past ``deadline`` (``time.monotonic``) and ``EOFError``
        when the process has died."""
        self.connection.send(request)
        while True:
            if not self.connection.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError
            message = self.connection.recv()
            if isinstance(message, _LogLine):
                logging.getLogger(message.logger).log(message.level, "%s", message.message)
                continue
            return message

    def alive(self) -> bool:
        """Whether the process still exists (it is collected only by :meth:`stop`)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> int | None:
        """Kill the process if it still runs; return its exit code (``None`` when its fork
        server has died: then the process is killed directly and its code is lost)."""
        self.connection.close()
        code = self.server.kill(self.pid)
        if code is None and self.alive():
            os.kill(self.pid, signal.SIGKILL)
        return code


class ForkServer:
    """A process that imports torch, the client logic and the modules of :data:`WARM_IMPORTS`
    once, then forks one client process (:func:`serve`) per request.

    Each client process starting on its own would pay those imports again (≈ 4 s of CPU each,
    which the 2 cores of a two-client run spend while the run waits); a forked one starts with
    them done. The server keeps its children as zombies until :meth:`kill` collects their exit
    code, so a pid is never reused while this process may still signal it; when this process
    goes (the control socket closes) the server kills the children it still has and exits.
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        environment = dict(os.environ)
        # the clients import what this process can import (plugins, test support modules)
        environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        command = f"from fedsynth.federated.client_process import serve_forks; serve_forks({theirs.fileno()})"
        self.process = subprocess.Popen(
            [sys.executable, "-c", command], pass_fds=[theirs.fileno()], env=environment, stdin=subprocess.DEVNULL
        )
        theirs.close()
        self.control = ours
        self._lock = threading.Lock()

    def fork(self, channel: socket.socket) -> int:
        """Start a client process that talks over ``channel``; return its pid. Raises
        ``OSError`` when the server is gone."""
        return int(self._request(b"fork", channel))

    def kill(self, pid: int) -> int | None:
        """Kill client process ``pid`` if it still runs and return its exit code (``None`` if the
        server is gone or does not know it)."""
        try:
            answer = self._request(b"kill %d" % pid)
        except OSError:
            return None
        return None if answer == b"unknown" else int(answer)

    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self.process.poll() is None

    def _request(self, message: bytes, channel: socket.socket | None = None) -> bytes:
        with self._lock:
            socket.send_fds(self.control, [message], [channel.fileno()] if channel else [])
            answer = self.control.recv(64)
        if not answer:
            raise OSError("the client fork server has exited")
        return answer

    def stop(self) -> None:
        """End the server (it kills the client processes it still has)."""
        self.control.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ClientWorkers:
    """A pool of client processes (:class:`ClientProcess`); each answers one message at a time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.cpu_seconds = 0.0
        """CPU time of the pool's processes, summed over every answer they gave."""
        self._idle: list[ClientProcess] = []
        self._lock = threading.Lock()

    def answer(self, requests: Mapping[int, ClientRequest], timeout: float) -> dict[int, ClientAnswer]:
        """Answer every request on at most ``size`` processes within ``timeout`` seconds.

        Nodes wait in a queue for a free process; a node whose process is still busy at the
        deadline, or that has not started by then, is timed out, and a process that timed out
        or died is replaced by a new one.
        """
        deadline = time.monotonic() + timeout
        queue = collections.deque(sorted(requests))
        answers: dict[int, ClientAnswer] = {}
        too_late = ClientAnswer(error=f"no reply within {timeout:g} s")

        def drive() -> None:
            worker: ClientProcess | None = None
            while True:
                with self._lock:
                    if not queue:
                        break
                    node = queue.popleft()
                if time.monotonic() >= deadline:
                    answers[node] = too_late
                    continue
                try:
                    worker = worker or self._take()
                    answers[node] = worker.ask(requests[node], deadline)
                    with self._lock:
                        self.cpu_seconds += answers[node].cpu_seconds
                except TimeoutError:
                    answers[node] = too_late
                    worker.stop()
                    worker = None
                except (EOFError, OSError) as error:
                    if worker is None:  # it could not be started
                        answers[node] = ClientAnswer(error=f"crashed: no client process: {error}")
                        continue
                    code = worker.stop()
                    answers[node] = ClientAnswer(error=f"crashed: its client process exited with code {code}")
                    worker = None
            if worker is not None:
                with self._lock:
                    self._idle.append(worker)

        drivers = [threading.Thread(target=drive, daemon=True) for _ in range(min(self.size, len(requests)))]
        for driver in drivers:
            driver.start()
        for driver in drivers:
            driver.join()
        return answers

    def _take(self) -> ClientProcess:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ClientProcess()

    def close(self) -> None:
        """Stop the idle processes (a busy one ends when its pipe closes with this process)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()


_fork_server: ForkServer | None = None
_FORK_SERVER_LOCK = threading.Lock()


def running_fork_server() -> ForkServer | None:
    """This process's :class:`ForkServer` if one runs (starts none)."""
    with _FORK_SERVER_LOCK:
        return _fork_server if _fork_server is not None and _fork_server.alive() else None


def fork_server() -> ForkServer:
    """This process's :class:`ForkServer`, started on first use and again if it has died."""
    global _fork_server
    with _FORK_SERVER_LOCK:
        if _fork_server is not None and not _fork_server.alive():
            _fork_server.stop()
            _fork_server = None
        if _fork_server is None:
            _fork_server = ForkServer()
            atexit.register(_fork_server.stop)
        return _fork_server


_POOLS: dict[int, ClientWorkers] = {}
_POOLS_LOCK = threading.Lock()


def client_workers(size: int) -> ClientWorkers:
    """This process's pool of ``size`` client workers, created on first use and kept for the
    process's later runs."""
    with _POOLS_LOCK:
        if size not in _POOLS:
            _POOLS[size] = ClientWorkers(size)
            atexit.register(_POOLS[size].close)
        return _POOLS[size]


def client_cpu_seconds() -> float:
    """The CPU time this process's client workers reported, over all its runs (a process that
    was stopped before it answered is not counted)."""
    with _POOLS_LOCK:
        return sum(pool.cpu_seconds for pool in _POOLS.values())


def available_cores() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pool_size(workers: int | None, num_clients: int) -> int:
    """The client processes of a run: ``workers`` if given, else one per usable core and at most
    one per client."""
    return workers or min(num_clients, available_cores())


IN_PROCESS_ENGINE = "fedsynth.federated.inprocess.InProcessEngine"
"""The ``_target_`` of the engine whose clients are these processes (``conf/engine/inprocess.yaml``)."""


def start_client_workers(config: Mapping[str, Any]) -> None:
    """Start the fork server of the client processes now when the engine of the experiment
    ``config`` (the resolved Hydra config) is the in-process one, so that its imports (≈ 3 s of
    CPU: torch, the client logic, SciPy) overlap the caller's checks and data
    loading; any other engine, or an engine or dataset setting the checks will reject, starts
    nothing. The client processes themselves are forked when the run needs them (milliseconds)."""
    engine, dataset = config.get("engine") or {}, config.get("dataset") or {}
    workers, num_clients = engine.get("workers"), dataset.get("num_clients")
    if engine.get("_target_") != IN_PROCESS_ENGINE or not isinstance(num_clients, int) or num_clients < 1:
        return
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        return
    fork_server()


class _PipeHandler(logging.Handler):
    """Sends each log record, formatted, to the engine over the client's pipe."""

    def __init__(self, connection: Connection, lock: threading.Lock) -> None:
        super().__init__(logging.INFO)
        self.connection = connection
        self.send_lock = lock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = _LogLine(record.name, record.levelno, record.getMessage())
            with self.send_lock:
                self.connection.send(line)
        except Exception:  # a log line must never break the client
            self.handleError(record)


WARM_IMPORTS = ("torch", "fedsynth.federated.client_logic", "fedsynth.federated.messages", "scipy.spatial")
"""What the :class:`ForkServer` imports before it forks a client: torch, the client logic and the
module a privacy report imports (SciPy's k-d tree, ≈ 0.4 s). A client's synthesis does not import
``torch._dynamo`` (:func:`fedsynth.core.synthesis.adam_step`)."""


_cpu_at_last_answer = 0.0


def _cpu_since_last_answer() -> float:
    """This process's CPU time (all its threads) since the previous call, or since it started."""
    global _cpu_at_last_answer
    now = time.process_time()
    elapsed, _cpu_at_last_answer = now - _cpu_at_last_answer, now
    return elapsed


def serve_forks(fd: int) -> NoReturn:
    """The :class:`ForkServer` process: import what every client needs, then answer requests on
    the control socket ``fd`` until it closes: ``fork`` (with the client's socket as an fd)
    starts a client process and answers its pid; ``kill <pid>`` kills it if it still runs and
    answers its exit code."""
    control = socket.socket(fileno=fd)
    for module in WARM_IMPORTS:
        importlib.import_module(module)
    sys.modules["torch"].set_num_threads(1)  # a simulated client gets one CPU
    children: set[int] = set()
    try:
        while True:
            message, fds, _, _ = socket.recv_fds(control, 64, 1)
            if not message:
                break
            if message == b"fork":
                pid = os.fork()
                if pid == 0:
                    control.close()
                    _run_forked_client(fds[0])
                os.close(fds[0])
                children.add(pid)
                control.send(b"%d" % pid)
            elif message.startswith(b"kill "):
                pid = int(message.split()[1])
                if pid not in children:
                    control.send(b"unknown")
                    continue
                children.discard(pid)
                control.send(b"%d" % _kill_and_collect(pid))
    except (KeyboardInterrupt, OSError):
        pass
    for pid in children:
        _kill_and_collect(pid)
    os._exit(0)  # nothing to finalize: the interpreter's teardown (torch, SciPy) would take a second


def _kill_and_collect(pid: int) -> int:
    """Kill the fork server's child ``pid`` if it still runs and collect it: its exit code."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended by itself: a zombie until collected here
        pass
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _run_forked_client(fd: int) -> NoReturn:
    """The forked child of :func:`serve_forks`: :func:`serve` on ``fd``, then exit with its code
    (never back into the server's loop)."""
    code = 0
    try:
        serve(fd)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def serve(fd: int) -> None:
    """The client process's loop (in a child of :func:`serve_forks`): answer
    :class:`ClientRequest` objects from the pipe ``fd`` until it closes (the engine has gone) or
    Ctrl-C."""
    connection = Connection(fd)
    lock = threading.Lock()
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(connection, lock)]
    root.setLevel(logging.INFO)
    try:
        from fedsynth.federated.client_logic import answer_message  # imported by the fork server
        from fedsynth.federated.messages import decode, encode

        while True:
            try:
                request: ClientRequest = connection.recv()
            except (EOFError, OSError):
                return
            os.environ.update(request.environment)
            try:
                state = decode(request.state)
                reply = answer_message(request.message_type, decode(request.content), request.node_config, state)
                answer = ClientAnswer(reply=encode(reply), state=encode(state), cpu_seconds=_cpu_since_last_answer())
            except Exception as error:  # its category only (answer_message logged the details)
                answer = ClientAnswer(error=f"crashed: {error}", cpu_seconds=_cpu_since_last_answer())
            with lock:
                connection.send(answer)
    except KeyboardInterrupt:
        sys.exit(130)
