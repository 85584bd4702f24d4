"""The simulation engine: the Flower apps on Flower's simulation engine (Ray, one CPU process per
client), launched as ``flwr run`` launches them.

Runs go to a :class:`Federation`: a ``flower-superlink --simulation`` on a free 127.0.0.1 port with
a private ``FLWR_HOME``. A single run starts one and stops it afterwards; its ``flwr-simulation``
starts Ray itself. The points of a Hydra multirun on the basic launcher (one after another in this
process) share one, with a Ray cluster (``ray start --head``) that each point's ``flwr-simulation``
attaches to through ``RAY_ADDRESS``; it is started on first use and stopped when the process exits,
on a stop signal, or after a failed point (the next point starts a fresh one). Per run, ``flwr run --stream``
submits the app and writes the run's log, the engine polls the run's status through the
SuperLink's Control API, and the ServerApp writes the outcome to a file the engine reads back as
soon as it appears. Everything started is stopped by PID, Ray's processes included.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import tomli_w

from fedsynth.federated import processes
from fedsynth.federated.experiment import APP_ROOT, run_config_for
from fedsynth.federated.outcome import OUTCOME_FILE, RunOutcome, failure_path

CONNECTION = "fedsynth-sim"
WATCHED = {"flwr-simulation": "flwr-simulation", "ray::ClientAppActor": "Ray client actor"}
"""Processes of a run whose death ends it: command-line pattern -> name in the message."""
RAY_READY = "Ray runtime started."
"""The line ``ray start --head`` logs once its cluster takes drivers."""
LOG_DRAIN_S = 10.0
"""How long a finished run's log stream may take to deliver its last lines, at most."""
LOG_QUIET_S = 1.0
"""A run's log is complete once it has not grown for this long (Flower uploads a process's log
every 0.2 s and streams it every 0.5 s)."""


class Federation:
    """A Flower simulation federation on 127.0.0.1 that serves runs one after another: a
    ``flower-superlink --simulation`` and the Ray cluster its runs attach to. Both start at
    construction (in parallel); :meth:`wait_until_ready` waits for them, :meth:`stop` ends every
    process either started, by PID, and removes their files.

    Args:
        folder: where to keep the Flower state and the SuperLink's and Ray head's logs; default:
            a temporary folder, removed by :meth:`stop`. Ray's own files always go to a short
            temporary folder (its socket paths are length-limited).
        ray_head: start a Ray cluster for the runs to attach to (worth it when several runs
            share the federation: ``ray start --head`` costs more than the ``ray.init()`` a
            lone run's ``flwr-simulation`` does itself).
    """

    def __init__(self, folder: Path | None = None, *, ray_head: bool = True) -> None:
        self.keeps_folder = folder is not None
        self.folder = folder if folder is not None else Path(tempfile.mkdtemp(prefix="fedsynth-federation-"))
        self.ray_tmpdir = Path(tempfile.mkdtemp(prefix="ray-"))
        self.address = f"{processes.LOCALHOST}:{processes.free_port()}"
        self.env = processes.flower_env(self.folder, self.ray_tmpdir)
        processes.write_connection(self.env, CONNECTION, self.address)
        self.superlink_log, self.ray_log = self.folder / "superlink.log", self.folder / "ray.log"
        self.ray = None
        if ray_head:
            self.env["RAY_ADDRESS"] = f"{processes.LOCALHOST}:{processes.free_port()}"
            self.ray = self._start_ray_head()
        self.superlink = processes.start_process(
            [
                processes.flower_command("flower-superlink"),
                "--insecure",
                "--simulation",
                "--host", processes.LOCALHOST,
                "--port", self.address.rsplit(":", 1)[1],
                "--disable-runtime-dependency-installation",
            ],
            self.env,
            self.superlink_log,
        )
        self.sessions: set[int] = set()
        self.runs = 0

    def _start_ray_head(self):
        """Start the Ray cluster (``ray start --head --block``) on 127.0.0.1 at ``RAY_ADDRESS``."""
        return processes.start_process(
            [
                processes.flower_command("ray"),
                "start", "--head", "--block", "--disable-usage-stats", "--include-dashboard=false",
                "--node-ip-address", processes.LOCALHOST,
                "--port", self.env["RAY_ADDRESS"].rsplit(":", 1)[1],
                "--ray-client-server-port", str(processes.free_port()),
                "--dashboard-agent-listen-port", str(processes.free_port()),
                "--temp-dir", str(self.ray_tmpdir),
            ],
            self.env,
            self.ray_log,
        )

    @property
    def health_url(self) -> str:
        """The SuperLink's health endpoint."""
        return f"http://{self.address}/health"

    def wait_until_ready(self, timeout: float = 120.0) -> None:
        """Wait until the SuperLink answers and the Ray cluster takes drivers; raise naming the
        one that exited first, with the end of its log."""
        processes.wait_until_ready(self.health_url, self.superlink, self.superlink_log, timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.ray is not None and RAY_READY not in self.ray_log.read_text(encoding="utf-8", errors="replace"):
            if self.ray.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start --head did not start (exit code {self.ray.returncode}):\n{processes.tail(self.ray_log)}")
            time.sleep(0.1)

    @property
    def components(self) -> list:
        """The long-lived processes: the SuperLink and the Ray head (``ray start --block``), if any."""
        return [process for process in (self.superlink, self.ray) if process is not None]

    def alive(self) -> bool:
        """Whether every long-lived process still runs."""
        return all(process.poll() is None for process in self.components)

    def stop(self) -> None:
        """Stop every process of the federation (nothing in it is worth a graceful stop: the
        SuperLink's state is in memory) and remove its temporary files."""
        for process in self.components:
            processes.stop_process(process, grace_s=0, sessions=self.sessions)
        shutil.rmtree(self.ray_tmpdir, ignore_errors=True)
        if not self.keeps_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


_kept: Federation | None = None
"""The federation shared by the points of a sweep in this process (see :func:`kept_federation`)."""


def kept_federation() -> Federation:
    """The federation kept for the points of a sweep: the running one, or a new one."""
    global _kept
    if _kept is not None and not _kept.alive():
        stop_kept_federation()
    if _kept is None:
        _kept = Federation()
    return _kept


def current_federation() -> Federation | None:
    """The federation kept now, if any (starts none)."""
    return _kept


def stop_kept_federation() -> None:
    """Stop the kept federation, if there is one (at process exit, on a stop signal, after a
    failed point)."""
    global _kept
    federation, _kept = _kept, None
    if federation is not None:
        federation.stop()


atexit.register(stop_kept_federation)


def in_sequential_sweep() -> bool:
    """Whether this process runs a point of a Hydra multirun whose points run one after another
    in it (the basic launcher): then its points can share one federation."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return False
    if not HydraConfig.initialized():
        return False
    hydra_config = HydraConfig.get()
    launcher = str(hydra_config.launcher.get("_target_", ""))
    return hydra_config.mode == RunMode.MULTIRUN and launcher.endswith("BasicLauncher")


class SimulationEngine:
    """The Flower apps on Flower's simulation engine, one CPU process per client.

    Args:
        client_cpus: CPUs Ray reserves for each simulated client.
        run_timeout_s: the longest the run may take, from its submission to its end.
        app_dir: the Flower app (the folder with ``pyproject.toml``); default: this checkout.
        workdir: a folder to keep the run's files in (Flower state, SuperLink, Ray head and run
            logs, ``outcome.json``); default: a temporary folder, removed afterwards. A kept
            federation's own files (Flower state, SuperLink and Ray head logs) stay in its
            temporary folder.
        keep_federation: serve this run from the federation kept for a sweep (started on first
            use, stopped at process exit); ``None`` (default): when the run is a point of a
            Hydra multirun on the basic launcher.
    """

    name = "simulation"

    def __init__(
        self,
        client_cpus: int = 1,
        run_timeout_s: float = 86400.0,
        app_dir: str | Path | None = None,
        workdir: str | Path | None = None,
        keep_federation: bool | None = None,
    ) -> None:
        if client_cpus < 1 or not run_timeout_s > 0:
            raise ValueError(f"client_cpus must be >= 1 and run_timeout_s > 0, got {client_cpus} and {run_timeout_s}")
        self.client_cpus = client_cpus
        self.run_timeout_s = run_timeout_s
        self.app_dir = Path(app_dir) if app_dir is not None else APP_ROOT
        self.workdir = Path(workdir).resolve() if workdir is not None else None
        self.keep_federation = keep_federation
        if not (self.app_dir / "pyproject.toml").is_file():
            raise FileNotFoundError(f"no Flower app (pyproject.toml) in {self.app_dir}")

    def run(self, config: Mapping[str, Any]) -> RunOutcome:
        """Run the experiment ``config`` (the resolved Hydra config as a plain dict); raise
        :class:`~fedsynth.federated.outcome.RunFailed` with the server's one-line reason (or the
        component that died), ``RuntimeError`` with the run's log for any other failure."""
        start = time.perf_counter()
        keep = in_sequential_sweep() if self.keep_federation is None else self.keep_federation
        workdir = self.workdir or Path(tempfile.mkdtemp(prefix="fedsynth-sim-"))
        workdir.mkdir(parents=True, exist_ok=True)
        federation = kept_federation() if keep else Federation(self.workdir, ray_head=False)
        try:
            outcome = self._run_on(federation, workdir, config)
        except BaseException:  # a failed point, or a stop signal: nothing of the federation is kept
            if keep:
                stop_kept_federation()
            raise
        finally:
            if not keep:
                federation.stop()
            if self.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        return outcome.finish(self.name, start)

    def _run_on(self, federation: Federation, workdir: Path, config: Mapping[str, Any]) -> RunOutcome:
        """Submit the run with ``flwr run`` (its start-up overlaps the federation's), wait for
        it, read the outcome."""
        results_path = workdir / OUTCOME_FILE
        results_path.unlink(missing_ok=True)  # a kept workdir's earlier outcome is not this run's
        failure_path(results_path).unlink(missing_ok=True)
        run_config_file = workdir / "run_config.toml"
        run_config_file.write_text(tomli_w.dumps(run_config_for(config, results_path)), encoding="utf-8")
        num_clients = int(config["dataset"]["num_clients"])
        app = processes.stage_app(self.app_dir, workdir / "app")
        run_log = workdir / "run.log"
        run_log.unlink(missing_ok=True)
        # the processes of an earlier run that are still ending are not this run's
        tracker = processes.SessionTracker(federation.components, watch_names=WATCHED)
        tracker.start_watching()
        runner = processes.start_flwr_run(
            app,
            CONNECTION,
            run_config_file,
            federation.env,
            run_log,
            federation_config=f"num-supernodes={num_clients} client-resources-num-cpus={self.client_cpus}",
            ready_url=federation.health_url,
        )
        try:
            federation.wait_until_ready()
            run_id = processes.started_run_id(runner, run_log)
            follower = processes.LogFollower(run_log, keep=processes.APP_LINE.search, on_line=processes.show_app_line)
            with follower, processes.control_client(federation.address) as control:
                status = processes.wait_for_run(
                    control,
                    run_id,
                    self.run_timeout_s,
                    watch=federation.components,
                    result_file=results_path,
                    tracker=tracker,
                )
                # the clients' last progress lines may still be on their way when the outcome is
                # written: `flwr run --stream` delivers Flower's log in batches (every 0.5 s)
                processes.wait_until_quiet(
                    run_log, LOG_QUIET_S, LOG_DRAIN_S, done=lambda: runner.poll() is not None
                )
            outcome = processes.read_run_outcome(
                status,
                results_path,
                runner,
                run_log,
                context=f"\n--- superlink log ---\n{processes.tail(federation.superlink_log, 30)}",
            )
            federation.runs += 1
            return outcome
        finally:
            tracker.update()
            federation.sessions |= tracker.sessions
            processes.stop_process(runner, grace_s=0)
