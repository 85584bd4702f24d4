"""Processes that end with the command that started them, SIGKILL included, and temporary folders
that a killed run left, removed at the next start (docs/reliability.md, "Faults").

:class:`Child` runs ``function(argument, send)`` in a child process that leads a process group of
its own and is a subreaper of everything it starts; a thread of it waits on the pipe from the
caller and, when it closes (however the caller ended), kills every descendant and the group.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

import psutil

PR_SET_CHILD_SUBREAPER = 36
SCRATCH_ROOT = Path(tempfile.gettempdir()) / f"fedsynth-{os.getuid()}"
"""Temporary folders of runs, one per process and call: ``<pid>-<n>`` (short: Ray's socket paths
under them must stay below 108 bytes)."""


def _prctl(option: int, value: int) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def kill_descendants(process: psutil.Process) -> None:
    """SIGKILL every descendant of ``process`` (not itself) and collect those it can."""
    while descendants := process.children(recursive=True):
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(descendants, timeout=5)


class _PipeLogHandler(logging.Handler):
    """Sends each log record of the child, formatted, to the caller."""

    def __init__(self, send: Callable[[tuple[str, Any]], None]) -> None:
        super().__init__(logging.INFO)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(("log", record.name, record.levelno, record.getMessage()))
        except Exception:  # a log line must never break the run
            self.handleError(record)


def _child(connection: Connection, function: Callable[[Any, Callable[[Any], None]], None], argument: Any) -> NoReturn:
    """The child of :class:`Child`: its own group, a subreaper, a guard thread; the call, whose
    results (or exception) go to the caller; every descendant killed."""
    os.setpgid(0, 0)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    me = psutil.Process()
    lock = threading.Lock()

    def guard() -> None:  # the caller has gone or given up: nothing of ours may stay
        with contextlib.suppress(EOFError, OSError):
            while connection.recv() is not None:
                pass
        kill_descendants(me)
        os.killpg(0, signal.SIGKILL)

    def send(message: tuple[str, Any]) -> None:
        with lock:
            try:
                connection.send(message)
            except (pickle.PicklingError, TypeError, AttributeError):  # an unpicklable exception: its text
                connection.send(("error", RuntimeError(f"{type(message[1]).__name__}: {message[1]}")))

    threading.Thread(target=guard, daemon=True).start()
    logging.getLogger().handlers[:] = [_PipeLogHandler(send)]
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("fedsynth").setLevel(logging.INFO)
    try:
        function(argument, lambda value: send(("result", value)))
        answer: tuple[str, Any] = ("end", None)
    except BaseException as error:  # noqa: BLE001 - everything goes back to the caller
        answer = ("error", error)
    kill_descendants(me)
    with contextlib.suppress(OSError):
        send(answer)
    os._exit(0)


class Child:
    """``function(argument, send)`` in a child process of its own group (see the module
    docstring); :meth:`next` gives each value the child sends, in order. ``function`` must
    be importable and ``argument`` picklable; the child's log records go to this process's
    loggers. :meth:`close` (or leaving the ``with`` block) ends the child and whatever it
    started."""

    def __init__(self, function: Callable[[Any, Callable[[Any], None]], None], argument: Any, name: str) -> None:
        context = multiprocessing.get_context("forkserver")
        self.name = name
        self._connection, theirs = context.Pipe()
        self.process = context.Process(target=_child, args=(theirs, function, argument), name=name)
        self.process.start()
        theirs.close()

    def next(self) -> Any:
        """The next value the child sends; its exception if it raised one; ``StopIteration`` once
        it returned; :class:`ChildDied` (one line naming it) if it ended otherwise."""
        while True:
            try:
                kind, *content = self._connection.recv()
            except EOFError:
                self.process.join(timeout=10)
                raise ChildDied(f"{self.name} (pid {self.process.pid}) exited with code {self.process.exitcode} during the run") from None
            if kind == "log":
                logging.getLogger(content[0]).log(content[1], "%s", content[2])
            elif kind == "result":
                return content[0]
            elif kind == "error":
                raise content[0]
            else:
                raise StopIteration

    def close(self) -> None:
        """End the child: its guard kills what it started; then its group, whatever is left."""
        self._connection.close()
        self.process.join(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.join()

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def call_in_child(function: Callable[[Any, Callable[[Any], None]], None], argument: Any, name: str) -> Any:
    """The first value ``function(argument, send)`` sends from a :class:`Child`; everything the
    child started is killed before this returns or raises."""
    with Child(function, argument, name) as child:
        return child.next()


class ChildDied(RuntimeError):
    """The child of :func:`call_in_child` ended without an answer (killed, or it crashed)."""


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A new temporary folder for this process's run, removed afterwards; folders a killed run
    left (their process is gone) are removed first."""
    SCRATCH_ROOT.mkdir(mode=0o700, exist_ok=True)
    for folder in SCRATCH_ROOT.iterdir():
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=SCRATCH_ROOT))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
