"""The in-process engine: the Flower apps' client and server logic in this process.

Every message is serialized with Flower's serde and each client answers in its own thread: no
Flower runtime, for fast sweeps and unit tests. It builds the run config with
:func:`~fedsynth.federated.experiment.run_config_for` and reads it back with
:func:`~fedsynth.federated.experiment.experiment_from_run_config`, as the Flower apps do, so it
gives the same numbers as :class:`~fedsynth.federated.simulation.SimulationEngine` for the same
seed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from typing import Any, Iterator, Mapping

import torch
from flwr.app import RecordDict

from fedsynth.federated.client_logic import answer_message
from fedsynth.federated.experiment import experiment_from_run_config, run_config_for
from fedsynth.federated.messages import decode, encode
from fedsynth.federated.outcome import RunOutcome
from fedsynth.federated.server_logic import run_experiment
from fedsynth.methods import ClientFailure


class InProcessEngine:
    """The federation in this process: node ``k + 1`` holds partition ``k``.

    Each exchange runs the clients in parallel threads with torch limited to one thread, as
    each simulated client gets one CPU; a client still busy at the timeout is reported as timed
    out and its late reply is dropped.
    """

    name = "inprocess"

    def run(self, config: Mapping[str, Any]) -> RunOutcome:
        """Run the experiment ``config`` (the resolved Hydra config as a plain dict)."""
        start = time.perf_counter()
        run_config = run_config_for(config)
        transport = InProcessTransport(run_config)
        with _one_torch_thread():  # the server's fit, too, gets one CPU like each client
            outcome = run_experiment(experiment_from_run_config(run_config), transport, engine=self.name)
        return outcome.finish(self.name, start)


class InProcessTransport:
    """Direct calls to :func:`~fedsynth.federated.client_logic.answer_message`, one thread per
    node and message."""

    def __init__(self, run_config: Mapping[str, str]) -> None:
        self._run_config = dict(run_config)
        num_clients = int(experiment_from_run_config(run_config)["dataset"]["num_clients"])
        self._node_configs = {
            k + 1: {"partition-id": k, "num-partitions": num_clients} for k in range(num_clients)
        }
        self._states = {node: RecordDict() for node in self._node_configs}
        self._locks = {node: threading.Lock() for node in self._node_configs}

    def nodes(self) -> list[int]:
        """All nodes are always connected."""
        return sorted(self._node_configs)

    def exchange(
        self, action: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, RecordDict | ClientFailure]:
        """Deliver serialized contents to the nodes' threads and wait at most ``timeout`` s."""
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(contents)))
        futures = {
            node: executor.submit(self._deliver, node, action, encode(content))
            for node, content in contents.items()
        }
        concurrent.futures.wait(futures.values(), timeout=timeout)
        executor.shutdown(wait=False, cancel_futures=True)
        replies: dict[int, RecordDict | ClientFailure] = {}
        for node, future in futures.items():
            if not future.done():
                replies[node] = ClientFailure(node, f"no reply within {timeout:g} s")
            elif future.exception() is not None:
                error = future.exception()
                replies[node] = ClientFailure(node, f"crashed: {error}")
            else:
                replies[node] = decode(future.result())
        return replies

    def _deliver(self, node: int, action: str, data: bytes) -> bytes:
        """One node answers one message; a node handles its messages one at a time."""
        with self._locks[node]:
            reply = answer_message(
                action,
                decode(data),
                self._run_config,
                self._node_configs[node],
                self._states[node],
            )
        return encode(reply)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Limit torch's intra-op parallelism to one thread for the duration."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
