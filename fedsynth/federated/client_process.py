"""A client as a CPU process of its own, and the pool of them, for the in-process engine.

A :class:`ClientProcess` is forked, with one end of a socket pair, by this process's
:class:`ForkServer`, a ``python -c "...serve_forks(FD)"`` process that imported torch and the
client logic once; the engine talks to the client with :mod:`multiprocessing.connection` framing:
each :class:`ClientRequest` (one message for one node, with the node's state) gets one
:class:`ClientAnswer` (the reply and the node's new state, or the failure). The processes are
independent of the caller's :mod:`multiprocessing` set-up (they work inside joblib's loky workers
too) and answer messages until the pipe closes; their log records come back over the pipe and go
to the caller's loggers.

A client process also answers a :class:`CallRequest`, any importable function of one picklable
argument (:func:`call_in_client_process`): the ``fedsynth`` command runs its checks and the
in-process engine's server that way, so that its own process never imports torch. Such a process
forks a fork server of its own for the client processes the engine asks for.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import importlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Mapping, NoReturn


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
class CallRequest:
    """A call ``function(argument)`` for a client process (:func:`call_in_client_process`):
    ``function`` travels by its importable name; ``environment`` holds variables to set in the
    process first."""

    function: Callable[[Any], Any]
    argument: Any
    environment: dict[str, str]


@dataclass(frozen=True)
class CallAnswer:
    """What a call returned, or the exception it raised (with its traceback as a note);
    ``cpu_seconds``: the CPU time of the process and of the client processes it asked, since
    its previous answer."""

    result: Any = None
    error: BaseException | None = None
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

    def ask(self, request: ClientRequest | CallRequest, deadline: float | None) -> ClientAnswer | CallAnswer:
        """Send ``request`` and return the answer; the client's log lines are logged here as they
        arrive. Raises ``TimeoutError`` past ``deadline`` (``time.monotonic``; ``None``: no
        deadline) and ``EOFError`` when the process has died."""
        self.connection.send(request)
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.connection.poll(timeout):
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

    A process that already has those imports (a fork server's child answering a
    :class:`CallRequest`) gets its own fork server by forking itself, in milliseconds.

    Each client process starting on its own would pay those imports again (≈ 4 s of CPU each,
    which the 2 cores of a two-client run spend while the run waits); a forked one starts with
    them done. The server keeps its children as zombies until :meth:`kill` collects their exit
    code, so a pid is never reused while this process may still signal it; when this process
    goes (the control socket closes) the server kills the children it still has and exits.
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process: subprocess.Popen[bytes] | None = None
        self._exit_code: int | None = None
        if _imports_done:
            self.pid = os.fork()
            if self.pid == 0:
                ours.close()
                _serve_fork_requests(theirs)
        else:
            environment = dict(os.environ)
            # the clients import what this process can import (plugins, test support modules)
            environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
            command = f"from fedsynth.federated.client_process import serve_forks; serve_forks({theirs.fileno()})"
            self._process = subprocess.Popen(
                [sys.executable, "-c", command], pass_fds=[theirs.fileno()], env=environment, stdin=subprocess.DEVNULL
            )
            self.pid = self._process.pid
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
        return self._poll() is None

    def _poll(self) -> int | None:
        """The server's exit code once it has ended (collecting it), else ``None``."""
        if self._process is not None:
            return self._process.poll()
        if self._exit_code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._exit_code = os.waitstatus_to_exitcode(status)
        return self._exit_code

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
        deadline = time.monotonic() + 10
        while self._poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            if self._process is not None:
                self._process.wait()
            else:
                os.waitpid(self.pid, 0)


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
    """The CPU time this process's client workers and calls (:func:`call_in_client_process`)
    reported, over all its runs (a process that was stopped before it answered is not
    counted)."""
    with _POOLS_LOCK:
        return sum(pool.cpu_seconds for pool in _POOLS.values()) + _calls.cpu_seconds


class _CallProcesses:
    """The client processes that answer :func:`call_in_client_process`, kept between calls."""

    def __init__(self) -> None:
        self.cpu_seconds = 0.0
        self.idle: list[ClientProcess] = []
        self.lock = threading.Lock()

    def close(self) -> None:
        """Stop the idle processes (a busy one is stopped by the call that waits for it)."""
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.stop()


_calls = _CallProcesses()
atexit.register(_calls.close)


def call_in_client_process(function: Callable[[Any], Any], argument: Any) -> Any:
    """``function(argument)`` in a client process (forked by this process's
    :class:`ForkServer`, so torch and the client logic are imported already) instead of here:
    its result, or the exception it raised (its traceback is a note on it). ``function`` must be
    importable by name and ``argument`` picklable. Its log records go to this process's loggers;
    the ``FEDSYNTH_*`` environment variables go with the call. A call may start client processes
    of its own (:func:`client_workers`): they live in that process and are kept with it for the
    next call. Raises :class:`~fedsynth.federated.outcome.RunFailed` if the process dies; a stop
    (Ctrl-C, :class:`BaseException`) here stops it and the processes it started."""
    from fedsynth.federated.outcome import RunFailed

    with _calls.lock:
        worker = _calls.idle.pop() if _calls.idle else None
    environment = {key: value for key, value in os.environ.items() if key.startswith("FEDSYNTH_")}
    try:
        worker = worker or ClientProcess()
        answer = worker.ask(CallRequest(function, argument, environment), deadline=None)
    except (EOFError, OSError) as error:
        code = worker.stop() if worker is not None else None
        raise RunFailed(f"the client process running {function.__qualname__} exited (code {code}): {error}") from None
    except BaseException:
        if worker is not None:
            worker.stop()
        raise
    with _calls.lock:
        _calls.cpu_seconds += answer.cpu_seconds
        _calls.idle.append(worker)
    if answer.error is not None:
        raise answer.error
    return answer.result


def available_cores() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pool_size(workers: int | None, num_clients: int) -> int:
    """The client processes of a run: ``workers`` if given, else one per usable core and at most
    one per client."""
    return workers or min(num_clients, available_cores())


IN_PROCESS_ENGINE = "fedsynth.federated.inprocess.InProcessEngine"
"""The ``_target_`` of the engine whose clients are these processes (``conf/engine/inprocess.yaml``)."""


def start_client_workers(config: Mapping[str, Any]) -> bool:
    """Start the fork server of the client processes now when the engine of the experiment
    ``config`` (the resolved Hydra config) is the in-process one, so that its imports (≈ 3 s of
    CPU: torch, the client logic, SciPy) overlap the caller's work; any other engine, or an
    engine or dataset setting the checks will reject, starts nothing. Returns whether it
    started (or found) the server. The client processes themselves are forked when the run
    needs them (milliseconds)."""
    engine, dataset = config.get("engine") or {}, config.get("dataset") or {}
    workers, num_clients = engine.get("workers"), dataset.get("num_clients")
    if engine.get("_target_") != IN_PROCESS_ENGINE or not isinstance(num_clients, int) or num_clients < 1:
        return False
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        return False
    fork_server()
    return True


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


_imports_done = False
"""Whether this process has :data:`WARM_IMPORTS` done: a fork server, or a process it forked."""
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
    global _imports_done
    for module in WARM_IMPORTS:
        importlib.import_module(module)
    sys.modules["torch"].set_num_threads(1)  # a simulated client gets one CPU
    _imports_done = True
    _serve_fork_requests(socket.socket(fileno=fd))


def _serve_fork_requests(control: socket.socket) -> NoReturn:
    """The fork server's loop on its ``control`` socket (see :func:`serve_forks`); the process
    ends when the socket closes, killing the client processes it still has."""
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
            if isinstance(request, CallRequest):
                answer = _answer_call(request)
                with lock:
                    connection.send(answer)
                continue
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


def _answer_call(request: CallRequest) -> CallAnswer:
    """Run a :class:`CallRequest` in this client process; its own fork server is started
    first, while the process has one thread (a fork must not happen while other threads run)."""
    fork_server()
    clients_before = client_cpu_seconds()
    try:
        answer = CallAnswer(result=request.function(request.argument))
    except Exception as error:
        error.add_note(f"in client process {os.getpid()}:\n{traceback.format_exc()}")
        try:
            pickle.dumps(error)
        except Exception:
            error = RuntimeError(f"{type(error).__name__}: {error}")
        answer = CallAnswer(error=error)
    cpu_seconds = _cpu_since_last_answer() + client_cpu_seconds() - clients_before
    return dataclasses.replace(answer, cpu_seconds=cpu_seconds)
