"""A client as a CPU process of its own, for the in-process engine.

:class:`ClientProcess` starts ``python -c "...serve(FD)"`` with one end of a socket pair and talks
to it with :mod:`multiprocessing.connection` framing: each :class:`ClientRequest` (one message for
one node, with the node's state) gets one :class:`ClientAnswer` (the reply and the node's new
state, or the failure). The process is independent of the caller's :mod:`multiprocessing` set-up
(it works inside joblib's loky workers too), imports fedsynth and torch once, and answers messages
until the pipe closes; its log records come back over the pipe and go to the caller's loggers.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


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
    """The serialized reply and the node's new state, or ``error``, why there is none."""

    reply: bytes = b""
    state: bytes = b""
    error: str | None = None


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
                answer = ClientAnswer(reply=encode(reply), state=encode(state))
            except Exception as error:  # its category only (answer_message logged the details)
                answer = ClientAnswer(error=f"crashed: {error}")
            with lock:
                connection.send(answer)
    except KeyboardInterrupt:
        sys.exit(130)
