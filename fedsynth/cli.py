"""The ``fedsynth`` command: one federated experiment configured by Hydra (``conf/``).

    fedsynth                                    # defaults: synthetic data, single_shot, simulation
    fedsynth dataset=law_school_race engine=inprocess method.rho_o=100
    fedsynth -m method.rho_o=0,10,100           # a sweep, one results.json per point
    fedsynth --help                             # config groups, main keys, examples
    fedsynth --version                          # fedsynth's, Flower's and torch's versions

Every run writes ``results.json`` (atomically) into its own Hydra output folder, which no other
run may share (:class:`fedsynth.callbacks.OutputFolder`), and prints its path. It uses
:mod:`fedsynth.api` and nothing deeper.

Before any engine starts, the whole experiment is checked (:func:`fedsynth.api.check`; every
point of a sweep before the first runs, :class:`fedsynth.callbacks.SweepCheck`). Every user
error, Hydra's composition errors included (a key typo, an unknown option, a value of the wrong
type, bad override syntax), prints one line, ``fedsynth: error: <what, where, how to fix>``, and
exits with code 2; a run that fails (too few usable clients, a component that dies, its time
limit) exits with code 1. ``FEDSYNTH_TRACEBACK=1`` shows the traceback instead. SIGINT, SIGTERM
and SIGHUP stop every process the run started, then exit with 128 + the signal number; so does
SIGKILL, which no handler sees (:mod:`fedsynth.federated.lifeline`).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedsynth import api
from fedsynth.config import describe_omegaconf_error  # registers the structured config Hydra composes
from fedsynth.io import write_json_atomic
from fedsynth.paths import user_config_dir
from fedsynth.reporting.results import RESULTS_FILE, headline, results_record

log = logging.getLogger("fedsynth")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
"""The Hydra configs, top-level ``conf/`` of the repository (fedsynth is installed editable)."""
TRACEBACK_ENV = "FEDSYNTH_TRACEBACK"
"""Set to 1 to see the traceback of a user error instead of its one-line message."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """A stop signal arrived: unwinds like KeyboardInterrupt, through every ``finally`` that
    stops a process, and is caught by the command only."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_stopped(signum: int, frame: Any) -> NoReturn:
    """The stop signals' handler: raise :class:`Stopped`."""
    raise Stopped(signum)


def fail(message: object, code: int) -> NoReturn:
    """Print ``fedsynth: error: <message>`` (one line) and exit with ``code``."""
    print(f"fedsynth: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    sys.exit(code)


@contextlib.contextmanager
def one_line_errors(what: str = "run") -> Iterator[None]:
    """The block's user errors and stop signals as one line and an exit code: a stop signal
    (:class:`Stopped`) 128 + its number, after the engines let go of their processes; a failed
    run 1; any other user error (:func:`describe_error`) 2; anything else, or every error with
    ``FEDSYNTH_TRACEBACK=1``, raised."""
    try:
        yield
    except Stopped as stop:
        api.release()
        fail(f"stopped by {stop}; every process of the {what} was stopped", 128 + stop.signum)
    except Exception as error:
        message = describe_error(error)
        if message is None or os.environ.get(TRACEBACK_ENV) == "1":
            raise
        fail(message, 1 if isinstance(error, api.RunFailed) else 2)


def describe_error(error: BaseException) -> str | None:
    """One line for a user error, Hydra's and OmegaConf's included; ``None`` for anything else."""
    if isinstance(error, (api.ConfigError, api.RunFailed)):
        return str(error)
    if isinstance(error, MissingConfigException):
        return _missing_option(error)
    if isinstance(error, OverrideParseException):
        return f"{str(error).splitlines()[0]}; write overrides as KEY=VALUE (quote values with spaces)"
    cause = error.__cause__ if isinstance(error, HydraException) else error
    if isinstance(cause, OmegaConfBaseException):
        return f"{describe_omegaconf_error(cause)}; check the override"
    if isinstance(error, HydraException):
        return str(error).replace("\n", " ")
    return None


def _missing_option(error: MissingConfigException) -> str:
    """An unknown config group option: the nearest options, the built-in ones and the user's own
    (``$FEDSYNTH_CONFIG_DIR``) apart."""
    match = re.search(r"Could not find '([^']+)/([^'/]+)'", str(error))
    if match is None:
        return str(error).splitlines()[0]
    group, option = match.groups()
    built_in = sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))
    own = sorted(path.stem for path in (user_config_dir(create=False) / group).glob("*.yaml"))
    near = difflib.get_close_matches(option, built_in + own, n=3, cutoff=0.5)
    text = f"{group}={option}: no such option;"
    if near:
        text += f" did you mean {' or '.join(near)}?"
    text += f" built in: {', '.join(built_in)}"
    if own:
        text += f"; yours ({user_config_dir(create=False) / group}): {', '.join(own)}"
    return text


def run(cfg: DictConfig) -> Path:
    """Check the experiment ``cfg``, run it on its engine and write ``results.json``; return its
    path. The metrics are logged before the file is written."""
    engine = api.engine(cfg)  # first: the in-process engine's clients start while the checks run
    experiment = api.check(cfg)
    outcome = api.run(experiment, engine)
    config = {**OmegaConf.to_container(cfg, resolve=True), **experiment.to_dict()}  # the data paths absolute
    record = results_record(config, outcome, outcome.timings["wall_s"])
    target = Path(HydraConfig.get().runtime.output_dir) / RESULTS_FILE
    log.info("%s (%.1f s); results: %s", headline(record), record["wall_seconds"], target)
    for failure in outcome.failures:
        log.warning("client node %s failed: %s", failure["node"], failure["reason"])
    try:
        path = write_json_atomic(target, record)
    except OSError as error:
        raise api.RunFailed(f"cannot write {target}: {error.strerror or error}; the metrics are in the log above") from None
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
            signal.signal(signum, raise_stopped)
    with one_line_errors():
        run(cfg)


def main() -> None:
    """Entry point of the ``fedsynth`` console script: ``--version`` here, all else to Hydra,
    whose own errors (``HYDRA_FULL_ERROR``: raised, not printed) become one line here."""
    if "--version" in sys.argv[1:]:
        print(versions_text())
        return
    user_config_dir()  # on Hydra's search path (conf/config.yaml): it must exist
    os.environ["HYDRA_FULL_ERROR"] = "1"
    with one_line_errors():
        hydra_main()


if __name__ == "__main__":
    main()
