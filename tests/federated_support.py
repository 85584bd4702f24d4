"""Support for the federation tests: small experiments, and a method plugin that injects faults.

The plugin lives outside the package, as a third-party method would: the engines and the Flower
apps load it from ``method._target_`` alone (the simulation tests put this folder on PYTHONPATH).
"""

from __future__ import annotations

import os
import time

import numpy as np
from flwr.app import Array, RecordDict

from fedsynth import api
from fedsynth.data.types import ClientPartition
from fedsynth.methods.base import ARRAYS, Communicator, ServerResult, make_content
from fedsynth.methods.single_shot import SingleShot


SYNTHETIC_ROWS = 30
TINY = [
    "dataset=synthetic",
    "dataset.generator.num_rows=600",
    "method.k_max=3",
    f"method.synthetic_size={SYNTHETIC_ROWS}",
    "method.synthetic_labels=proportional",
]


def tiny_experiment(*overrides: str) -> api.Experiment:
    """A small synthetic experiment (3 clients, 3 outer iterations, N_s = 30), checked."""
    return api.check(api.compose([*TINY, *overrides]))


def faulty_experiment(
    faults: dict[str, str], *overrides: str, sleep_s: float = 0.0, warmup_timeout_s: float = 0.0
) -> api.Experiment:
    """The tiny experiment with 4 clients and :class:`FaultySingleShot` as the method."""
    experiment = tiny_experiment("dataset.num_clients=4", *overrides)
    experiment.method.update(
        {
            "_target_": "federated_support.FaultySingleShot",
            "faults": faults,
            "sleep_s": sleep_s,
            "warmup_timeout_s": warmup_timeout_s,
        }
    )
    return experiment


class FaultySingleShot(SingleShot):
    """:class:`SingleShot` whose clients misbehave on ``train`` as ``faults`` says.

    Args:
        faults: client id (as a string) -> ``"crash"`` (raise), ``"exit"`` (end the client's
            process with exit code 3), ``"sleep"`` (answer after ``sleep_s`` seconds) or
            ``"garbage"`` (reply with NaN features).
        sleep_s: how long a ``"sleep"`` client waits before answering.
        warmup_timeout_s: if > 0, a ``query`` round with this timeout comes first, so that the
            clients are up and warm when ``train`` is timed with ``federation.timeout_s`` (a
            simulated client's first message can take tens of seconds on a loaded machine).
        **kwargs: passed to :class:`SingleShot`.
    """

    name = "faulty_single_shot"

    def __init__(
        self,
        *,
        faults: dict[str, str] | None = None,
        sleep_s: float = 0.0,
        warmup_timeout_s: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.faults = {int(client): fault for client, fault in (faults or {}).items()}
        self.sleep_s = float(sleep_s)
        self.warmup_timeout_s = float(warmup_timeout_s)

    def run_server(self, comm: Communicator) -> ServerResult:
        """The optional warm-up round, then :meth:`SingleShot.run_server`."""
        if self.warmup_timeout_s > 0:
            comm.send("query", {node: make_content() for node in comm.nodes()}, timeout=self.warmup_timeout_s)
        return super().run_server(comm)

    def query(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Answer the warm-up ``query`` with an empty content."""
        return make_content()

    def train(self, content: RecordDict, data: ClientPartition, state: dict[str, np.ndarray]) -> RecordDict:
        """Misbehave if this client has a fault, else act as :class:`SingleShot`."""
        fault = self.faults.get(data.client_id)
        if fault == "crash":
            raise RuntimeError(f"injected crash on client {data.client_id}")
        if fault == "exit":
            os._exit(3)
        if fault == "sleep":
            time.sleep(self.sleep_s)
        reply = super().train(content, data, state)
        if fault == "garbage":
            rows = reply[ARRAYS]
            rows["x"] = Array(np.full_like(rows["x"].numpy(), np.nan))
        return reply
