"""The ``fedsynth`` command: one federated experiment configured by Hydra (``conf/``).

    fedsynth                                    # defaults: synthetic data, single_shot, simulation
    fedsynth dataset=law_school_race engine=inprocess method.rho_o=100
    fedsynth -m method.rho_o=0,10,100           # a sweep, one results.json per point
    fedsynth --help                             # config groups, main keys, examples
    fedsynth --version                          # fedsynth's, Flower's and torch's versions

Every run writes ``results.json`` (atomically) into its Hydra output directory and prints its path.

Before any engine or Flower process starts, the whole experiment is checked
(:func:`fedsynth.checks.check_experiment_config`). A user error (a config value, the data, a run
that ends without enough usable clients, a component that dies) prints one line,
``fedsynth: error: <what, where, how to fix>``, and exits with code 2 (found before the run) or 1
(the run failed); set ``FEDSYNTH_TRACEBACK=1`` to see the traceback instead. SIGINT, SIGTERM and
SIGHUP stop every process the run started, then exit with 128 + the signal number.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from fedsynth.checks import ConfigError, check_and_run
from fedsynth.federated.client_process import call_in_client_process, start_client_workers
from fedsynth.federated.outcome import RunFailed
from fedsynth.io import write_json_atomic
from fedsynth.paths import data_directory, resolve_table_file, user_config_dir
from fedsynth.reporting.results import RESULTS_FILE, headline, results_record

log = logging.getLogger("fedsynth")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
"""The Hydra configs, top-level ``conf/`` of the repository (fedsynth is installed editable)."""
TRACEBACK_ENV = "FEDSYNTH_TRACEBACK"
"""Set to 1 to see the traceback of a user error instead of its one-line message."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """A stop signal arrived: unwinds like KeyboardInterrupt, through every ``finally`` that
    stops a process, and is caught by :func:`main` only."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: Any) -> NoReturn:
    raise Stopped(signum)


def fail(message: str, code: int, now: bool = False) -> NoReturn:
    """Print ``fedsynth: error: <message>`` (one line) and exit with ``code``; ``now``: without
    the interpreter's teardown, which would wait for a client thread still computing."""
    print(f"fedsynth: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    if now:
        os._exit(code)
    sys.exit(code)


def absolute_data_paths(config: dict[str, Any]) -> None:
    """Make ``data_dir`` and a table dataset's ``file`` absolute in place, by the data-directory
    rule (:mod:`fedsynth.paths`) and this process's working directory: every client, whatever its
    own working directory, then reads the same file."""
    directory = data_directory(config.get("data_dir"))
    config["data_dir"] = None if directory is None else str(directory)
    dataset = config["dataset"]
    if dataset.get("kind", "table") == "table" and dataset.get("file"):
        try:
            dataset["file"] = str(resolve_table_file(dataset["file"], directory, dataset.get("name", "?")))
        except FileNotFoundError as error:
            raise ConfigError(str(error)) from None


def run(cfg: DictConfig) -> Path:
    """Check the experiment ``cfg``, run it on its engine (:func:`fedsynth.checks.check_and_run`)
    and write ``results.json``; return its path. The metrics are logged before the file is
    written."""
    config = OmegaConf.to_container(cfg, resolve=True)
    in_process = start_client_workers(config)  # the in-process engine's fork server imports meanwhile
    absolute_data_paths(config)
    # the in-process engine's checks and server run in a client process, where torch is
    # imported already: this process imports no torch
    outcome, seconds = call_in_client_process(check_and_run, config) if in_process else check_and_run(config)
    record = results_record(config, outcome, seconds)
    target = Path(HydraConfig.get().runtime.output_dir) / RESULTS_FILE
    log.info("%s (%.1f s); results: %s", headline(record), record["wall_seconds"], target)
    for failure in outcome.failures:
        log.warning("client node %s failed: %s", failure["node"], failure["reason"])
    try:
        path = write_json_atomic(target, record)
    except OSError as err:
        raise RunFailed(f"cannot write {target}: {err.strerror or err}; the metrics are in the log above") from None
    print(path)
    return path


def versions_text() -> str:
    """``fedsynth --version``: the versions of fedsynth, Flower, torch and Hydra, one line."""
    from importlib.metadata import version

    import fedsynth

    return " ".join(
        [f"fedsynth {fedsynth.__version__}"]
        + [f"{name} {version(package)}" for name, package in (("Flower", "flwr"), ("torch", "torch"), ("Hydra", "hydra-core"))]
    )


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    """The Hydra application: :func:`run` the composed config, with the errors and signals of
    the module docstring."""
    if threading.current_thread() is threading.main_thread():  # a sweep worker's thread keeps its own
        for signum in STOP_SIGNALS:
            signal.signal(signum, _raise_stopped)
    try:
        run(cfg)
    except Stopped as stop:
        fail(f"stopped by {stop}; every process of the run was stopped", 128 + stop.signum, now=True)
    except ConfigError as err:  # the checks turn every config and data error into one
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        fail(err, 2)
    except RuntimeError as err:
        from fedsynth.methods import NotEnoughClients  # imports torch: only when needed

        if os.environ.get(TRACEBACK_ENV) == "1" or not isinstance(err, (RunFailed, NotEnoughClients)):
            raise
        fail(err, 1)


def main() -> None:
    """Entry point of the ``fedsynth`` console script: ``--version`` here, all else to Hydra."""
    if "--version" in sys.argv[1:]:
        print(versions_text())
        return
    user_config_dir()  # on Hydra's search path (conf/config.yaml): it must exist
    hydra_main()


if __name__ == "__main__":
    main()
