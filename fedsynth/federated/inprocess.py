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
sweep reuse them); they end with this process. The ``fedsynth`` command starts their fork server
as soon as its config is composed
(:func:`~fedsynth.federated.client_process.start_client_workers`) and runs its checks and this
engine in a client process of that server
(:func:`~fedsynth.federated.client_process.call_in_client_process`), where torch and the client
logic are imported already; that process's own fork server forks the clients.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterator, Mapping

import torch
from flwr.app import RecordDict

from fedsynth.federated.client_process import ClientRequest, client_workers, pool_size
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
        experiment = experiment_from_run_config(run_config_for(config))
        transport = InProcessTransport(int(experiment["dataset"]["num_clients"]), workers=self.workers)
        with _one_torch_thread():  # the server's fit, too, gets one CPU like each client
            outcome = run_experiment(experiment, transport, engine=self.name)
        return outcome.finish(self.name, start)


class InProcessTransport:
    """Delivers each node's message to a client worker process and keeps the nodes' state.

    Args:
        num_clients: the number of nodes, one client each.
        workers: the size of the worker pool (see :class:`InProcessEngine`).
    """

    def __init__(self, num_clients: int, *, workers: int | None = None) -> None:
        self._node_configs = {
            k + 1: {"partition-id": k, "num-partitions": num_clients} for k in range(num_clients)
        }
        self._states = {node: encode(RecordDict()) for node in self._node_configs}
        self._pool = client_workers(pool_size(workers, num_clients))

    def nodes(self) -> list[int]:
        """All nodes are always connected."""
        return sorted(self._node_configs)

    def exchange(
        self, message_type: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, RecordDict | ClientFailure]:
        """Deliver serialized contents to the nodes and wait at most ``timeout`` s for them all."""
        environment = {key: value for key, value in os.environ.items() if key.startswith(ENV_PREFIX)}
        requests = {
            node: ClientRequest(self._node_configs[node], message_type, encode(content), self._states[node], environment)
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


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Limit torch's intra-op parallelism to one thread for the duration."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
