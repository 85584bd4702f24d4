"""The ``fedsynth`` command end to end (in-process engine, tiny runs)."""

from __future__ import annotations

import json
import math
import os
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
