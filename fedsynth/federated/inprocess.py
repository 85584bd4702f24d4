"""The in-process engine: the Flower apps' client and server logic without a Flower runtime.

The server runs in this process; every client answers in a worker process of its own (as on the
simulation engine, a client is a CPU process), so the clients of a run use every core. Every
message is serialized with Flower's serde on its way to and from a worker, and a node's
``Context.state`` travels with its messages and lives here between them. It builds the run config
with :func:`~fedsynth.federated.experiment.run_config_for` and reads it back with
:func:`~fedsynth.federated.experiment.experiment_from_run_config`, as the Flower apps do, so it
gives the same numbers as :class:`~fedsynth.federated.simulation.SimulationEngine` for the same
seed.

The worker processes are started once per process and kept for later runs (the points of a
sweep reuse them); they end with this process.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import threading
import time
from typing import Any, Iterator, Mapping

import torch
from flwr.app import RecordDict

from fedsynth.federated.client_process import ClientAnswer, ClientProcess, ClientRequest
from fedsynth.federated.experiment import experiment_from_run_config, run_config_for
from fedsynth.federated.messages import decode, encode
from fedsynth.federated.outcome import RunOutcome
from fedsynth.federated.server_logic import run_experiment
from fedsynth.methods import ClientFailure

ENV_PREFIX = "FEDSYNTH_"
"""Environment variables with this prefix (progress display, data directory) reach the client
workers with every message, as they are in this process at the time of the exchange."""


class InProcessEngine:
    """The federation on this machine without Flower's runtime: node ``k + 1`` holds partition
    ``k``, and the clients answer in worker processes with one torch thread each.

    Args:
        workers: client worker processes; ``None`` (default) means one per core this process may
            use, and never more than there are clients. A client still busy at the timeout is
            reported as timed out and its worker is stopped (a new one takes its place).
    """

    name = "inprocess"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"engine.workers must be >= 1 (or null for one per core), got {workers}")
        self.workers = workers

    def run(self, config: Mapping[str, Any]) -> RunOutcome:
        """Run the experiment ``config`` (the resolved Hydra config as a plain dict)."""
        start = time.perf_counter()
        run_config = run_config_for(config)
        transport = InProcessTransport(run_config, workers=self.workers)
        with _one_torch_thread():  # the server's fit, too, gets one CPU like each client
            outcome = run_experiment(experiment_from_run_config(run_config), transport, engine=self.name)
        return outcome.finish(self.name, start)


class InProcessTransport:
    """Delivers each node's message to a client worker process and keeps the nodes' state.

    Args:
        run_config: the Flower run config of the experiment (every worker reads it as is).
        workers: the size of the worker pool (see :class:`InProcessEngine`).
    """

    def __init__(self, run_config: Mapping[str, str], *, workers: int | None = None) -> None:
        self._run_config = dict(run_config)
        num_clients = int(experiment_from_run_config(run_config)["dataset"]["num_clients"])
        self._node_configs = {
            k + 1: {"partition-id": k, "num-partitions": num_clients} for k in range(num_clients)
        }
        self._states = {node: encode(RecordDict()) for node in self._node_configs}
        self._pool = client_workers(workers or min(num_clients, available_cores()))

    def nodes(self) -> list[int]:
        """All nodes are always connected."""
        return sorted(self._node_configs)

    def exchange(
        self, action: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, RecordDict | ClientFailure]:
        """Deliver serialized contents to the nodes and wait at most ``timeout`` s for them all."""
        environment = {key: value for key, value in os.environ.items() if key.startswith(ENV_PREFIX)}
        requests = {
            node: ClientRequest(
                self._run_config, self._node_configs[node], action, encode(content), self._states[node], environment
            )
            for node, content in contents.items()
        }
        replies: dict[int, RecordDict | ClientFailure] = {}
        for node, answer in self._pool.answer(requests, timeout).items():
            if answer.error is not None:
                replies[node] = ClientFailure(node, answer.error)
            else:
                self._states[node] = answer.state
                replies[node] = decode(answer.reply)
        return replies


class ClientWorkers:
    """A pool of client processes (:class:`ClientProcess`); each answers one message at a time."""

    def __init__(self, size: int) -> None:
        self.size = size
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


def available_cores() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Limit torch's intra-op parallelism to one thread for the duration."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
