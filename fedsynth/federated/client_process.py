"""A client as a CPU process of its own, and the pool of them, for the in-process engine.

:class:`ClientProcess` starts ``python -c "...serve(FD)"`` with one end of a socket pair and talks
to it with :mod:`multiprocessing.connection` framing: each :class:`ClientRequest` (one message for
one node, with the node's state) gets one :class:`ClientAnswer` (the reply and the node's new
state, or the failure). The process is independent of the caller's :mod:`multiprocessing` set-up
(it works inside joblib's loky workers too), imports fedsynth and torch once, as soon as it starts,
and answers messages until the pipe closes; its log records come back over the pipe and go to the caller's loggers.
"""

from __future__ import annotations

import atexit
import collections
import importlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Mapping


@dataclass(frozen=True)
class ClientRequest:
    """One message for one node: the run config, the node config, the message type, the
    serialized message content and the node's serialized ``Context.state``; ``environment``
    holds variables to set in the client process first."""

    run_config: dict[str, str]
    node_config: dict[str, Any]
    action: str
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
    """One client process and the pipe to it; it answers one request at a time."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        environment = dict(os.environ)
        # the client imports what this process can import (plugins, test support modules)
        environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        command = f"from fedsynth.federated.client_process import serve; serve({theirs.fileno()})"
        self.process = subprocess.Popen(
            [sys.executable, "-c", command], pass_fds=[theirs.fileno()], env=environment, stdin=subprocess.DEVNULL
        )
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

    def stop(self) -> int | None:
        """Kill the process if it still runs; return its exit code."""
        self.connection.close()
        if self.process.poll() is None:
            self.process.kill()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None


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

    def start(self) -> None:
        """Start processes until ``size`` are idle, without waiting for them to be ready: each
        imports torch and the client logic while its caller goes on (call it between runs)."""
        with self._lock:
            while len(self._idle) < self.size:
                self._idle.append(ClientProcess())

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
    """Start the client processes of the experiment ``config`` (the resolved Hydra config) now
    when its engine is the in-process one, so that their start-up (≈ 3 s on an idle core: torch,
    the client logic, ``torch._dynamo``) overlaps the caller's checks and data loading; any other engine,
    or an engine or dataset setting the checks will reject, starts nothing."""
    engine, dataset = config.get("engine") or {}, config.get("dataset") or {}
    workers, num_clients = engine.get("workers"), dataset.get("num_clients")
    if engine.get("_target_") != IN_PROCESS_ENGINE or not isinstance(num_clients, int) or num_clients < 1:
        return
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        return
    client_workers(pool_size(workers, num_clients)).start()


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


WARM_IMPORTS = ("torch._dynamo", "scipy.spatial")
"""Modules a client's first message would otherwise import on its critical path."""


def _import_all(modules: tuple[str, ...]) -> None:
    """Import ``modules`` in turn (a background thread of :func:`serve`)."""
    for module in modules:
        importlib.import_module(module)


_cpu_at_last_answer = 0.0


def _cpu_since_last_answer() -> float:
    """This process's CPU time (all its threads) since the previous call, or since it started."""
    global _cpu_at_last_answer
    now = time.process_time()
    elapsed, _cpu_at_last_answer = now - _cpu_at_last_answer, now
    return elapsed


def serve(fd: int) -> None:
    """The client process's loop: answer :class:`ClientRequest` objects from the pipe ``fd``
    until it closes (the engine has gone) or Ctrl-C."""
    connection = Connection(fd)
    lock = threading.Lock()
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(connection, lock)]
    root.setLevel(logging.INFO)
    try:
        import torch

        from fedsynth.federated.client_logic import answer_message
        from fedsynth.federated.messages import decode, encode

        torch.set_num_threads(1)  # a simulated client gets one CPU
        # torch's first Adam step imports torch._dynamo (≈ 1.6 s) and a privacy report SciPy's
        # k-d tree (≈ 0.4 s): import them while this process waits for its first
        # message, without delaying a message that needs neither
        threading.Thread(target=_import_all, args=(WARM_IMPORTS,), daemon=True).start()
        while True:
            try:
                request: ClientRequest = connection.recv()
            except (EOFError, OSError):
                return
            os.environ.update(request.environment)
            try:
                state = decode(request.state)
                reply = answer_message(
                    request.action, decode(request.content), request.run_config, request.node_config, state
                )
                answer = ClientAnswer(reply=encode(reply), state=encode(state), cpu_seconds=_cpu_since_last_answer())
            except Exception as error:  # its category only (answer_message logged the details)
                answer = ClientAnswer(error=f"crashed: {error}", cpu_seconds=_cpu_since_last_answer())
            with lock:
                connection.send(answer)
    except KeyboardInterrupt:
        sys.exit(130)
