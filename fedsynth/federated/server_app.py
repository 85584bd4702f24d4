"""The Flower ServerApp: the shared server logic over Flower's ``Grid``.

The experiment comes from the run config (see :mod:`fedsynth.federated.experiment`); a run
whose config names an ``inbox`` then serves the further experiments that arrive there, one after
another, on the same SuperNodes (the points of a sweep: one Flower start-up for all). The
federation decides the number of clients: on Flower's simulation engine every SuperNode is one
client (``num-supernodes``), and a federation smaller than ``federation.min_clients`` fails at once;
in a deployment the server waits up to ``federation.timeout_s`` for ``dataset.num_clients``
SuperNodes, then goes on with those connected. The outcome is summarized in the run's log and
written atomically to ``results-path``, by default :func:`default_results_path`. A failing method
(too few usable clients) raises, which makes Flower mark the run ``finished:failed``.

The server logic (torch, pandas: ≈ 2.5 s of imports) is imported when the run starts, not with
this module: Flower's simulation process loads the ServerApp and the ClientApp one after the
other under one lock before it starts Ray, and with both modules light those imports overlap
Ray's start instead of preceding it.
"""

from __future__ import annotations

import re
import time
from logging import ERROR, INFO, WARNING
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from flwr.app import Context, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp
from flwr.superlink.grid.inmemory_grid import InMemoryGrid
from flwr.supercore.utils import get_flwr_home

from fedsynth.federated.app_logging import forward_logs_to_flower
from fedsynth.federated.experiment import experiment_from_run_config, next_point
from fedsynth.federated.outcome import OUTCOME_FILE

if TYPE_CHECKING:
    from fedsynth.methods import ClientFailure

app = ServerApp()
forward_logs_to_flower()


class GridTransport:
    """A :class:`~fedsynth.federated.server_logic.Transport` over Flower's ``Grid``."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self._exchanges = 0
        self._simulated_nodes: int | None = None

    def wait_for_federation(self, experiment: Mapping[str, Any]) -> int:
        """Wait for the federation's SuperNodes and return how many there are (see the module
        docstring); raise :class:`FederationError` for a simulated federation smaller than
        ``federation.min_clients``."""
        min_clients = int(experiment["federation"]["min_clients"])
        if isinstance(self._grid, InMemoryGrid):  # Flower's simulation registers all nodes at once
            if self._simulated_nodes is None:
                self._simulated_nodes = self._settled_node_count()
            count = self._simulated_nodes
            if count < min_clients:
                raise FederationError(
                    f"the federation has {count} SuperNode(s) but federation.min_clients={min_clients}: "
                    f"start at least {min_clients} (num-supernodes, e.g. flwr run . "
                    f"--federation-config 'num-supernodes={min_clients}') or lower federation.min_clients"
                )
            return count
        expected, timeout = int(experiment["dataset"]["num_clients"]), float(experiment["federation"]["timeout_s"])
        deadline = time.monotonic() + timeout
        while len(self.nodes()) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        if len(self.nodes()) < expected:
            log(WARNING, "%d of %d client nodes connected after %g s", len(self.nodes()), expected, timeout)
        return len(self.nodes())

    def _settled_node_count(self, poll_s: float = 0.25, limit_s: float = 30.0) -> int:
        """The number of nodes once it is non-zero and the same on two polls in a row."""
        deadline = time.monotonic() + limit_s
        previous = -1
        while True:
            count = len(self.nodes())
            if (count > 0 and count == previous) or time.monotonic() > deadline:
                return count
            previous = count
            time.sleep(poll_s)

    def nodes(self) -> list[int]:
        """The connected nodes, sorted."""
        return sorted(self._grid.get_node_ids())

    def exchange(
        self, message_type: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, RecordDict | ClientFailure]:
        """Send one message per node and collect the replies that arrive within ``timeout``.

        A reply is filed under the node its message was addressed to (found by the id of the
        message it answers), never under its sender: an error reply the SuperLink writes for a
        lost node comes from the SuperLink's own id. Replies to no message of this exchange are
        dropped."""
        from fedsynth.methods import ClientFailure  # see the module docstring

        self._exchanges += 1
        messages = [
            Message(content, dst_node_id=node, message_type=message_type, group_id=str(self._exchanges))
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


class FederationError(RuntimeError):
    """A federation this experiment cannot run on (too few SuperNodes)."""


def default_results_path(run_id: int) -> Path:
    """Where the ServerApp writes the outcome when the run config's ``results-path`` is empty
    (a plain ``flwr run .``): ``$FLWR_HOME/fedsynth-results/<run id>/outcome.json`` (``FLWR_HOME``
    defaults to ``~/.flwr``)."""
    return get_flwr_home() / "fedsynth-results" / str(run_id) / OUTCOME_FILE


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
    """Run the experiment of this run's config and report its outcome; with an ``inbox`` in the
    run config, then every further point that arrives there, one after another, until the inbox
    is closed (:func:`~fedsynth.federated.experiment.next_point`)."""
    transport = GridTransport(grid)
    results_path = Path(str(context.run_config.get("results-path", "")) or default_results_path(context.run_id))
    run_point(transport, experiment_from_run_config(context.run_config), results_path, point=0)
    inbox = str(context.run_config.get("inbox", ""))
    number = 1
    while inbox and (point := next_point(Path(inbox), number)) is not None:
        run_point(transport, *point, point=number)
        number += 1


def run_point(transport: GridTransport, experiment: Mapping[str, Any], results_path: Path, point: int) -> None:
    """Run one experiment on the federation and write its outcome to ``results_path``; a failure
    (too few SuperNodes or usable clients) is written beside it and raised, which ends the run."""
    from fedsynth.federated.outcome import failure_path
    from fedsynth.federated.server_logic import run_experiment  # see the module docstring
    from fedsynth.methods import NotEnoughClients

    try:
        num_clients = transport.wait_for_federation(experiment)
        log(
            INFO,
            "fedsynth: dataset=%s method=%s, %d clients (one per SuperNode); results will go to %s",
            experiment["dataset"]["name"], experiment["method"].get("name", experiment["method"]["_target_"]),
            num_clients, results_path,
        )
        outcome = run_experiment(experiment, transport, engine="flower", point=point)
    except (FederationError, NotEnoughClients) as error:  # the engine reports this line, Flower marks the run failed
        log(ERROR, "fedsynth run failed: %s", error)
        failure = failure_path(results_path)
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(f"{error}\n", encoding="utf-8")
        raise
    log(INFO, "fedsynth: %s", outcome.summary(results_path))
    outcome.write_json(results_path)
