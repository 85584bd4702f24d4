"""Checking a whole experiment before anything starts: every config value (its key named), the
dataset spec, the data file and the client split, in the ``fedsynth`` command's own process (for
the in-process engine, in the client process that then runs the engine: :func:`check_and_run`).

:func:`check_experiment_config` raises :class:`ConfigError` with one line that says what is wrong,
where (the config key, the file, the column) and how to fix it; the ``fedsynth`` command and the
deployment script print it as ``fedsynth: error: ...`` and exit with code 2, before an engine or
any Flower process is started. The checks use the same code the clients run (the dataset spec,
:func:`~fedsynth.data.load_dataset`, :func:`~fedsynth.data.partition_clients`), so a client meets
no error the command could have seen; errors only a client can meet (its own file in a
deployment) come back from the run as ``nodes 1, 2: <category>: ...``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import time
import types
import typing
from typing import Any, Mapping


log = logging.getLogger("fedsynth")


class ConfigError(ValueError):
    """A configuration or data error found before the run; the message is one line."""


def _where(key: str, value: Any) -> str:
    return f"{key}={value!r}"


def _number(key: str, value: Any, *, minimum: float | None = None, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{_where(key, value)}: must be a finite number; set {key}=<number>")
    if positive and not value > 0:
        raise ConfigError(f"{_where(key, value)}: must be > 0")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{_where(key, value)}: must be >= {minimum:g}")


def _integer(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_where(key, value)}: must be an integer; set {key}=<integer>")
    if value < minimum:
        raise ConfigError(f"{_where(key, value)}: must be >= {minimum}")


def _boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{_where(key, value)}: must be true or false")


def _matches(value: Any, hint: Any) -> bool:
    """Whether a config value fits a constructor's type hint (int, float, bool, str, a union,
    a mapping, Any)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if hint is int:
        return not isinstance(value, bool) and isinstance(value, int)
    if hint in (bool, str):
        return isinstance(value, hint)
    if (origin or hint) in (dict, Mapping, typing.Mapping):
        return isinstance(value, Mapping)
    if (origin or hint) in (list, tuple):
        return isinstance(value, (list, tuple))
    return True


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string", type(None): "null"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def check_target_config(section: str, config: Mapping[str, Any]) -> Any:
    """Check a ``_target_`` config section (``method``, ``engine``) against its class's
    constructor: a known key for each entry, a value of the parameter's type; then build it, so
    the class's own checks run with the section named. Returns the built object."""
    target = config.get("_target_")
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"{section}._target_={target!r}: must name a class; pick a {section}= from conf/{section}/")
    module_name, _, class_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        hints = typing.get_type_hints(cls.__init__)
        parameters = inspect.signature(cls.__init__).parameters
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{section}._target_={target!r}: cannot import it ({err}); pick a {section}= from conf/{section}/") from None
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs = {key: value for key, value in config.items() if not key.startswith("_") and key != "name"}
    for key, value in kwargs.items():
        if key not in parameters and not takes_any:
            known = sorted(name for name in parameters if name != "self")
            raise ConfigError(f"{section}.{key}: {class_name} has no such key; known keys: {known}")
        hint = hints.get(key, inspect.Parameter.empty)
        if not _matches(value, hint):
            raise ConfigError(f"{_where(f'{section}.{key}', value)}: must be {_describe(hint)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, OSError) as err:
        raise ConfigError(f"{section} ({config.get('name', class_name)}): {err}; fix it in the {section}.* overrides") from None


def check_experiment_config(config: Mapping[str, Any]) -> None:
    """Check a resolved experiment (the ``fedsynth`` config without ``engine``, or the
    deployment script's) end to end; raise :class:`ConfigError` with one line on the first
    problem. See the module docstring."""
    from fedsynth.data import SCHEMES, DataError, DatasetSpec  # torch, pandas: only when checking

    for section in ("dataset", "method", "partition", "federation", "model"):
        if not isinstance(config.get(section), Mapping):
            raise ConfigError(f"{section}: missing or not a mapping; check conf/config.yaml")
    _integer("seed", config.get("seed"), 0)
    try:
        spec = DatasetSpec.from_config(config["dataset"])
    except DataError as err:
        raise ConfigError(f"{err} (dataset.* config)") from None
    partition, federation, model = config["partition"], config["federation"], config["model"]
    if partition.get("scheme") not in SCHEMES:
        raise ConfigError(f"{_where('partition.scheme', partition.get('scheme'))}: must be one of {list(SCHEMES)}")
    _number("partition.test_fraction", partition.get("test_fraction"), positive=True)
    if not partition["test_fraction"] < 1:
        raise ConfigError(f"{_where('partition.test_fraction', partition['test_fraction'])}: must be < 1")
    _number("partition.dirichlet_alpha", partition.get("dirichlet_alpha"), positive=True)
    _integer("federation.min_clients", federation.get("min_clients"), 1)
    if federation["min_clients"] > spec.num_clients:
        raise ConfigError(
            f"federation.min_clients={federation['min_clients']}: more than the {spec.num_clients} clients "
            f"of dataset.num_clients; lower it or raise dataset.num_clients"
        )
    _number("federation.timeout_s", federation.get("timeout_s"), positive=True)
    _boolean("federation.report_metrics", federation.get("report_metrics"))
    _number("federation.max_abs_x", federation.get("max_abs_x"), positive=True)
    _integer("federation.max_test_rows", federation.get("max_test_rows"), 1)
    _boolean("model.fit_intercept", model.get("fit_intercept"))
    check_target_config("method", config["method"])
    check_data(spec, config)


def check_data(spec: Any, config: Mapping[str, Any]) -> None:
    """Load the dataset as the clients will (file, sha256, columns, values) and split it into
    the clients; check each client's split and, for single_shot, N_s against each client's rows."""
    from fedsynth.data import DataError, load_dataset, partition_clients

    partition = config["partition"]
    try:
        data = load_dataset(spec, config.get("data_dir"))
        clients = partition_clients(
            data,
            spec.num_clients,
            seed=config["seed"],
            test_fraction=partition["test_fraction"],
            scheme=partition["scheme"],
            dirichlet_alpha=partition["dirichlet_alpha"],
        )
    except DataError as err:
        raise ConfigError(str(err)) from None
    size = config["method"].get("synthetic_size")
    labels = config["method"].get("synthetic_labels")
    if isinstance(size, int) and not isinstance(size, bool):
        smallest = min(clients, key=lambda client: len(client.train))
        if size > len(smallest.train):
            raise ConfigError(
                f"method.synthetic_size={size}: client {smallest.client_id} has only {len(smallest.train)} "
                f"training rows (N_s <= N); lower method.synthetic_size"
            )
    if labels == "copy" and size != "full":
        raise ConfigError(
            "method.synthetic_labels=copy: needs method.synthetic_size=full (N_s = N); "
            "use balanced or proportional with an integer N_s"
        )


def check_and_run(config: Mapping[str, Any]) -> tuple[Any, float]:
    """Check the ``fedsynth`` command's resolved config (the experiment with
    :func:`check_experiment_config`, the ``engine`` section with :func:`check_target_config`),
    then run the experiment on its engine: the engine's
    :class:`~fedsynth.federated.outcome.RunOutcome` and the run's wall seconds (checks
    excluded). The command calls it in a client process for the in-process engine
    (:func:`fedsynth.federated.client_process.call_in_client_process`), where torch is imported
    already."""
    experiment = {key: value for key, value in config.items() if key != "engine"}
    check_experiment_config(experiment)
    engine = check_target_config("engine", config["engine"])
    log.info(
        "dataset=%s method=%s engine=%s seed=%s",
        config["dataset"].get("name"),
        config["method"].get("name"),
        config["engine"]["_target_"].rsplit(".", 1)[-1],
        config["seed"],
    )
    start = time.perf_counter()
    outcome = engine.run(experiment)
    return outcome, time.perf_counter() - start
