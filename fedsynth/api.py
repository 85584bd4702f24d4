"""fedsynth's public API: compose an experiment, check it, run it, get its :class:`RunOutcome`.

    from fedsynth import api

    config = api.compose(["dataset=law_school_race", "engine=inprocess"])  # conf/ and overrides
    experiment = api.check(config)             # ConfigError: one line naming the key, file, column
    outcome = api.run(experiment, api.engine(config))   # RunFailed: one line saying why

The ``fedsynth`` command, ``fedsynth-deploy``, the Flower ServerApp (:mod:`fedsynth.app`) and the
tests use these and nothing deeper. :func:`check` checks everything before anything starts:
every config value (by Hydra's structured configs and the settings of the ``method`` class), the
dataset spec, the method against its sensitive attribute's groups, the data file, the client split,
N_s against each client's rows; it uses the code the clients run, so a client meets no error the
command could have seen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Mapping, Protocol, Sequence

from fedsynth.config import Experiment, build, experiment_from_mapping
from fedsynth.federated.experiment import APP_ROOT, overrides_of, parse_experiment
from fedsynth.outcome import RunFailed, RunOutcome
from fedsynth.paths import data_directory, resolve_table_file

__all__ = [
    "ConfigError", "Engine", "Experiment", "InProcessEngine", "RunFailed", "RunOutcome", "SimulationEngine",
    "check", "compose", "engine", "experiment_of_run_config", "release", "run", "run_on_grid",
]
_ENGINES = {
    "InProcessEngine": "fedsynth.federated.inprocess",
    "SimulationEngine": "fedsynth.federated.simulation",
}


def __getattr__(name: str) -> Any:
    """The engines (``conf/engine``), imported on first use: the in-process one imports torch."""
    if name not in _ENGINES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_ENGINES[name]), name)

log = logging.getLogger("fedsynth")


class ConfigError(ValueError):
    """A configuration or data error found before the run; the message is one line."""


class Engine(Protocol):
    """Runs a checked experiment: ``conf/engine`` (in-process, Flower simulation)."""

    name: str

    def run(self, experiment: Experiment) -> RunOutcome:
        """The experiment's outcome; :class:`RunFailed` when the run fails."""


def compose(overrides: Sequence[str] = ()) -> Any:
    """``conf/config.yaml`` with Hydra ``overrides`` (``DictConfig``), as the command composes it
    (Hydra's compose API; its exceptions pass through)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from fedsynth.paths import user_config_dir

    user_config_dir()  # on Hydra's search path (conf/config.yaml): it must exist
    with initialize_config_dir(str(APP_ROOT / "conf"), version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides))


def check(config: Mapping[str, Any], split: bool = True) -> Experiment:
    """The checked :class:`Experiment` of a composed config (or of a plain mapping of its keys):
    raise :class:`ConfigError` with one line on the first problem. The data paths come back
    absolute (by the data-directory rule of :mod:`fedsynth.paths`), so every client, whatever
    its working directory, reads the same file. Without ``split``, the client split is left to
    the clients (a Flower federation whose SuperNodes decide the number of clients)."""
    from fedsynth.data import DataError, DatasetSpec  # torch, pandas: only when checking
    from fedsynth.methods import build_method

    try:
        experiment = experiment_from_mapping(config)
        spec = DatasetSpec.from_config(experiment.dataset)
    except (ValueError, DataError) as error:
        raise ConfigError(str(error)) from None
    directory = data_directory(experiment.data_dir)
    experiment.data_dir = None if directory is None else str(directory)
    if spec.kind == "table":
        try:
            experiment.dataset["file"] = str(resolve_table_file(spec.file, directory, spec.name))
        except FileNotFoundError as error:
            raise ConfigError(str(error)) from None
    if experiment.federation.min_clients > spec.num_clients:
        raise ConfigError(
            f"federation.min_clients={experiment.federation.min_clients}: more than the {spec.num_clients} clients "
            "of dataset.num_clients; lower it or raise dataset.num_clients"
        )
    try:
        method = build_method(experiment.method)
    except ValueError as error:
        raise ConfigError(f"{error}; fix it in the method.* overrides") from None
    try:
        method.check_groups(spec.num_groups)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if experiment.method.get("synthetic_labels") == "copy" and experiment.method.get("synthetic_size") != "full":
        raise ConfigError(
            "method.synthetic_labels=copy: needs method.synthetic_size=full (N_s = N); "
            "use balanced or proportional with an integer N_s"
        )
    if split:
        _check_split(spec, experiment)
    return experiment


def _check_split(spec: Any, experiment: Experiment) -> None:
    """N_s against each client's training rows of the split the clients will make."""
    partition = experiment.partition
    key = json.dumps([experiment.dataset, dataclasses.asdict(partition), experiment.seed, experiment.data_dir], sort_keys=True)
    rows, client, test_rows, tested = _split_sizes(key, spec)
    if test_rows > experiment.federation.max_test_rows:
        raise ConfigError(
            f"federation.max_test_rows={experiment.federation.max_test_rows}: client {tested} has {test_rows} test "
            "rows, whose evaluation the server would reject; raise federation.max_test_rows"
        )
    size = experiment.method.get("synthetic_size")
    if isinstance(size, int) and not isinstance(size, bool) and size > rows:
        raise ConfigError(
            f"method.synthetic_size={size}: client {client} has only {rows} training rows (N_s <= N); "
            "lower method.synthetic_size"
        )


_SPLITS: dict[str, tuple[int, int, int, int]] = {}
"""The split sizes (:func:`_split_sizes`) of each data configuration checked in this process: a
sweep's points share a few."""


def _split_sizes(key: str, spec: Any) -> tuple[int, int, int, int]:
    """Load the dataset as the clients will and split it (once per data configuration): the
    training rows and id of the smallest client, the test rows and id of the largest test part;
    :class:`ConfigError` for a data error."""
    if key not in _SPLITS:
        from fedsynth.data import DataError, load_dataset, partition_clients

        _, partition, seed, data_dir = json.loads(key)
        try:
            clients = partition_clients(load_dataset(spec, data_dir), spec.num_clients, seed=seed, **partition)
        except DataError as error:
            raise ConfigError(str(error)) from None
        smallest = min(clients, key=lambda client: len(client.train))
        tested = max(clients, key=lambda client: len(client.test))
        _SPLITS[key] = (len(smallest.train), smallest.client_id, len(tested.test), tested.client_id)
    return _SPLITS[key]


def engine(config: Mapping[str, Any], start: bool = True) -> Engine:
    """The engine of a composed config's ``engine`` section; :class:`ConfigError` for a bad one.
    With ``start``, an engine that keeps processes between runs starts them now, in the
    background (the in-process engine's clients: their imports overlap :func:`check`)."""
    from omegaconf import OmegaConf

    section = config["engine"]
    try:
        built = build("engine", OmegaConf.to_container(section) if OmegaConf.is_config(section) else section)
    except ValueError as error:
        raise ConfigError(f"{error}; fix it in the engine.* overrides") from None
    if start and hasattr(built, "start"):
        built.start()
    return built


def run(experiment: Experiment, engine: Engine | None = None) -> RunOutcome:
    """Run a checked experiment on ``engine`` (default: the in-process engine); raise
    :class:`RunFailed` with one line when it fails (too few usable clients, a component that
    died, the run's time limit)."""
    from fedsynth.federated.lifeline import ChildDied
    from fedsynth.methods import NotEnoughClients

    if engine is None:
        from fedsynth.federated.inprocess import InProcessEngine

        engine = InProcessEngine()
    log.info(
        "dataset=%s method=%s engine=%s seed=%s",
        experiment.dataset.get("name"), experiment.method.get("name"), engine.name, experiment.seed,
    )
    try:
        return engine.run(experiment)
    except (NotEnoughClients, ChildDied) as error:
        raise RunFailed(str(error)) from None


def release() -> None:
    """End what the engines keep for later runs (the in-process engine's client processes): for
    a command that stops at a signal and then exits normally."""
    import sys

    if "fedsynth.federated.inprocess" in sys.modules:
        sys.modules["fedsynth.federated.inprocess"].stop_clients()


def run_on_grid(grid: Any, experiment: Experiment) -> RunOutcome:
    """Run a checked experiment on the federation behind a Flower ``Grid`` (the ServerApp's);
    raise :class:`RunFailed` with one line when it fails."""
    from fedsynth.federated.server_app import GridTransport, serve
    from fedsynth.methods import NotEnoughClients

    try:
        return serve(GridTransport(grid), experiment, engine="flower")
    except NotEnoughClients as error:
        raise RunFailed(str(error)) from None


def experiment_of_run_config(run_config: Mapping[str, Any]) -> Experiment:
    """The experiment of a Flower run config (:mod:`fedsynth.federated.experiment`): its JSON, or
    its Hydra overrides composed and checked."""
    try:
        text, overrides = overrides_of(run_config)
        # a plain `flwr run`: the federation's SuperNodes are the clients (num-partitions), so
        # the split is theirs to check, and their error names num-supernodes
        return parse_experiment(text) if text else check(compose(overrides), split=False)
    except ValueError as error:
        raise ConfigError(str(error)) from None
