"""The Flower ServerApp: the shared server logic over Flower's ``Grid``.

The experiment comes from the run config (see :mod:`fedsynth.federated.experiment`); the outcome
is logged and, when ``results-path`` is set, written there atomically. A failing method (too few
usable clients) raises, which makes Flower mark the run ``finished:failed``.
"""

from __future__ import annotations

import json
import time
from logging import INFO
from typing import Mapping

from flwr.app import Context, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from fedsynth.federated.experiment import experiment_from_run_config
from fedsynth.federated.server_logic import run_experiment
from fedsynth.methods import ClientFailure

app = ServerApp()


class GridTransport:
    """A :class:`~fedsynth.federated.server_logic.Transport` over Flower's ``Grid``."""

    def __init__(self, grid: Grid, expected_nodes: int, connect_timeout: float) -> None:
        self._grid = grid
        self._expected_nodes = expected_nodes
        self._connect_timeout = connect_timeout
        self._exchanges = 0

    def nodes(self) -> list[int]:
        """The connected nodes; waits up to the connect timeout for all expected nodes (in a
        deployment, SuperNodes may still be connecting when the run starts)."""
        deadline = time.monotonic() + self._connect_timeout
        nodes = sorted(self._grid.get_node_ids())
        while len(nodes) < self._expected_nodes and time.monotonic() < deadline:
            time.sleep(0.5)
            nodes = sorted(self._grid.get_node_ids())
        return nodes

    def exchange(
        self, action: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, RecordDict | ClientFailure]:
        """Send one message per node and collect the replies that arrive within ``timeout``."""
        self._exchanges += 1
        messages = [
            Message(content, dst_node_id=node, message_type=action, group_id=str(self._exchanges))
            for node, content in contents.items()
        ]
        replies: dict[int, RecordDict | ClientFailure] = {}
        for reply in self._grid.send_and_receive(messages, timeout=timeout):
            node = reply.metadata.src_node_id
            replies[node] = (
                ClientFailure(node, f"crashed: {reply.error.reason}") if reply.has_error() else reply.content
            )
        for node in contents:
            replies.setdefault(node, ClientFailure(node, f"no reply within {timeout:g} s"))
        return replies


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment of this run's config and report its outcome."""
    experiment = experiment_from_run_config(context.run_config)
    transport = GridTransport(
        grid,
        expected_nodes=int(experiment["dataset"]["num_clients"]),
        connect_timeout=float(experiment["federation"]["timeout_s"]),
    )
    outcome = run_experiment(experiment, transport, engine="flower")
    summary = {key: getattr(outcome, key) for key in ("metrics", "failures", "bytes_down", "bytes_up", "timings")}
    log(INFO, "fedsynth outcome: %s", json.dumps(summary, default=str))
    results_path = str(context.run_config.get("results-path", ""))
    if results_path:
        outcome.write_json(results_path)
