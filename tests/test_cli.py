"""The ``fedsynth`` command end to end (in-process engine, tiny runs)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

RESULT_KEYS = {
    "dataset", "method", "config", "seed", "accuracy", "spd", "covariance", "eod", "min_distance",
    "per_client", "bytes_up", "bytes_down", "round_trips", "wall_seconds",
}


def fedsynth(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fedsynth.cli", f"hydra.run.dir={tmp_path}", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)


def test_default_experiment_writes_results_json(tmp_path):
    done = fedsynth(tmp_path, "engine=inprocess", "method.k_max=20", "seed=3")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "results.json"
    assert done.stdout.strip().splitlines()[-1] == str(path)
    results = json.loads(path.read_text())
    assert RESULT_KEYS <= set(results)
    assert results["dataset"] == "synthetic" and results["method"] == "single_shot" and results["seed"] == 3
    assert 0.5 <= results["accuracy"] <= 1
    assert all(math.isfinite(results[k]) for k in ("spd", "covariance", "eod"))
    assert results["round_trips"] == 1
    assert results["config"]["method"]["k_max"] == 20
    assert len(results["per_client"]) == results["config"]["dataset"]["num_clients"] == 3
    assert [c["client_id"] for c in results["per_client"]] == [0, 1, 2]
    assert results["min_distance"] == min(c["min_distance"] for c in results["per_client"]) > 0
    assert results["bytes_up"] > results["bytes_down"] > 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []
    assert path.stat().st_mode & 0o777 == 0o644  # readable by all, as the run's other outputs


def test_same_seed_same_numbers_and_small_synthetic_sets(tmp_path):
    runs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        done = fedsynth(folder, "engine=inprocess", "method.k_max=10", "method.synthetic_size=40", "method.synthetic_labels=balanced")
        assert done.returncode == 0, done.stderr
        runs.append(json.loads((folder / "results.json").read_text()))
    assert runs[0]["theta"] == runs[1]["theta"]
    assert runs[0]["accuracy"] == runs[1]["accuracy"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("method.synthetic_size=lots", "synthetic_size"),
        ("method.lambda_theta=0", "lambda_theta"),
        ("method.synthetic_labels=random", "synthetic_labels"),
    ],
)
def test_bad_config_fails_clearly_and_writes_no_results(tmp_path, override, message):
    done = fedsynth(tmp_path, "engine=inprocess", "method.k_max=5", override)
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "results.json").exists()


def console(name: str, *arguments: str) -> subprocess.CompletedProcess:
    """Run one of the package's console scripts."""
    command = [str(Path(sys.executable).parent / name), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_version_names_fedsynth_flower_and_torch():
    from importlib.metadata import version

    import fedsynth

    done = console("fedsynth", "--version")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"fedsynth {fedsynth.__version__} ")
    assert f"Flower {version('flwr')}" in line and f"torch {version('torch')}" in line


def test_help_lists_groups_keys_and_examples():
    done = console("fedsynth", "--help")
    assert done.returncode == 0, done.stderr
    for group in ("dataset: ", "method: ", "engine: inprocess, simulation", "experiment: "):
        assert group in done.stdout
    for text in ("method.rho_o", "method.synthetic_size", "dataset.num_clients", "== Examples ==", "fedsynth-spec"):
        assert text in done.stdout


def test_deploy_console_script_help():
    done = console("fedsynth-deploy", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: fedsynth-deploy") and "--tls" in done.stdout


@pytest.mark.slow
def test_simulation_run_shows_client_progress_and_a_summary(tmp_path):
    """Flower's simulation engine: the clients' progress (k/k_max, P) comes through Flower's log
    stream to the terminal, and the run ends with accuracy, SPD, EOD and the results file."""
    done = fedsynth(tmp_path, "engine=simulation", "method.k_max=20", "dataset.generator.num_rows=600")
    output = done.stdout + done.stderr  # Hydra logs to stdout
    assert done.returncode == 0, output[-3000:]
    for client in range(3):
        assert f"client {client}: outer iteration 20/20, P = " in output, output[-3000:]
    path = tmp_path / "results.json"
    assert re.search(rf"accuracy=0\.\d+ spd=-?\d\.\d+ .*eod=-?\d\.\d+ .*; results: {re.escape(str(path))}", output)


def test_a_sweep_ends_with_its_folder_and_the_report_command(tmp_path):
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, "-m", "fedsynth.cli", "-m", f"hydra.sweep.dir={sweep}", "engine=inprocess",
        "method.k_max=3", "method.synthetic_size=20", "method.synthetic_labels=proportional", "seed=0,1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-2:] == [f"sweep finished: {sweep}", f"report: fedsynth-report {sweep}"]
    assert sorted(p.parent.name for p in sweep.glob("*/results.json")) == ["0", "1"]
