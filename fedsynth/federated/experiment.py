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

Every side (ServerApp, ClientApp, in-process engine) turns the run config into the experiment
with :func:`experiment_from_run_config`, so all of them see the same values.
"""

from __future__ import annotations

import copy
import functools
import json
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

APP_ROOT = Path(__file__).resolve().parents[2]
"""The Flower app directory: it holds ``pyproject.toml``, the ``fedsynth`` package and ``conf/``."""

EXPERIMENT_KEYS = ("dataset", "method", "seed", "partition", "federation", "model", "data_dir")
REQUIRED_KEYS = {
    "dataset": ("num_clients",),
    "method": ("_target_",),
    "partition": ("scheme", "test_fraction", "dirichlet_alpha"),
    "federation": ("min_clients", "timeout_s", "report_metrics", "max_abs_x", "max_test_rows"),
}

RUN_CONFIG_DEFAULTS = {"experiment": "", "overrides": "", "results-path": ""}


def check_experiment(experiment: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming what is missing or wrong in an experiment mapping."""
    missing = [key for key in ("seed", *REQUIRED_KEYS) if key not in experiment]
    for section, keys in REQUIRED_KEYS.items():
        if isinstance(experiment.get(section), Mapping):
            missing += [f"{section}.{key}" for key in keys if key not in experiment[section]]
    if missing:
        raise ValueError(f"experiment config lacks {missing}; got top-level keys {sorted(experiment)}")
    federation = experiment["federation"]
    num_clients = experiment["dataset"]["num_clients"]
    if not 1 <= federation["min_clients"] <= num_clients:
        raise ValueError(
            f"federation.min_clients must be in 1..{num_clients} (dataset.num_clients), "
            f"got {federation['min_clients']}"
        )
    if not federation["timeout_s"] > 0:
        raise ValueError(f"federation.timeout_s must be > 0, got {federation['timeout_s']}")


def run_config_for(experiment: Mapping[str, Any], results_path: str | Path | None = None) -> dict[str, str]:
    """The Flower run config that carries ``experiment`` (and where to write results)."""
    selected = {key: experiment[key] for key in EXPERIMENT_KEYS if key in experiment}
    check_experiment(selected)
    return {
        "experiment": json.dumps(selected, sort_keys=True),
        "overrides": "",
        "results-path": str(Path(results_path).resolve()) if results_path else "",
    }


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
