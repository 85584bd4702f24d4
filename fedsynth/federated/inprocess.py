"""The in-process engine: the Flower apps' client and server logic without a Flower runtime.

The server runs in this process; each client answers in a process of its own, a one-worker
``ProcessPoolExecutor`` on the ``forkserver`` context whose fork server imported torch and the
client logic once (:data:`PRELOAD`). Every message and a node's ``Context.state`` travel
serialized with Flower's serde, so the engine gives the numbers of the simulation engine for the
same seed. Client processes are kept for this process's later runs (a sweep's points reuse them and
their data); one that timed out or died is replaced; all end with this process, SIGKILL included
(docs/architecture.md, "Where things run").
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import logging.handlers
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.util
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Mapping

from flwr.app import RecordDict

from fedsynth import progress as fedsynth_progress
from fedsynth.config import Experiment
from fedsynth.flower import decode, encode
from fedsynth.outcome import RunOutcome

if TYPE_CHECKING:
    from fedsynth.methods import ClientFailure

PRELOAD = ["torch", "fedsynth.federated.client_logic", "scipy.spatial"]
"""What the fork server imports once for every client process (SciPy's k-d tree: the privacy
report)."""


class InProcessEngine:
    """The federation on this machine without Flower's runtime: node ``k + 1`` holds partition
    ``k``, and the clients answer in processes with one torch thread each.

    Args:
        workers: client processes; ``None`` (default) means one per core this process may use,
            and never more than there are clients. A client still busy at the timeout is
            reported as timed out and its process is replaced.
        run_timeout_s: the longest a run may take (``None``: no limit besides the messages'
            ``federation.timeout_s``).
        progress: how clients show their outer iterations (:data:`fedsynth.progress.MODES`);
            ``None`` (default): as this process does (:func:`fedsynth.progress.mode`).
    """

    name = "inprocess"

    def __init__(self, workers: int | None = None, run_timeout_s: float | None = None, progress: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"engine.workers must be >= 1 (or null for one per core), got {workers}")
        if run_timeout_s is not None and not run_timeout_s > 0:
            raise ValueError(f"engine.run_timeout_s must be > 0 (or null), got {run_timeout_s}")
        if progress is not None:
            fedsynth_progress.check_mode(progress)
        self.workers, self.run_timeout_s, self.progress = workers, run_timeout_s, progress

    def start(self) -> None:
        """Start the fork server now (it returns at once): its imports overlap the caller's
        checks, and the run's client processes fork from it in milliseconds. (This module imports
        no torch itself, the server logic and the methods only when a run starts, so that the
        command's own torch import runs beside the fork server's, not before it.)"""
        _forkserver_context()
        multiprocessing.forkserver.ensure_running()

    def _pool(self, num_clients: int) -> ClientPool:
        return _pool(self.workers or min(num_clients, len(os.sched_getaffinity(0))), self.progress or fedsynth_progress.mode())

    def run(self, experiment: Experiment) -> RunOutcome:
        """Run ``experiment``; the server's fit, too, gets one torch thread like each client."""
        import torch

        from fedsynth.federated.server_logic import run_experiment

        start = time.perf_counter()
        num_clients = int(experiment.dataset["num_clients"])
        transport = InProcessTransport(num_clients, self._pool(num_clients))
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            outcome = run_experiment(experiment, transport, engine=self.name, run_timeout_s=self.run_timeout_s)
        finally:
            torch.set_num_threads(previous)
        return outcome.finish(self.name, start)


ClientRequest = tuple[dict[str, Any], str, bytes, bytes]
"""One message for one node: its node config, the message type, the serialized content (the
experiment record included) and the node's serialized ``Context.state``."""


class InProcessTransport:
    """Delivers each node's message to a client process and keeps the nodes' state."""

    def __init__(self, num_clients: int, pool: ClientPool) -> None:
        self._node_configs = {k + 1: {"partition-id": k, "num-partitions": num_clients} for k in range(num_clients)}
        self._states = {node: encode(RecordDict()) for node in self._node_configs}
        self._pool = pool

    def nodes(self) -> list[int]:
        """All nodes are always connected."""
        return sorted(self._node_configs)

    def exchange(self, message_type: str, contents: Mapping[int, RecordDict], timeout: float) -> dict[int, RecordDict | ClientFailure]:
        """Deliver serialized contents to the nodes and wait at most ``timeout`` s for them all."""
        from fedsynth.methods import ClientFailure

        requests = {node: (self._node_configs[node], message_type, encode(content), self._states[node]) for node, content in contents.items()}
        replies: dict[int, RecordDict | ClientFailure] = {}
        for node, answer in self._pool.answer(requests, timeout).items():
            if isinstance(answer, str):
                replies[node] = ClientFailure(node, answer)
            else:
                self._states[node] = answer[1]
                replies[node] = decode(answer[0])
        return replies


class ClientProcess:
    """One client process: a one-worker ``ProcessPoolExecutor`` forked by the fork server."""

    def __init__(self, lifeline: Any, logs: Any, mode: str) -> None:
        self.executor = concurrent.futures.ProcessPoolExecutor(1, _forkserver_context(), _start_client, (lifeline, logs, mode))
        self.pid = self.executor.submit(os.getpid).result()
        self._stopping = threading.Lock()

    def answer(self, request: ClientRequest, deadline: float) -> tuple[bytes, bytes] | str:
        """The serialized reply and new state, or the failure's reason; ``TimeoutError`` past
        ``deadline`` (``time.monotonic``), ``BrokenProcessPool`` if the process died."""
        future = self.executor.submit(_answer, *request)
        return future.result(timeout=max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Kill the process (it may be computing) and let its executor go."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if not self._stopping.acquire(blocking=False):
            return  # stopped already: by its driver thread, or by a stop signal's release
        with contextlib.suppress(OSError):  # the executor may have closed its queues itself
            self.executor.shutdown(wait=True, cancel_futures=True)


class ClientPool:
    """Up to ``size`` client processes; each answers one message at a time."""

    def __init__(self, size: int, lifeline: Any, logs: Any, mode: str) -> None:
        self.size, self._lifeline, self._logs, self._mode = size, lifeline, logs, mode
        self._idle: list[ClientProcess] = []
        self._all: list[ClientProcess] = []
        self._lock = threading.Lock()
        self._stopped = False

    def answer(self, requests: Mapping[int, ClientRequest], timeout: float) -> dict[int, tuple[bytes, bytes] | str]:
        """Answer every request within ``timeout`` seconds: nodes wait in a queue for a free
        process; a node still busy at the deadline, or not started by then, is timed out."""
        deadline = time.monotonic() + timeout
        queue = collections.deque(sorted(requests))
        answers: dict[int, tuple[bytes, bytes] | str] = {}
        too_late = f"no reply within {timeout:g} s"

        def drive() -> None:
            process: ClientProcess | None = None
            while True:
                with self._lock:
                    if not queue:
                        break
                    node = queue.popleft()
                if time.monotonic() >= deadline:
                    answers[node] = too_late
                    continue
                try:
                    process = process or self._take()
                    answers[node] = process.answer(requests[node], deadline)
                except concurrent.futures.TimeoutError:
                    answers[node] = too_late
                    process.stop()
                    process = None
                except (BrokenProcessPool, OSError):
                    answers[node] = "crashed: its client process exited"
                    if process is not None:
                        process.stop()
                    process = None
                except RuntimeError:  # "cannot schedule new futures after shutdown"
                    if self._stopped:  # a stop signal ended the pool: the command is exiting
                        return
                    raise
            if process is not None:
                with self._lock:
                    self._idle.append(process)

        drivers = [threading.Thread(target=drive, daemon=True) for _ in range(min(self.size, len(requests)))]
        for driver in drivers:
            driver.start()
        for driver in drivers:
            driver.join()
        return answers

    def _take(self) -> ClientProcess:
        """An idle process, or a new one; ``RuntimeError`` once the pool is stopped (a client
        started while the command exits would outlive it or hold its exit up)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("the client pool is stopped")
            if self._idle:
                return self._idle.pop()
        process = ClientProcess(self._lifeline, self._logs, self._mode)
        with self._lock:
            if not self._stopped:
                self._all.append(process)
                return process
        process.stop()
        raise RuntimeError("the client pool is stopped")

    def stop(self) -> None:
        """Kill every process of the pool, busy ones too."""
        with self._lock:
            self._stopped = True
            processes, self._all, self._idle = self._all, [], []
        for process in processes:
            process.stop()


_POOLS: dict[tuple[int, str], ClientPool] = {}
_POOLS_LOCK = threading.Lock()
_SHARED: list[Any] = []
"""The clients' lifeline (the read end of a pipe whose write end only this process holds, kept
here and never written) and the queue of their log records, made on first use."""


def _forkserver_context() -> multiprocessing.context.ForkServerContext:
    """The ``forkserver`` context with the fork server's imports: :data:`PRELOAD`, the main
    module once there (not in every child), and the module of this process's default start
    method, which a child sets again (loky's, in a worker of the parallel launcher)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", *PRELOAD, type(multiprocessing.get_context()).__module__])
    return context


def stop_clients() -> None:
    """Kill this process's client processes, busy ones too (a stop signal: the process then
    exits normally, and ``concurrent.futures`` would otherwise wait for their work)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.stop()


def _pool(size: int, mode: str) -> ClientPool:
    """This process's pool of ``size`` client processes showing progress as ``mode``, kept for
    its later runs; the first call makes the lifeline and starts the log records' listener."""
    with _POOLS_LOCK:
        if not _SHARED:
            context = multiprocessing.get_context("forkserver")
            lifeline, held = context.Pipe(duplex=False)
            _SHARED.extend([lifeline, held, context.Queue()])
            logging.handlers.QueueListener(_SHARED[2], _Relay()).start()
            # before a multiprocessing worker (the parallel launcher's) waits for its children at its end
            multiprocessing.util.Finalize(None, stop_clients, exitpriority=10)
        return _POOLS.setdefault((size, mode), ClientPool(size, _SHARED[0], _SHARED[2], mode))


class _Relay(logging.Handler):
    """Hands a client's log record to this process's logger of the same name."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


def _start_client(lifeline: Any, logs: Any, mode: str) -> None:
    """A client process's start: end when the engine's process does (its ``lifeline`` closes),
    one torch thread, log records to the engine, progress shown as ``mode``."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv()
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command handles Ctrl-C and stops us
    import torch

    torch.set_num_threads(1)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(logs)]
    root.setLevel(logging.INFO)
    fedsynth_progress.set_mode(mode)


def _answer(node_config: dict[str, Any], message_type: str, content: bytes, state_bytes: bytes) -> tuple[bytes, bytes] | str:
    """(In a client process) answer one request: the serialized reply and state, or the failure."""
    from fedsynth.federated.client_logic import answer_message

    state = decode(state_bytes)
    try:
        reply = answer_message(message_type, decode(content), node_config, state)
    except Exception as error:  # its category only (answer_message logged the details)
        return f"crashed: {error}"
    return encode(reply), encode(state)
