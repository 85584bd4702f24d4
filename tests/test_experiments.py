"""The experiment presets (conf/experiment/*.yaml) and multirun sweeps of the ``fedsynth`` command."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fedsynth.cli import CONFIG_DIR
from fedsynth.reporting.report import build_report
from fedsynth.callbacks import count_sweep_jobs, sweep_points as basic_sweeper_points

PRESETS = ("table2", "figure2", "figure3", "smoke")
GRID = [0.0, 10.0, 100.0, 1000.0, 10000.0]


def compose_config(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base=None):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def sweep_points(preset: str, *overrides: str) -> list[list[str]]:
    """The override lists the basic sweeper makes of a preset's sweep and ``overrides``."""
    cfg = compose_config(f"+experiment={preset}", *overrides)
    return basic_sweeper_points([f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()] + list(overrides))


def resolved_points(preset: str, *overrides: str) -> list[dict]:
    """Every sweep point of ``preset`` composed and resolved (what each job would run)."""
    configs = []
    points = sweep_points(preset, *overrides)
    with initialize_config_dir(str(CONFIG_DIR), version_base=None):
        for point in points:
            cfg = compose(config_name="config", overrides=[f"+experiment={preset}", *point])
            configs.append(OmegaConf.to_container(cfg, resolve=True))
    return configs


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_runs_in_process(preset):
    cfg = compose_config(f"+experiment={preset}")
    assert cfg.study.name == preset
    assert cfg.engine._target_.endswith("InProcessEngine")
    assert cfg.hydra.sweeper.params, "a preset defines its sweep"
    assert str(cfg.hydra.sweep.dir).startswith(f"multirun/{preset}/")
    assert {"torch_threads", "sweep_progress"} <= set(cfg.hydra.callbacks)
    for key in cfg:  # every interpolation of the job's config resolves
        if key != "hydra":
            OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]


def test_table2_points():
    points = resolved_points("table2", "seed=0")
    assert len(points) == 3 * 2 * 5
    assert len(sweep_points("table2")) == 90  # three seeds by default
    seen = set()
    for c in points:
        m = c["method"]
        assert m["rho_s"] == 0 and m["lambda_theta"] == 1e-3 and m["lambda_x"] == 1e-4 and m["k_max"] == 1000
        assert m["init"] == "gaussian"
        if c["study"]["n_s"] == "full":
            assert (m["synthetic_size"], m["synthetic_labels"]) == ("full", "copy")
        else:
            small = 1200 if c["dataset"]["name"] == "dutch_gender" else 800
            assert (m["synthetic_size"], m["synthetic_labels"]) == (small, "balanced")
        seen.add((c["dataset"]["name"], c["study"]["n_s"], m["rho_o"]))
    assert {d for d, _, _ in seen} == {"law_school_race", "law_school_gender", "dutch_gender"}
    assert sorted({r for _, _, r in seen}) == GRID and len(seen) == 30
    # the heaviest points come first (the Dutch full-size runs)
    first = points[0]
    assert first["dataset"]["name"] == "dutch_gender" and first["study"]["n_s"] == "full"


def test_figure2_points():
    points = resolved_points("figure2", "seed=0")
    assert len(points) == 25 and len(sweep_points("figure2")) == 75
    assert {c["dataset"]["name"] for c in points} == {"law_school_race"}
    assert {(c["method"]["rho_o"], c["method"]["rho_s"]) for c in points} == {(o, s) for o in GRID for s in GRID}
    for c in points:
        m = c["method"]
        assert m["lambda_theta"] == 1e-4 and m["synthetic_size"] == "full" and m["synthetic_labels"] == "copy"


def test_figure3_is_table2_on_a_denser_grid():
    points = resolved_points("figure3", "seed=0", "dataset=law_school_race")
    assert sorted({c["method"]["rho_o"] for c in points}) == [0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000]
    assert {c["study"]["n_s"] for c in points} == {"full", "small"}
    assert all(c["method"]["lambda_theta"] == 1e-3 and c["method"]["rho_s"] == 0 for c in points)
    assert {c["study"]["name"] for c in points} == {"figure3"}


def test_command_line_narrows_or_changes_a_preset():
    cfg = compose_config("+experiment=table2", "engine=simulation", "method.k_max=50")
    assert cfg.engine._target_.endswith("SimulationEngine") and cfg.method.k_max == 50
    assert len(sweep_points("table2", "seed=0", "study.n_s=small", "dataset=dutch_gender")) == 5
    assert count_sweep_jobs(compose_config("+experiment=table2", "seed=0")) is not None
    cfg = compose_config("+experiment=table2", "dataset=synthetic", "study.n_s=small")
    assert cfg.method.synthetic_size == 80  # any dataset with a size in study.sizes


def test_parallel_launcher_config():
    cfg = compose_config("+experiment=smoke", "hydra/launcher=parallel")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == -1
    cfg = compose_config("+experiment=smoke", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2")
    assert cfg.hydra.launcher.n_jobs == 2


def test_slurm_launcher_config_composes_into_valid_sbatch_parameters(tmp_path):
    """conf/hydra/launcher/slurm.yaml composes with a preset, Hydra's Submitit plugin builds its
    launcher from it, and every parameter it would hand submitit is one submitit's SLURM executor
    knows (checked by submitit itself, on its debug executor: no SLURM here)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the optional extra fedsynth[cluster] is not installed")
    import submitit
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    cfg = compose_config("+experiment=table2", "hydra/launcher=slurm", "hydra.launcher.partition=cpu",
                         "hydra.launcher.cpus_per_task=2", f"hydra.sweep.dir={tmp_path}")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    HydraConfig.instance().set_config(cfg)
    launcher = instantiate(cfg.hydra.launcher)
    params = dict(launcher.params)
    assert params["submitit_folder"] == f"{tmp_path}/.submitit/%j"
    assert params["partition"] == "cpu" and params["cpus_per_task"] == 2 and params["nodes"] == 1
    # the plugin's own mapping (SlurmLauncher.launch): folder and max_num_timeout go to the
    # executor's constructor, the generic keys as they are, the rest with the slurm_ prefix
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(cluster="debug", folder=tmp_path / "submitit")
    executor.update_parameters(**{
        key if key in generic else f"slurm_{key}": value
        for key, value in params.items()
        if key not in {"submitit_folder", "max_num_timeout"}
    })
    with pytest.raises(Exception, match="hydra.launcher.no_such_option"):
        compose_config("+experiment=table2", "hydra/launcher=slurm", "hydra.launcher.no_such_option=1")


# ----------------------------------------------------------------------------- real multiruns


def fedsynth_multirun(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fedsynth.cli", "-m", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)


def check_results(sweep: Path, expected_rho_o: set[float]) -> list[dict]:
    files = sorted(sweep.glob("*/results.json"))
    assert len(files) == len(expected_rho_o)
    records = [json.loads(f.read_text()) for f in files]
    assert {r["config"]["method"]["rho_o"] for r in records} == expected_rho_o
    for r in records:
        assert r["dataset"] == "synthetic" and r["engine"] == "inprocess" and not r["failures"]
        assert 0.5 <= r["accuracy"] <= 1 and all(math.isfinite(r[k]) for k in ("spd", "covariance", "eod"))
        assert r["config"]["method"]["k_max"] == 3 and r["config"]["study"]["name"] == "smoke"
    return records


TINY_SWEEP = ("+experiment=smoke", "method.rho_o=0,100", "method.rho_s=0", "seed=0", "method.k_max=3")


@pytest.fixture(scope="module")
def sequential_sweep(tmp_path_factory) -> tuple[Path, list[dict]]:
    """The tiny 2-point sweep on Hydra's basic (sequential) launcher."""
    root = tmp_path_factory.mktemp("sequential")
    sweep = root / "sweep"
    done = fedsynth_multirun(root, *TINY_SWEEP, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sweep [########################] 2/2 points (100%)" in done.stderr
    return sweep, check_results(sweep, {0.0, 100.0})


def test_tiny_sweep_through_hydra_multirun(sequential_sweep):
    sweep, records = sequential_sweep
    assert (sweep / "multirun.yaml").exists()
    assert {r["seed"] for r in records} == {0}
    jobs = [json.loads(line) for line in (sweep / ".sweep" / "jobs.jsonl").read_text().splitlines()]
    assert [j["status"] for j in jobs] == ["COMPLETED", "COMPLETED"]


def test_tiny_sweep_in_parallel_workers_then_report(tmp_path, sequential_sweep):
    sweep = tmp_path / "sweep"
    done = fedsynth_multirun(tmp_path, *TINY_SWEEP, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                             f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stderr + done.stdout
    records = check_results(sweep, {0.0, 100.0})
    # the same numbers as the sequential sweep: parallel workers change only the wall time
    theta = {r["config"]["method"]["rho_o"]: r["theta"] for r in records}
    for r in sequential_sweep[1]:
        assert theta[r["config"]["method"]["rho_o"]] == pytest.approx(r["theta"], abs=1e-9)

    result = build_report([sweep], sweep / "report")
    assert len(result["runs"]) == 2
    names = {p.name for p in result["files"]}
    assert {"runs.csv", "summary.csv", "report.md", "trends.png", "tradeoff.png"} <= names
    assert all((sweep / "report" / n).stat().st_size > 10_000 for n in ("trends.png", "tradeoff.png"))
    assert "2/2 points done" in result["report"]
