"""The Flower app that ``flwr run .`` and a deployment run (``[tool.flwr.app.components]`` in
pyproject.toml): the ClientApp of :mod:`fedsynth.federated.client_app`, and a ServerApp that
takes its experiment from the run config (:func:`fedsynth.api.experiment_of_run_config`: the
experiment's JSON, or Hydra overrides of the bundled ``conf/``), runs it
(:func:`fedsynth.api.run_on_grid`), logs a summary and writes the outcome atomically to the run
config's ``results-path`` (default ``$FLWR_HOME/fedsynth-results/<run id>/outcome.json``,
``FLWR_HOME`` defaulting to ``~/.flwr``). A failed run writes its one-line reason beside it,
``failure.txt``, and raises, which makes Flower mark the run failed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsynth.federated.client_app import app as client
from fedsynth.outcome import OUTCOME_FILE, failure_path

__all__ = ["client", "server"]

server = ServerApp()  # fedsynth's log records: to Flower's logger (set up by client_app)
log = logging.getLogger("fedsynth")


def default_results_path(run_id: int) -> Path:
    """Where the outcome goes when the run config names no ``results-path``."""
    home = Path(os.environ.get("FLWR_HOME") or Path.home() / ".flwr")
    return home / "fedsynth-results" / str(run_id) / OUTCOME_FILE


@server.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment of this run's config and write its outcome (see the module docstring)."""
    from fedsynth import api  # torch, Hydra: when the run starts, not when Flower loads the app

    results_path = Path(str(context.run_config.get("results-path", "")) or default_results_path(context.run_id))
    try:
        outcome = api.run_on_grid(grid, api.experiment_of_run_config(context.run_config))
    except (api.ConfigError, api.RunFailed) as error:
        log.error("fedsynth run failed: %s", error)
        failure_path(results_path).parent.mkdir(parents=True, exist_ok=True)
        failure_path(results_path).write_text(f"{error}\n", encoding="utf-8")
        raise
    log.info("fedsynth: %s", outcome.summary(results_path))
    outcome.write_json(results_path)
