"""The simulation engine: the Flower apps on Flower's simulation engine (Ray, one CPU process per
client), launched as ``flwr run`` launches them.

Each run gets its own ``flower-superlink --simulation`` on a free 127.0.0.1 port and a private
``FLWR_HOME``; ``flwr run --stream`` submits the app (its start-up overlaps the SuperLink's) and
writes the run's log, the engine polls the run's status through the SuperLink's Control API, and
the ServerApp writes the outcome to a file the engine reads back as soon as it appears. Everything
started is then stopped by PID, Ray's processes included.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import tomli_w

from fedsynth.federated import processes
from fedsynth.federated.experiment import APP_ROOT, run_config_for
from fedsynth.federated.outcome import OUTCOME_FILE, RunFailed, RunOutcome, failure_path

CONNECTION = "fedsynth-sim"
WATCHED = {"flwr-simulation": "flwr-simulation", "ray::ClientAppActor": "Ray client actor"}
"""Processes of the run whose death ends it: command-line pattern -> name in the message."""


class SimulationEngine:
    """The Flower apps on Flower's simulation engine, one CPU process per client.

    Args:
        client_cpus: CPUs Ray reserves for each simulated client.
        run_timeout_s: the longest the run may take, from its submission to its end.
        app_dir: the Flower app (the folder with ``pyproject.toml``); default: this checkout.
        workdir: a folder to keep the run's files in (Flower state, SuperLink and run logs,
            ``outcome.json``); default: a temporary folder, removed afterwards. Ray's own files
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
        if client_cpus < 1 or not run_timeout_s > 0:
            raise ValueError(f"client_cpus must be >= 1 and run_timeout_s > 0, got {client_cpus} and {run_timeout_s}")
        self.client_cpus = client_cpus
        self.run_timeout_s = run_timeout_s
        self.app_dir = Path(app_dir) if app_dir is not None else APP_ROOT
        self.workdir = Path(workdir).resolve() if workdir is not None else None
        if not (self.app_dir / "pyproject.toml").is_file():
            raise FileNotFoundError(f"no Flower app (pyproject.toml) in {self.app_dir}")

    def run(self, config: Mapping[str, Any]) -> RunOutcome:
        """Run the experiment ``config`` (the resolved Hydra config as a plain dict); raise
        :class:`~fedsynth.federated.outcome.RunFailed` with the server's one-line reason (or the
        component that died), ``RuntimeError`` with the run's log for any other failure."""
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
        return outcome.finish(self.name, start)

    def _run_in(self, workdir: Path, ray_tmpdir: Path, config: Mapping[str, Any]) -> RunOutcome:
        """Start a SuperLink and ``flwr run`` together, wait for the run, read the outcome."""
        env = processes.flower_env(workdir, ray_tmpdir)
        results_path = workdir / OUTCOME_FILE
        results_path.unlink(missing_ok=True)  # a kept workdir's earlier outcome is not this run's
        failure_path(results_path).unlink(missing_ok=True)
        run_config_file = workdir / "run_config.toml"
        run_config_file.write_text(tomli_w.dumps(run_config_for(config, results_path)), encoding="utf-8")
        num_clients = int(config["dataset"]["num_clients"])
        address = f"{processes.LOCALHOST}:{processes.free_port()}"
        processes.write_connection(env, CONNECTION, address)
        app = processes.stage_app(self.app_dir, workdir / "app")

        superlink_log, run_log = workdir / "superlink.log", workdir / "run.log"
        superlink = processes.start_process(
            [
                processes.flower_command("flower-superlink"),
                "--insecure",
                "--simulation",
                "--host", processes.LOCALHOST,
                "--port", address.rsplit(":", 1)[1],
                "--disable-runtime-dependency-installation",
            ],
            env,
            superlink_log,
        )
        runner = None
        tracker = processes.SessionTracker([superlink], watch_names=WATCHED)
        try:
            health = f"http://{address}/health"
            runner = processes.start_flwr_run(
                app,
                CONNECTION,
                run_config_file,
                env,
                run_log,
                federation_config=f"num-supernodes={num_clients} client-resources-num-cpus={self.client_cpus}",
                ready_url=health,
            )
            processes.wait_until_ready(health, superlink, superlink_log)
            run_id = processes.started_run_id(runner, run_log)
            follower = processes.LogFollower(run_log, keep=processes.APP_LINE.search, on_line=processes.show_app_line)
            with follower, processes.control_client(address) as control:
                status = processes.wait_for_run(
                    control, run_id, self.run_timeout_s, watch=[superlink], result_file=results_path, tracker=tracker
                )
            if failure_path(results_path).is_file():
                raise RunFailed(failure_path(results_path).read_text(encoding="utf-8").strip())
            if processes.run_failed(status, results_path):
                processes.wait_for_exit(runner, timeout=15.0)  # the log stream delivers the rest
                raise RuntimeError(
                    f"simulation run {run_id} ended with status {status!r}; its log:\n"
                    f"{processes.tail(run_log)}\n--- superlink log ---\n{processes.tail(superlink_log, 30)}"
                )
            return RunOutcome.read_json(results_path)
        finally:  # the SuperLink keeps nothing worth a graceful stop: its state is in memory
            tracker.update()
            if runner is not None:
                processes.stop_process(runner, grace_s=0)
            processes.stop_process(superlink, grace_s=0, sessions=tracker.sessions)
