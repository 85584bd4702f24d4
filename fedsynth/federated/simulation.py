"""The simulation engine: the Flower apps on Flower's simulation engine (Ray, one CPU process per
client), launched as ``flwr run`` launches them.

Runs go to a :class:`Federation`: a ``flower-superlink --simulation`` on a free 127.0.0.1 port with
a private ``FLWR_HOME``. A single run starts one and stops it afterwards. Per run, ``flwr run
--stream`` submits the app and writes the run's log, the engine polls the run's status through
the SuperLink's Control API, and the ServerApp writes the outcome to a file the engine reads back
as soon as it appears.

The points of a Hydra multirun on the basic launcher (one after another in this process) share
one federation and one Flower run (a :class:`FlowerRun`): the first point starts the run, whose
run config names an inbox folder; every later point is a file in that inbox
(:func:`~fedsynth.federated.experiment.submit_point`), which the ServerApp runs on the same
SuperNodes, so ``flwr-simulation``, Ray and the client actors (torch imported, data loaded) start
once per sweep. A point with another number of clients (or of CPUs per client) ends the run and
starts another. The federation is started on first use and stopped when the process exits, on a
stop signal, or after a failed point (the next point starts a fresh one). Everything started is
stopped by PID, Ray's processes included.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import tomli_w

from fedsynth.federated import processes
from fedsynth.federated.experiment import APP_ROOT, close_inbox, run_config_for, submit_point
from fedsynth.federated.outcome import OUTCOME_FILE, RunOutcome, failure_path

CONNECTION = "fedsynth-sim"
WATCHED = {"flwr-simulation": "flwr-simulation", "ray::ClientAppActor": "Ray client actor"}
"""Processes of a run whose death ends it: command-line pattern -> name in the message."""
LOG_DRAIN_S = 10.0
"""How long a point's log may take to arrive once its outcome is written, at most (Flower uploads
a process's log every 0.2 s and streams it every 0.5 s)."""
RUN_END_S = 60.0
"""How long a serving run may take to end once its inbox is closed."""


@dataclass
class FlowerRun:
    """A submitted Flower run: of one experiment, or of a kept federation's sweep, whose points
    it serves from its inbox.

    Attributes:
        run_id: Flower's id of the run.
        runner: the ``flwr run --stream`` process that follows its log.
        run_log: the log it writes.
        inbox: the folder later points go to (``None``: the run has one experiment).
        shape: what its SuperNodes fix: (number of clients, CPUs per client, app folder).
        tracker: the run's processes (``flwr-simulation``, the client actors), watched across points.
        points: the points submitted so far (the next point's number).
    """

    run_id: int
    runner: Any
    run_log: Path
    inbox: Path | None
    shape: tuple[int, int, str]
    tracker: processes.SessionTracker
    points: int = 1

    def stop_following(self) -> set[int]:
        """Stop the ``flwr run --stream`` process and return the sessions the run's processes
        have had (the federation stops them with its own)."""
        self.tracker.update()
        processes.stop_process(self.runner, grace_s=0)
        return self.tracker.sessions


class Federation:
    """A Flower simulation federation on 127.0.0.1 that serves runs one after another: a
    ``flower-superlink --simulation``, started at construction; :meth:`wait_until_ready` waits
    for it, :meth:`stop` ends it and every process its runs started, by PID, and removes its
    files.

    Args:
        folder: where to keep the Flower state, the SuperLink's log and a serving run's files;
            default: a temporary folder, removed by :meth:`stop`. Ray's own files always go to a
            short temporary folder (its socket paths are length-limited).
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.keeps_folder = folder is not None
        self.folder = folder if folder is not None else Path(tempfile.mkdtemp(prefix="fedsynth-federation-"))
        self.ray_tmpdir = Path(tempfile.mkdtemp(prefix="ray-"))
        self.address = f"{processes.LOCALHOST}:{processes.free_port()}"
        self.env = processes.flower_env(self.folder, self.ray_tmpdir)
        processes.write_connection(self.env, CONNECTION, self.address)
        self.superlink_log = self.folder / "superlink.log"
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
        self.runs = 0  # Flower runs submitted
        self.points = 0  # experiments served
        self.serving: FlowerRun | None = None  # the run that serves a sweep's points

    @property
    def health_url(self) -> str:
        """The SuperLink's health endpoint."""
        return f"http://{self.address}/health"

    def wait_until_ready(self, timeout: float = 120.0) -> None:
        """Wait until the SuperLink answers; raise with the end of its log if it exits first."""
        processes.wait_until_ready(self.health_url, self.superlink, self.superlink_log, timeout=timeout)

    @property
    def components(self) -> list:
        """The long-lived processes: the SuperLink."""
        return [self.superlink]

    def alive(self) -> bool:
        """Whether every long-lived process still runs."""
        return all(process.poll() is None for process in self.components)

    def end_serving(self) -> None:
        """End the serving run, if any: close its inbox and wait until Flower has finished it
        (its Ray instance shut down); raise ``RuntimeError`` if it does not end in time."""
        serving, self.serving = self.serving, None
        if serving is None or serving.inbox is None:
            return
        close_inbox(serving.inbox)
        try:
            processes.wait_for_exit(serving.runner, timeout=RUN_END_S)  # `--stream` ends with the run
        finally:
            self.sessions |= serving.stop_following()
        with processes.control_client(self.address) as control:
            processes.wait_for_run(control, serving.run_id, RUN_END_S, watch=self.components)

    def stop(self) -> None:
        """Stop every process of the federation (nothing in it is worth a graceful stop: the
        SuperLink's state is in memory) and remove its temporary files."""
        if self.serving is not None:
            self.sessions |= self.serving.stop_following()
            self.serving = None
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
        workdir: a folder to keep the run's files in (Flower state, SuperLink and run logs,
            ``outcome.json``); default: a temporary folder, removed afterwards. On a kept
            federation only the point's ``outcome.json`` goes there: the federation's files
            (Flower state, SuperLink log, the serving run's log and inbox) stay in its
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
        results_path = workdir / OUTCOME_FILE
        results_path.unlink(missing_ok=True)  # a kept workdir's earlier outcome is not this run's
        failure_path(results_path).unlink(missing_ok=True)
        try:
            if keep:
                outcome = self._serve_point(kept_federation(), config, results_path)
            else:
                outcome = self._run_alone(Federation(self.workdir), workdir, config, results_path)
        except BaseException:  # a failed point, or a stop signal: nothing of the federation is kept
            if keep:
                stop_kept_federation()
            raise
        finally:
            if self.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        return outcome.finish(self.name, start)

    def _run_alone(self, federation: Federation, workdir: Path, config: Mapping[str, Any], results_path: Path) -> RunOutcome:
        """One Flower run on a federation of its own, stopped afterwards."""
        try:
            run = self._start_run(federation, workdir, config, results_path, inbox=None)
            try:
                return self._wait_for_point(federation, run, results_path)
            finally:
                federation.sessions |= run.stop_following()
        finally:
            federation.stop()

    def _serve_point(self, federation: Federation, config: Mapping[str, Any], results_path: Path) -> RunOutcome:
        """One point of a sweep on the kept federation: a file in the inbox of its serving run,
        or the first point of a new serving run (when there is none, or its SuperNodes do not
        fit this point)."""
        serving = federation.serving
        if serving is not None and (serving.shape != self._shape(config) or serving.runner.poll() is not None):
            federation.end_serving()
            serving = None
        if serving is None:
            rundir = Path(tempfile.mkdtemp(prefix="run-", dir=federation.folder))
            serving = federation.serving = self._start_run(federation, rundir, config, results_path, inbox=rundir / "inbox")
        else:
            submit_point(serving.inbox, serving.points, config, results_path)
            serving.points += 1
        return self._wait_for_point(federation, serving, results_path)

    def _start_run(
        self, federation: Federation, rundir: Path, config: Mapping[str, Any], results_path: Path, inbox: Path | None
    ) -> FlowerRun:
        """Submit a run of ``config`` with ``flwr run`` (its start-up overlaps the federation's)
        and wait until it has an id; with an ``inbox``, the run serves later points from it."""
        if inbox is not None:
            inbox.mkdir(mode=0o700)
        run_config_file = rundir / "run_config.toml"
        run_config_file.write_text(tomli_w.dumps(run_config_for(config, results_path, inbox)), encoding="utf-8")
        num_clients = int(config["dataset"]["num_clients"])
        app = processes.stage_app(self.app_dir, rundir / "app")
        run_log = rundir / "run.log"
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
        except BaseException:
            processes.stop_process(runner, grace_s=0)
            raise
        federation.runs += 1
        return FlowerRun(run_id, runner, run_log, inbox, self._shape(config), tracker)

    def _shape(self, config: Mapping[str, Any]) -> tuple[int, int, str]:
        """What the SuperNodes of a run for ``config`` fix: see :attr:`FlowerRun.shape`."""
        return int(config["dataset"]["num_clients"]), self.client_cpus, str(self.app_dir)

    def _wait_for_point(self, federation: Federation, run: FlowerRun, results_path: Path) -> RunOutcome:
        """Wait for the outcome of the run's current point, showing its log lines; read it."""
        start_offset = run.run_log.stat().st_size if run.run_log.exists() else 0
        follower = processes.LogFollower(
            run.run_log, keep=processes.APP_LINE.search, on_line=processes.show_app_line, offset=start_offset
        )
        with follower, processes.control_client(federation.address) as control:
            status = processes.wait_for_run(
                control,
                run.run_id,
                self.run_timeout_s,
                watch=federation.components,
                result_file=results_path,
                tracker=run.tracker,
            )
            # the point's log lines may still be on their way when the outcome is written: they
            # are all there once the ServerApp's summary, its last line, is (the clients' lines
            # come through the same stream, logged before their last reply)
            if results_path.is_file():
                processes.wait_for_text(
                    run.run_log,
                    f"results: {results_path.resolve()}",
                    start_offset,
                    LOG_DRAIN_S,
                    done=lambda: run.runner.poll() is not None,
                )
        outcome = processes.read_run_outcome(
            status,
            results_path,
            run.runner,
            run.run_log,
            context=f"\n--- superlink log ---\n{processes.tail(federation.superlink_log, 30)}",
        )
        federation.points += 1
        return outcome
