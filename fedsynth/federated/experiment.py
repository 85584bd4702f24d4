"""How an experiment (:class:`fedsynth.config.Experiment`) travels: as JSON text in every message
to a client, and in Flower's run config for ``flwr run`` and a deployment, whose keys are
:data:`RUN_CONFIG_KEYS` (docs/deployment.md, "Configuration: the run config").
"""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path
from typing import Any, Mapping

from fedsynth.config import Experiment, experiment_from_mapping

APP_ROOT = Path(__file__).resolve().parents[2]
"""The Flower app directory: it holds ``pyproject.toml``, the ``fedsynth`` package and ``conf/``."""
RUN_CONFIG_KEYS = ("experiment", "overrides", "results-path")


def experiment_json(experiment: Experiment) -> str:
    """An experiment as the JSON text a message and a run config carry."""
    return json.dumps(experiment.to_dict(), sort_keys=True)


@functools.lru_cache(maxsize=8)
def parse_experiment(text: str) -> Experiment:
    """The experiment of its JSON text, typed and checked (remembered per process: every message
    of a run carries the same text)."""
    return experiment_from_mapping(json.loads(text))


def run_config_for(experiment: Experiment, results_path: str | Path) -> dict[str, str]:
    """The Flower run config that carries ``experiment`` and where its outcome goes."""
    return {"experiment": experiment_json(experiment), "overrides": "", "results-path": str(Path(results_path).resolve())}


def overrides_of(run_config: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The run config's experiment JSON (or "") and its Hydra overrides; ``ValueError`` for an
    unknown key or both set."""
    unknown = sorted(set(run_config) - set(RUN_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown run config keys {unknown}; known: {list(RUN_CONFIG_KEYS)}")
    text, overrides = str(run_config.get("experiment", "")), str(run_config.get("overrides", ""))
    if text and overrides:
        raise ValueError("set either run config 'experiment' (JSON) or 'overrides', not both")
    return text, shlex.split(overrides)
