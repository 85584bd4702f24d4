"""The simulation engine: the Flower apps on Flower's simulation runtime (Ray, one CPU process per
client), through Flower's Python entry point ``flwr.simulation.run_simulation``.

A run happens in a :class:`~fedsynth.federated.lifeline.Child`: Ray's services and client actors
start there and end with it, and with this process (SIGKILL included); each outcome comes back as
a value. A sweep whose points are known up front (:mod:`hydra_plugins.fedsynth_launcher`) hands
the whole list to one ServerApp (:func:`shared_simulation`), so Ray and the client actors start
once for the sweep.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import time
from typing import Callable, Iterator, Sequence

from fedsynth.config import Experiment
from fedsynth.federated.lifeline import Child, scratch_dir
from fedsynth.outcome import RunOutcome

RAY_SETTINGS = {"RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0", "FLWR_TELEMETRY_ENABLED": "0"}
"""Every client's progress line shown (Ray merges lines that differ in numbers only), no usage
statistics, no telemetry."""
_SHARED: contextvars.ContextVar[_Shared | None] = contextvars.ContextVar("shared_simulation", default=None)


class SimulationEngine:
    """The Flower apps on Flower's simulation runtime, one CPU process per client.

    Args:
        client_cpus: CPUs Ray reserves for each simulated client.
        run_timeout_s: the longest a run (a sweep point) may take, first message to last reply.
    """

    name = "simulation"

    def __init__(self, client_cpus: int = 1, run_timeout_s: float = 86400.0) -> None:
        if client_cpus < 1 or not run_timeout_s > 0:
            raise ValueError(f"client_cpus must be >= 1 and run_timeout_s > 0, got {client_cpus} and {run_timeout_s}")
        self.client_cpus, self.run_timeout_s = client_cpus, run_timeout_s

    def run(self, experiment: Experiment) -> RunOutcome:
        """Run ``experiment`` (the next point of a :func:`shared_simulation`, if it is that
        one); the ServerApp's failures come back as they were raised there."""
        start = time.perf_counter()
        shared = _SHARED.get()
        if shared is not None and shared.pending[:1] == [experiment] and shared.settings == (self.client_cpus, self.run_timeout_s):
            shared.pending.pop(0)
            outcome = _next_outcome(shared.child)  # a later point's time is the simulation's own: no start-up
            return outcome.finish(self.name, start) if len(shared.pending) == shared.points - 1 else outcome
        with Child(_simulate, ([experiment], self.client_cpus, self.run_timeout_s), name="the Flower simulation") as child:
            return _next_outcome(child).finish(self.name, start)


def _next_outcome(child: Child) -> RunOutcome:
    """The simulation's next outcome, or the ServerApp's failure raised as soon as it happens
    (``run_simulation`` returns only once every client's task has ended)."""
    outcome = child.next()
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class _Shared:
    """One simulation serving a list of experiments in order (``pending``: those not yet taken)."""

    def __init__(self, experiments: Sequence[Experiment], engine: SimulationEngine) -> None:
        self.pending, self.points = list(experiments), len(experiments)
        self.settings = (engine.client_cpus, engine.run_timeout_s)
        self.child = Child(_simulate, (list(experiments), *self.settings), name="the Flower simulation")


@contextlib.contextmanager
def shared_simulation(experiments: Sequence[Experiment], engine: SimulationEngine) -> Iterator[None]:
    """Within the block, :meth:`SimulationEngine.run` of ``experiments`` (in this order, all with
    the same number of clients) takes their outcomes from one simulation that runs them all."""
    shared = _Shared(experiments, engine)
    token = _SHARED.set(shared)
    try:
        yield
    finally:
        _SHARED.reset(token)
        shared.child.close()


def _simulate(arguments: tuple[list[Experiment], int, float], send: Callable[[RunOutcome | Exception], None]) -> None:
    """(In the run's child) one ``run_simulation`` whose ServerApp runs the experiments in turn and
    sends each outcome; a point that fails sends its exception at once and ends it."""
    experiments, client_cpus, run_timeout_s = arguments
    os.environ.update(RAY_SETTINGS)
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from fedsynth.federated.client_app import app as client_app
    from fedsynth.federated.server_app import GridTransport, serve

    logging.getLogger("fedsynth").handlers.clear()  # this process's records go to the caller
    logging.getLogger("fedsynth").propagate = True
    logging.getLogger("flwr").setLevel(logging.WARNING)
    # run_simulation's deprecation notice: docs/deployment.md says so
    logging.getLogger("flwr").addFilter(lambda record: "DEPRECATED FEATURE" not in str(record.msg))
    server_app = ServerApp()

    @server_app.main()
    def main(grid: object, context: object) -> None:
        transport = GridTransport(grid)
        for point, experiment in enumerate(experiments):
            start = time.perf_counter()
            try:
                outcome = serve(transport, experiment, engine="simulation", run_timeout_s=run_timeout_s, point=point)
            except Exception as error:  # to the caller now: run_simulation waits for the other clients' tasks
                send(error)
                raise
            send(outcome.finish("simulation", start))

    with scratch_dir() as folder:
        run_simulation(
            server_app,
            client_app,
            num_supernodes=int(experiments[0].dataset["num_clients"]),
            backend_config={
                "client_resources": {"num_cpus": client_cpus, "num_gpus": 0},
                "init_args": {"_temp_dir": str(folder), "_system_config": {"worker_niceness": 0}},
            },
        )
