"""The experiment configuration as the federation sees it, and how it travels in Flower's run config.

An *experiment* is the plain-dict form of the resolved Hydra config, restricted to
:data:`EXPERIMENT_KEYS`: ``dataset`` (a ``conf/dataset`` mapping), ``method`` (a ``conf/method``
mapping with ``_target_``), ``seed``, ``partition`` (``scheme``, ``test_fraction``,
``dirichlet_alpha``), ``federation`` (``min_clients``, ``timeout_s``, ``report_metrics``,
``max_abs_x``, ``max_test_rows``),
``model`` and, optionally, ``data_dir``.

Flower's run config (``[tool.flwr.app.config]``) holds only flat scalars and rejects override keys
it does not declare, while experiments hold lists (dataset features) and method-specific keys. So
the run config has three string keys, see :data:`RUN_CONFIG_DEFAULTS`:

* ``experiment``: the experiment as JSON text. The engines and the deployment script set it;
* ``overrides``: used when ``experiment`` is empty (a plain ``flwr run .``): Hydra overrides of
  the ``conf/`` tree shipped in the app bundle, e.g. ``"dataset=synthetic method.k_max=10"``;
* ``results-path``: absolute path of the file the ServerApp writes its :class:`~fedsynth.federated.outcome.RunOutcome` to
  (``outcome.json`` by the engines' convention; "" = its default,
  :func:`fedsynth.federated.server_app.default_results_path`).
* ``inbox``: absolute path of a folder the ServerApp takes further experiments from once the
  first is done, one after another, in the same run (the points of a sweep, see
  :func:`submit_point` and :func:`next_point`); "" = the run has one experiment.

The server side (ServerApp, in-process engine) turns the run config into the experiment with
:func:`experiment_from_run_config`; the clients get it, as JSON, with every message
(:func:`fedsynth.federated.messages.with_experiment`) and read it with
:func:`experiment_from_json`, so all of them see the same values.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from fedsynth.schema import from_mapping

APP_ROOT = Path(__file__).resolve().parents[2]
"""The Flower app directory: it holds ``pyproject.toml``, the ``fedsynth`` package and ``conf/``."""


@dataclass(frozen=True)
class PartitionConfig:
    """``partition``: how the dataset is split into clients (:mod:`fedsynth.data.partition`)."""

    scheme: str
    test_fraction: float
    dirichlet_alpha: float


@dataclass(frozen=True)
class FederationConfig:
    """``federation``: what the server requires of the clients and their replies."""

    min_clients: int
    timeout_s: float
    report_metrics: bool
    max_abs_x: float
    max_test_rows: int


@dataclass(frozen=True)
class ModelConfig:
    """``model``: the logistic model every method fits."""

    fit_intercept: bool = True


@dataclass(frozen=True)
class Experiment:
    """The experiment's schema. ``dataset`` is checked by
    :meth:`fedsynth.data.DatasetSpec.from_config` and ``method`` by its class
    (:func:`fedsynth.methods.build_method`); the other sections by their dataclasses."""

    dataset: dict[str, Any]
    method: dict[str, Any]
    seed: int
    partition: PartitionConfig
    federation: FederationConfig
    model: ModelConfig = ModelConfig()
    data_dir: str | None = None


EXPERIMENT_KEYS = tuple(field.name for field in dataclasses.fields(Experiment))

RUN_CONFIG_DEFAULTS = {"experiment": "", "overrides": "", "results-path": "", "inbox": ""}

POINT_FILE = "point-{number:06d}.json"
"""A point's file in a run's inbox: ``{"experiment": ..., "results-path": ...}``."""
STOP_FILE = "stop"
"""The file that tells a run serving points from its inbox to end."""
POINT_IDLE_S = 600.0
"""How long a run waits for its next point before it ends by itself."""


def check_experiment(experiment: Mapping[str, Any]) -> None:
    """Check an experiment mapping against :class:`Experiment` once; raise ``ValueError`` naming
    the key that is missing or wrong."""
    checked = from_mapping(Experiment, experiment, "experiment")
    if "_target_" not in checked.method:
        raise ValueError("experiment lacks key 'method._target_'; set method=<name> (conf/method)")
    if "num_clients" not in checked.dataset:
        raise ValueError("experiment lacks key 'dataset.num_clients'; set dataset.num_clients")
    federation = checked.federation
    num_clients = checked.dataset["num_clients"]
    if not 1 <= federation.min_clients <= num_clients:
        raise ValueError(
            f"federation.min_clients must be in 1..{num_clients} (dataset.num_clients), "
            f"got {federation.min_clients}"
        )
    if not federation.timeout_s > 0:
        raise ValueError(f"federation.timeout_s must be > 0, got {federation.timeout_s}")


def run_config_for(
    experiment: Mapping[str, Any], results_path: str | Path | None = None, inbox: str | Path | None = None
) -> dict[str, str]:
    """The Flower run config that carries ``experiment`` (and where to write results, and where
    the run's further points will come from)."""
    return {
        "experiment": experiment_json(experiment),
        "overrides": "",
        "results-path": str(Path(results_path).resolve()) if results_path else "",
        "inbox": str(Path(inbox).resolve()) if inbox else "",
    }


def submit_point(inbox: Path, number: int, experiment: Mapping[str, Any], results_path: Path) -> Path:
    """Give the run serving ``inbox`` its point ``number`` (1, 2, ...; point 0 is the run
    config's): the experiment and the absolute path its outcome goes to. The file appears whole
    (:func:`fedsynth.io.write_json_atomic`)."""
    from fedsynth.io import write_json_atomic

    point = {"experiment": _checked_selection(experiment), "results-path": str(Path(results_path).resolve())}
    return write_json_atomic(inbox / POINT_FILE.format(number=number), point)


def close_inbox(inbox: Path) -> None:
    """Tell the run serving ``inbox`` to end once its current point is done."""
    (inbox / STOP_FILE).touch()


def next_point(
    inbox: Path, number: int, idle_s: float = POINT_IDLE_S, poll_s: float = 0.05
) -> tuple[dict[str, Any], Path] | None:
    """Wait for point ``number`` in ``inbox`` and return its checked experiment and results path;
    ``None`` (the run ends) once the inbox is closed (:func:`close_inbox`) or gone, or after
    ``idle_s`` seconds without a point."""
    path = inbox / POINT_FILE.format(number=number)
    deadline = time.monotonic() + idle_s
    while not path.is_file():
        if (inbox / STOP_FILE).exists() or not inbox.is_dir() or time.monotonic() > deadline:
            return None
        time.sleep(poll_s)
    point = json.loads(path.read_text(encoding="utf-8"))
    check_experiment(point["experiment"])
    return point["experiment"], Path(point["results-path"])


def experiment_from_run_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment a run config describes (see the module docstring); a fresh copy each call."""
    unknown = sorted(set(run_config) - set(RUN_CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown run config keys {unknown}; known: {sorted(RUN_CONFIG_DEFAULTS)}")
    text = str(run_config.get("experiment", ""))
    overrides = str(run_config.get("overrides", ""))
    if text and overrides:
        raise ValueError("set either run config 'experiment' (JSON) or 'overrides', not both")
    return copy.deepcopy(_parse(text, overrides))


def experiment_from_json(text: str) -> dict[str, Any]:
    """The experiment of its JSON text (as :func:`experiment_json` writes it), checked; a fresh
    copy each call."""
    return copy.deepcopy(_parse(text, ""))


def experiment_json(experiment: Mapping[str, Any]) -> str:
    """An experiment as the JSON text a run config and a client's message carry."""
    return json.dumps(_checked_selection(experiment), sort_keys=True)


def _checked_selection(experiment: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`EXPERIMENT_KEYS` of a mapping (e.g. the whole Hydra config), checked."""
    selected = {key: experiment[key] for key in EXPERIMENT_KEYS if key in experiment}
    check_experiment(selected)
    return selected


@functools.lru_cache(maxsize=4)
def _parse(text: str, overrides: str) -> dict[str, Any]:
    """Parse (and remember, per process) one run config's experiment."""
    experiment = json.loads(text) if text else compose_experiment(shlex.split(overrides))
    check_experiment(experiment)
    return experiment


def compose_experiment(overrides: Sequence[str] = (), config_dir: Path | None = None) -> dict[str, Any]:
    """Compose ``conf/config.yaml`` with Hydra overrides and return the experiment part."""
    from hydra import compose, initialize_config_dir

    from fedsynth.paths import user_config_dir

    user_config_dir()  # on Hydra's search path (conf/config.yaml): it must exist
    with initialize_config_dir(str(config_dir or APP_ROOT / "conf"), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    return experiment_from_hydra(cfg)


def experiment_from_hydra(cfg: Any) -> dict[str, Any]:
    """The experiment part of a Hydra ``DictConfig``, resolved into plain containers."""
    from omegaconf import OmegaConf

    experiment = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in EXPERIMENT_KEYS
        if key in cfg
    }
    check_experiment(experiment)
    return experiment
