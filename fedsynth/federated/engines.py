"""Engines: run one experiment (a plain config dict) and return its :class:`RunOutcome`.

* :class:`SimulationEngine` runs the Flower apps on Flower's simulation engine (Ray, one CPU
  process per client): its own ``flower-superlink --simulation`` on a free 127.0.0.1 port, then
  ``flwr run``; the ServerApp writes the outcome to a file the engine reads back.
* :class:`InProcessEngine` runs the same client and server logic in this process, with every
  message serialized with Flower's serde and each client answering in its own thread: no Flower
  runtime, for fast sweeps and unit tests.

Both build the run config with :func:`~fedsynth.federated.experiment.run_config_for` and both
sides read it back with :func:`~fedsynth.federated.experiment.experiment_from_run_config`, so
they see the same experiment, and both give the same numbers for the same seed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import tomli_w
import torch
from flwr.app import RecordDict

from fedsynth.federated import processes
from fedsynth.federated.client_logic import handle_client_message
from fedsynth.federated.experiment import APP_ROOT, experiment_from_run_config, run_config_for
from fedsynth.federated.messages import decode, encode
from fedsynth.federated.outcome import RunOutcome
from fedsynth.federated.server_logic import run_experiment
from fedsynth.methods import ClientFailure


def _finish(outcome: RunOutcome, engine: str, start: float) -> RunOutcome:
    """Stamp the engine's name and the wall time (and the overhead it implies) on an outcome."""
    outcome.engine = engine
    outcome.timings["wall_s"] = time.perf_counter() - start
    outcome.timings["overhead_s"] = outcome.timings["wall_s"] - outcome.timings["compute_s"]
    return outcome


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
        return _finish(outcome, self.name, start)


class InProcessTransport:
    """Direct calls to :func:`handle_client_message`, one thread per node and message."""

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
                replies[node] = ClientFailure(node, f"crashed: {type(error).__name__}: {error}")
            else:
                replies[node] = decode(future.result())
        return replies

    def _deliver(self, node: int, action: str, data: bytes) -> bytes:
        """One node answers one message; a node handles its messages one at a time."""
        with self._locks[node]:
            reply = handle_client_message(
                action,
                decode(data),
                experiment_from_run_config(self._run_config),
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


class SimulationEngine:
    """The Flower apps on Flower's simulation engine, one CPU process per client.

    Args:
        client_cpus: CPUs Ray reserves for each simulated client.
        run_timeout_s: the longest ``flwr run`` (submission, the run, its log stream) may take.
        app_dir: the Flower app (the folder with ``pyproject.toml``); default: this checkout.
        workdir: a folder to keep the run's files in (Flower state, SuperLink and run logs,
            ``results.json``); default: a temporary folder, removed afterwards. Ray's own files
            always go to a short temporary folder (its socket paths are length-limited).
    """

    name = "simulation"

    def __init__(
        self,
        client_cpus: int = 1,
        run_timeout_s: float = 86400.0,
        app_dir: str | Path | None = None,
        workdir: str | Path | None = None,
    ) -> None:
        self.client_cpus = client_cpus
        self.run_timeout_s = run_timeout_s
        self.app_dir = Path(app_dir) if app_dir is not None else APP_ROOT
        self.workdir = Path(workdir).resolve() if workdir is not None else None
        if not (self.app_dir / "pyproject.toml").is_file():
            raise FileNotFoundError(f"no Flower app (pyproject.toml) in {self.app_dir}")

    def run(self, config: Mapping[str, Any]) -> RunOutcome:
        """Run the experiment ``config``; raise ``RuntimeError`` with the run's log if it fails."""
        start = time.perf_counter()
        workdir = self.workdir or Path(tempfile.mkdtemp(prefix="fedsynth-sim-"))
        workdir.mkdir(parents=True, exist_ok=True)
        ray_tmpdir = Path(tempfile.mkdtemp(prefix="ray-"))
        try:
            outcome = self._run_in(workdir, ray_tmpdir, config)
        finally:
            shutil.rmtree(ray_tmpdir, ignore_errors=True)
            if self.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        return _finish(outcome, self.name, start)

    def _run_in(self, workdir: Path, ray_tmpdir: Path, config: Mapping[str, Any]) -> RunOutcome:
        """Start a SuperLink, run the app on it, check the run's status, read the outcome."""
        env = processes.flower_env(workdir, ray_tmpdir)
        results_path = workdir / "results.json"
        run_config_file = workdir / "run_config.toml"
        run_config_file.write_text(tomli_w.dumps(run_config_for(config, results_path)), encoding="utf-8")
        num_clients = int(config["dataset"]["num_clients"])

        port = processes.free_port()
        superlink_log = workdir / "superlink.log"
        superlink = processes.start_process(
            [
                processes.flower_command("flower-superlink"),
                "--insecure",
                "--simulation",
                "--host", processes.LOCALHOST,
                "--port", str(port),
                "--disable-runtime-dependency-installation",
            ],
            env,
            superlink_log,
        )
        try:
            address = f"{processes.LOCALHOST}:{port}"
            processes.wait_until_ready(f"http://{address}/health", superlink, superlink_log)
            processes.write_connection(env, "fedsynth-sim", address)
            run_log = workdir / "run.log"
            run_id = processes.flwr_run(
                processes.stage_app(self.app_dir, workdir / "app"),
                "fedsynth-sim",
                run_config_file,
                env,
                run_log,
                timeout=self.run_timeout_s,
                federation_config=f"num-supernodes={num_clients} client-resources-num-cpus={self.client_cpus}",
            )
            status = processes.run_status("fedsynth-sim", run_id, env)
            if status != "finished:completed" or not results_path.is_file():
                raise RuntimeError(
                    f"simulation run {run_id} ended with status {status!r}; its log:\n"
                    f"{processes.tail(run_log)}\n--- superlink log ---\n{processes.tail(superlink_log, 30)}"
                )
            return RunOutcome.read_json(results_path)
        finally:
            processes.stop_process(superlink)
