"""The ``fedsynth`` command: one federated experiment configured by Hydra (``conf/``).

    fedsynth                                    # defaults: synthetic data, single_shot, simulation
    fedsynth dataset=law_school_race engine=inprocess method.rho_o=100
    fedsynth -m method.rho_o=0,10,100           # a sweep, one results.json per point
    fedsynth --help                             # config groups, main keys, examples
    fedsynth --version                          # fedsynth's, Flower's and torch's versions

Every run writes ``results.json`` (atomically) into its Hydra output directory and prints its path.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fedsynth.io import write_json_atomic
from fedsynth.paths import data_directory, resolve_table_file, user_config_dir
from fedsynth.reporting.results import RESULTS_FILE, results_record

log = logging.getLogger("fedsynth")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
"""The Hydra configs, top-level ``conf/`` of the repository (fedsynth is installed editable)."""


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
            raise SystemExit(f"fedsynth: {error}") from None


def run(cfg: DictConfig) -> Path:
    """Run the experiment ``cfg`` on its engine and write ``results.json``; return its path."""
    config = OmegaConf.to_container(cfg, resolve=True)
    absolute_data_paths(config)
    engine = instantiate(cfg.engine)
    experiment = {key: value for key, value in config.items() if key != "engine"}
    log.info(
        "dataset=%s method=%s engine=%s seed=%s",
        cfg.dataset.name,
        cfg.method.name,
        cfg.engine._target_.rsplit(".", 1)[-1],
        cfg.seed,
    )
    start = time.perf_counter()
    outcome = engine.run(experiment)
    record = results_record(config, outcome, time.perf_counter() - start)
    path = write_json_atomic(Path(HydraConfig.get().runtime.output_dir) / RESULTS_FILE, record)
    for failure in outcome.failures:
        log.warning("client node %s failed: %s", failure["node"], failure["reason"])
    log.info(
        "accuracy=%.4f spd=%.4f covariance=%.5f eod=%.4f (%.1f s); results: %s",
        record["accuracy"],
        record["spd"],
        record["covariance"],
        record["eod"],
        record["wall_seconds"],
        path,
    )
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
    """The Hydra application: compose the config, then :func:`run` it."""
    run(cfg)


def main() -> None:
    """Entry point of the ``fedsynth`` console script: ``--version`` here, all else to Hydra."""
    if "--version" in sys.argv[1:]:
        print(versions_text())
        return
    user_config_dir()  # on Hydra's search path (conf/config.yaml): it must exist
    hydra_main()


if __name__ == "__main__":
    main()
