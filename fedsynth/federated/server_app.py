"""The Flower ServerApp: the shared server logic over Flower's ``Grid``.

The experiment comes from the run config (see :mod:`fedsynth.federated.experiment`); the outcome
is logged and, when ``results-path`` is set, written there atomically. A failing method (too few
usable clients) raises, which makes Flower mark the run ``finished:failed``.

The server logic (torch, pandas: ≈ 2.5 s of imports) is imported when the run starts, not with
this module: Flower's simulation process loads the ServerApp and the ClientApp one after the
other under one lock before it starts Ray, and with both modules light those imports overlap
Ray's start instead of preceding it.
"""

from __future__ import annotations

import json
import re
import time
from logging import ERROR, INFO, WARNING
from typing import TYPE_CHECKING, Mapping

from flwr.app import Context, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from fedsynth.federated.experiment import experiment_from_run_config

if TYPE_CHECKING:
    from fedsynth.methods import ClientFailure

app = ServerApp()


class GridTransport:
    """A :class:`~fedsynth.federated.server_logic.Transport` over Flower's ``Grid``."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self._exchanges = 0

    def wait_for_nodes(self, expected: int, timeout: float) -> None:
        """Wait up to ``timeout`` seconds until ``expected`` nodes are connected (in a deployment,
        SuperNodes may still be connecting when the run starts); go on with fewer after that."""
        deadline = time.monotonic() + timeout
        while len(self.nodes()) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        if len(self.nodes()) < expected:
            log(WARNING, "%d of %d client nodes connected after %g s", len(self.nodes()), expected, timeout)

    def nodes(self) -> list[int]:
        """The connected nodes, sorted."""
        return sorted(self._grid.get_node_ids())

    def exchange(
        self, action: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, RecordDict | ClientFailure]:
        """Send one message per node and collect the replies that arrive within ``timeout``.

        A reply is filed under the node its message was addressed to (found by the id of the
        message it answers), never under its sender: an error reply the SuperLink writes for a
        lost node comes from the SuperLink's own id. Replies to no message of this exchange are
        dropped."""
        from fedsynth.methods import ClientFailure  # see the module docstring

        self._exchanges += 1
        messages = [
            Message(content, dst_node_id=node, message_type=action, group_id=str(self._exchanges))
            for node, content in contents.items()
        ]
        replies: dict[int, RecordDict | ClientFailure] = {}
        received = list(self._grid.send_and_receive(messages, timeout=timeout))
        addressed = {message.metadata.message_id: message.metadata.dst_node_id for message in messages}
        for reply in received:
            node = addressed.get(reply.metadata.reply_to_message_id)
            if node is None or node in replies:
                continue
            replies[node] = (
                ClientFailure(node, f"crashed: {error_summary(reply.error.reason)}")
                if reply.has_error()
                else reply.content
            )
        for node in contents:
            replies.setdefault(node, ClientFailure(node, f"no reply within {timeout:g} s"))
        return replies


def error_summary(reason: str) -> str:
    """A Flower error reply's reason, ``"<class 'Type'>:<'message'>"``, as ``"Type: message"``
    (in simulation the message is Ray's traceback: only the client's own message is kept), on
    one line: the first line of the message (Ray's details of a dead actor fill many)."""
    match = re.fullmatch(r"<class '([^']+)'>:<'(.*)'>", reason.strip(), flags=re.DOTALL)
    if match is None:
        return _first_line(reason)
    kind, message = match.groups()
    marker = "occurred. Message: "
    if marker in message:
        message = message.rsplit(marker, 1)[1]
    return f"{kind.rsplit('.', 1)[-1]}: {_first_line(message)}"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment of this run's config and report its outcome."""
    from fedsynth.federated.outcome import failure_path
    from fedsynth.federated.server_logic import run_experiment  # see the module docstring
    from fedsynth.methods import NotEnoughClients

    experiment = experiment_from_run_config(context.run_config)
    transport = GridTransport(grid)
    transport.wait_for_nodes(int(experiment["dataset"]["num_clients"]), float(experiment["federation"]["timeout_s"]))
    results_path = str(context.run_config.get("results-path", ""))
    try:
        outcome = run_experiment(experiment, transport, engine="flower")
    except NotEnoughClients as error:  # the engine reports this line, Flower marks the run failed
        log(ERROR, "fedsynth run failed: %s", error)
        if results_path:
            failure_path(results_path).write_text(f"{error}\n", encoding="utf-8")
        raise
    summary = {key: getattr(outcome, key) for key in ("metrics", "failures", "bytes_down", "bytes_up", "timings")}
    log(INFO, "fedsynth outcome: %s", json.dumps(summary, default=str))
    if results_path:
        outcome.write_json(results_path)
