"""The server side on Flower's runtime: the shared server logic over Flower's ``Grid``.

:class:`GridTransport` moves the method's message contents as Flower ``Message``s; :func:`serve`
runs one experiment on the federation behind a grid (the simulation engine's ServerApp and
:mod:`fedsynth.app`'s). The federation decides the number of clients (docs/architecture.md).
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
POLL_S = 0.25
"""How often the node table is read while SuperNodes join (Flower's ``Grid`` has no blocking wait)."""
SIMULATION_SETTLE_LIMIT_S = 30.0


class GridTransport:
    """A :class:`~fedsynth.federated.server_logic.Transport` over Flower's ``Grid``."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self._exchanges = 0
        self._simulated_nodes: int | None = None

    def wait_for_federation(self, experiment: Experiment) -> int:
        """The number of SuperNodes once they have joined: on Flower's simulation (which registers
        them all at once) when their number is non-zero and steady, else when ``dataset.num_clients``
        joined or ``federation.timeout_s`` passed; :class:`RunFailed` for a simulated federation
        smaller than ``federation.min_clients``."""
        simulated = is_simulated(self._grid)
        if simulated and self._simulated_nodes is not None:  # a later point of a shared simulation
            return self._simulated_nodes
        expected, min_clients = int(experiment.dataset["num_clients"]), experiment.federation.min_clients
        deadline = time.monotonic() + (SIMULATION_SETTLE_LIMIT_S if simulated else experiment.federation.timeout_s)
        count, previous = len(self.nodes()), -1
        while time.monotonic() < deadline and ((count == 0 or count != previous) if simulated else count < expected):
            time.sleep(POLL_S)
            previous, count = count, len(self.nodes())
        if not simulated:
            if count < expected:
                log.warning("%d of %d client nodes connected after %g s", count, expected, experiment.federation.timeout_s)
            return count
        if count < min_clients:
            raise RunFailed(
                f"the federation has {count} SuperNode(s) but federation.min_clients={min_clients}: start at least "
                f"{min_clients} (num-supernodes, e.g. flwr run . --federation-config 'num-supernodes={min_clients}') "
                "or lower federation.min_clients"
            )
        self._simulated_nodes = count
        return count

    def nodes(self) -> list[int]:
        """The connected nodes, sorted."""
        return sorted(self._grid.get_node_ids())

    def exchange(
        self, message_type: str, contents: Mapping[int, RecordDict], timeout: float
    ) -> dict[int, RecordDict | ClientFailure]:
        """Send one message per node and collect the replies that arrive within ``timeout``, each
        filed under the node its message was addressed to (by the id of the message it answers;
        an error reply for a lost node comes from the SuperLink's own id); replies to no message of
        this exchange are dropped."""
        from fedsynth.methods import ClientFailure  # torch: when a run starts

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
            if node is not None and node not in replies:
                failed = reply.has_error()
                replies[node] = ClientFailure(node, f"crashed: {error_summary(reply.error.reason)}") if failed else reply.content
        for node in contents:
            replies.setdefault(node, ClientFailure(node, f"no reply within {timeout:g} s"))
        return replies

    def _replies(self, messages: list[Message], timeout: float) -> list[Message]:
        """The replies to ``messages`` within ``timeout``: Flower's own ``Grid.send_and_receive``
        loop (push, then pull at the grid's interval), except that a reply saying a Ray client
        actor died ends the run at once (:class:`RunFailed`): Flower's simulation would hand the
        dead actor the next clients' messages too."""
        pending = set(self._grid.push_messages(messages))
        deadline = time.monotonic() + timeout
        received: list[Message] = []
        while pending:
            for reply in self._grid.pull_messages(list(pending)):
                if reply.has_error() and "ActorDiedError" in reply.error.reason:
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


def error_summary(reason: str) -> str:
    """A Flower error reply's reason, ``"<class 'Type'>:<'message'>"``, as ``"Type: message"`` on
    one line (of Ray's traceback, only the client's own message; of a message, its first line)."""
    match = re.fullmatch(r"<class '([^']+)'>:<'(.*)'>", reason.strip(), flags=re.DOTALL)
    if match is None:
        return _first_line(reason)
    kind, message = match.groups()
    return f"{kind.rsplit('.', 1)[-1]}: {_first_line(message.rsplit('occurred. Message: ', 1)[-1])}"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def serve(
    transport: GridTransport, experiment: Experiment, engine: str, run_timeout_s: float | None = None, point: int = 0
) -> RunOutcome:
    """Run ``experiment`` on the federation behind ``transport``: wait for its SuperNodes, then
    :func:`~fedsynth.federated.server_logic.run_experiment` (``point``: its number among the
    experiments the transport serves)."""
    from fedsynth.federated.server_logic import run_experiment  # torch: when a run starts

    num_clients = transport.wait_for_federation(experiment)
    log.info(
        "fedsynth: dataset=%s method=%s, %d clients (one per SuperNode)",
        experiment.dataset["name"], experiment.method.get("name", experiment.method["_target_"]), num_clients,
    )
    return run_experiment(experiment, transport, engine=engine, point=point, run_timeout_s=run_timeout_s)
