"""The server side on Flower's runtime: the shared server logic over Flower's ``Grid``.

:class:`GridTransport` moves the method's message contents as Flower ``Message``s;
:func:`serve` runs one experiment on the federation behind a grid. The simulation engine calls
it from the ServerApp it gives ``flwr.simulation.run_simulation``; ``flwr run`` and a deployment
run the app of :mod:`fedsynth.app`. The federation decides the number of clients: on Flower's
simulation every SuperNode is one client, and a federation smaller than
``federation.min_clients`` fails at once; in a deployment the server waits up to
``federation.timeout_s`` for ``dataset.num_clients`` SuperNodes, then goes on with those
connected. A failing method (too few usable clients) raises, which makes Flower mark the run
failed.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Mapping

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fedsynth.config import Experiment
from fedsynth.flower import is_simulated
from fedsynth.outcome import RunFailed

if TYPE_CHECKING:
    from fedsynth.outcome import RunOutcome
    from fedsynth.methods import ClientFailure

log = logging.getLogger(__name__)


class GridTransport:
    """A :class:`~fedsynth.federated.server_logic.Transport` over Flower's ``Grid``."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self._exchanges = 0
        self._simulated_nodes: int | None = None

    def wait_for_federation(self, experiment: Experiment) -> int:
        """Wait for the federation's SuperNodes and return how many there are (see the module
        docstring); raise :class:`FederationError` for a simulated federation smaller than
        ``federation.min_clients``."""
        min_clients = experiment.federation.min_clients
        if is_simulated(self._grid):  # Flower's simulation registers all nodes at once
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
        expected, timeout = int(experiment.dataset["num_clients"]), experiment.federation.timeout_s
        deadline = time.monotonic() + timeout
        while len(self.nodes()) < expected and time.monotonic() < deadline:  # SuperNodes join over time
            time.sleep(0.5)
        if len(self.nodes()) < expected:
            log.warning("%d of %d client nodes connected after %g s", len(self.nodes()), expected, timeout)
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
        dropped. A Ray client actor that died ends the run (:class:`RunFailed`): Flower's
        simulation would hand the dead actor the next clients' messages too."""
        from fedsynth.methods import ClientFailure  # see the module docstring

        self._exchanges += 1
        messages = [
            Message(content, dst_node_id=node, message_type=message_type, group_id=str(self._exchanges))
            for node, content in contents.items()
        ]
        replies: dict[int, RecordDict | ClientFailure] = {}
        received = self._replies(messages, timeout)
        addressed = {message.metadata.message_id: message.metadata.dst_node_id for message in messages}  # set by the push
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


    def _replies(self, messages: list[Message], timeout: float) -> list[Message]:
        """The replies to ``messages`` that arrive within ``timeout``: Flower's own
        ``Grid.send_and_receive`` loop (push, then pull at the grid's interval), except that it
        stops at the first reply saying a Ray client actor died (:class:`RunFailed`), instead
        of waiting for every other client to answer first."""
        pending = set(self._grid.push_messages(messages))
        deadline = time.monotonic() + timeout
        received: list[Message] = []
        while pending:
            for reply in self._grid.pull_messages(list(pending)):
                if reply.has_error() and "ActorDiedError" in reply.error.reason:  # Flower would reuse the dead actor
                    pid = re.search(r"pid: (\d+)", reply.error.reason)
                    raise RunFailed(
                        f"Ray client actor (pid {pid.group(1) if pid else '?'}) exited during the run; the simulation cannot go on"
                    )
                pending.discard(reply.metadata.reply_to_message_id)
                received.append(reply)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(getattr(self._grid, "pull_interval", 0.1))
        return received


class FederationError(RuntimeError):
    """A federation this experiment cannot run on (too few SuperNodes)."""


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


def serve(
    transport: GridTransport, experiment: Experiment, engine: str, run_timeout_s: float | None = None, point: int = 0
) -> RunOutcome:
    """Run ``experiment`` on the federation behind ``transport``: wait for its SuperNodes, then
    the server side of :func:`~fedsynth.federated.server_logic.run_experiment` (``point``: its
    number among the experiments the transport serves)."""
    from fedsynth.federated.server_logic import run_experiment  # torch: when a run starts

    num_clients = transport.wait_for_federation(experiment)
    log.info(
        "fedsynth: dataset=%s method=%s, %d clients (one per SuperNode)",
        experiment.dataset["name"], experiment.method.get("name", experiment.method["_target_"]), num_clients,
    )
    return run_experiment(experiment, transport, engine=engine, point=point, run_timeout_s=run_timeout_s)
