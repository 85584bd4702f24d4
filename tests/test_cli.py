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


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


CSV = [
    "dataset=csv", "dataset.label.column=label", "dataset.label.positive=1",
    "dataset.sensitive.column=g", "dataset.sensitive.privileged=1",
]


@pytest.mark.parametrize(
    "case, overrides, message",
    [
        ("string for a number", ["method.rho_o=abc"], "method.rho_o='abc': must be a number"),
        ("string for an integer", ["method.inner_max_iter=ten"], "method.inner_max_iter='ten': must be an integer"),
        ("k_max neither an integer nor auto", ["method.k_max=ten"], "k_max must be an integer >= 0 or 'auto', got 'ten'"),
        ("no clients", ["dataset.num_clients=0"], "num_clients must be an integer >= 1, got 0"),
        ("too many min_clients", ["federation.min_clients=9"], "federation.min_clients=9: more than the 3 clients"),
        ("N_s above a client's N", ["method.synthetic_size=5000"], "method.synthetic_size=5000: client 0 has only"),
        ("copy with an integer N_s", ["method.synthetic_labels=copy"], "method.synthetic_labels=copy: needs method.synthetic_size=full"),
        ("bad engine value", ["engine.client_cpus=x"], "engine.client_cpus='x': must be an integer"),
        ("bad federation value", ["federation.timeout_s=-1"], "federation.timeout_s=-1: must be > 0"),
        ("data path is a directory", [*CSV, "dataset.file={tmp}"], "is a directory"),
        ("data path is a FIFO", [*CSV, "dataset.file={tmp}/fifo"], "is not a regular file"),
        ("missing data file", [*CSV, "dataset.file={tmp}/none.csv"], "data file not found"),
        ("binary data file", [*CSV, "dataset.file={tmp}/binary.csv"], "not a UTF-8 text CSV file"),
        ("duplicate header", [*CSV, "dataset.file={tmp}/duplicate.csv"], "column name(s) ['f0'] appear more than once"),
        ("huge values", [*CSV, "dataset.file={tmp}/huge.csv"], "column 'f0' encodes to values beyond"),
        ("sha256 mismatch", [*CSV, "dataset.file={tmp}/ok.csv", "+dataset.sha256=" + "0" * 64], "sha256 mismatch"),
        ("more clients than rows", [*CSV, "dataset.file={tmp}/ok.csv", "dataset.num_clients=50"], "50 clients requested"),
    ],
)
def test_user_errors_are_one_line_exit_2_before_anything_starts(tmp_path, case, overrides, message):
    """Every config and data error: one line ``fedsynth: error: ...``, exit code 2, no traceback,
    on the default (simulation) engine too: the check runs before any Flower process."""
    os.mkfifo(tmp_path / "fifo")
    write(tmp_path / "binary.csv", bytes(range(256)) * 8)
    write(tmp_path / "duplicate.csv", "f0,f0,g,label\n1,2,0,1\n3,4,1,-1\n")
    write(tmp_path / "huge.csv", "f0,g,label\n1e300,0,1\n3,1,-1\n2,1,1\n1,0,-1\n")
    write(tmp_path / "ok.csv", "f0,g,label\n" + "".join(f"{i},{i % 2},{1 if i % 3 else -1}\n" for i in range(40)))
    done = fedsynth(tmp_path, *(o.format(tmp=tmp_path) for o in overrides))
    assert done.returncode == 2, (case, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert lines == [lines[-1]] and lines[-1].startswith("fedsynth: error: "), done.stderr[-2000:]
    assert message in lines[-1] and "Traceback" not in done.stderr
    assert "superlink" not in done.stderr.lower()  # nothing of Flower started
    assert not (tmp_path / "results.json").exists()


def test_the_in_process_command_imports_no_torch_and_its_errors_stay_one_line(tmp_path):
    """With ``engine=inprocess`` the checks and the server run in a client process, where torch
    is imported already: the command's own process never imports torch, gives the same numbers,
    and a user error found there is still one line with exit code 2."""
    script = (
        "import sys\nfrom fedsynth.cli import main\n"
        "try:\n    main()\nfinally:\n    print('torch imported:', 'torch' in sys.modules, flush=True)\n"
    )

    def command(folder: Path, *overrides: str) -> subprocess.CompletedProcess:
        folder.mkdir()
        argv = ["fedsynth", f"hydra.run.dir={folder}", "engine=inprocess", "method.k_max=10", *overrides]
        code = f"import sys; sys.argv = {argv!r}\n{script}"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=folder)

    done = command(tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch imported: False" in done.stdout
    from fedsynth.federated import InProcessEngine
    from fedsynth.federated.experiment import compose_experiment

    here = InProcessEngine().run(compose_experiment(["method.k_max=10"]))  # the engine in this process
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["theta"] == here.theta and results["accuracy"] == here.metrics["accuracy"]
    bad = command(tmp_path / "bad", "partition.test_fraction=2")
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert bad.stderr.strip().splitlines()[-1].startswith("fedsynth: error: partition.test_fraction=2")
    assert "Traceback" not in bad.stderr and "torch imported: False" in bad.stdout


def test_the_traceback_switch_shows_the_traceback(tmp_path):
    env = {**os.environ, "FEDSYNTH_TRACEBACK": "1"}
    command = [sys.executable, "-m", "fedsynth.cli", f"hydra.run.dir={tmp_path}", "method.rho_o=abc"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" in done.stderr and "ConfigError" in done.stderr


def test_too_few_clients_is_one_line_naming_the_nodes(tmp_path):
    """A failure only the clients can meet (here every client is asked for more rows than the
    server accepts): one line, each reason once with the nodes it hit, exit code 1."""
    done = fedsynth(
        tmp_path, "engine=inprocess", "method.k_max=2", "method.synthetic_size=full", "method.synthetic_labels=copy",
        "method.max_synthetic_rows=10",
    )
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fedsynth: error: only 0 of 3 clients gave a valid reply") and "nodes 1, 2, 3: invalid payload" in last
    assert "Traceback" not in done.stderr


def test_a_failed_results_write_names_the_path_after_logging_the_metrics(tmp_path):
    (tmp_path / "results.json").mkdir()  # the file cannot replace a folder
    done = fedsynth(tmp_path, "engine=inprocess", "method.k_max=2", "method.synthetic_size=40")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fedsynth: error: cannot write {tmp_path / 'results.json'}")
    assert "accuracy=" in done.stdout + done.stderr.split("fedsynth: error")[0]  # logged before the write
    assert "Traceback" not in done.stderr


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
    done = fedsynth(tmp_path, "engine=simulation", "method.k_max=20", "dataset.generator.num_rows=600", "method.synthetic_size=40")
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
