"""The ``fedsynth`` command end to end (in-process engine, tiny runs)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
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
        ("string for an integer", ["method.inner.max_iter=ten"], "method.inner.max_iter='ten': must be an integer"),
        ("k_max neither an integer nor auto", ["method.k_max=ten"], "k_max must be an integer >= 0 or 'auto', got 'ten'"),
        ("no clients", ["dataset.num_clients=0"], "num_clients must be an integer >= 1, got 0"),
        ("too many min_clients", ["federation.min_clients=9"], "federation.min_clients=9: more than the 3 clients"),
        ("N_s above a client's N", ["method.synthetic_size=5000"], "method.synthetic_size=5000: client 0 has only"),
        ("copy with an integer N_s", ["method.synthetic_labels=copy"], "method.synthetic_labels=copy: needs method.synthetic_size=full"),
        ("bad engine value", ["engine.client_cpus=x"], "engine.client_cpus='x': must be an integer"),
        ("bad federation value", ["federation.timeout_s=-1"], "federation.timeout_s=-1: must be > 0"),
        ("seed beyond torch's", ["seed=18446744073709551615"], "seed=18446744073709551615: must be between 0 and 18446744073709551612"),
        ("seed beyond 2**64", ["seed=99999999999999999999999"], "seed=99999999999999999999999: must be between 0 and"),
        ("infinite step size", ["method.lr=inf"], "lr must be a finite number > 0, got inf"),
        ("max_test_rows below a client's", ["federation.max_test_rows=1"], "federation.max_test_rows=1: client"),
        ("data path is a directory", [*CSV, "dataset.file={tmp}"], "is a directory"),
        ("data path is a FIFO", [*CSV, "dataset.file={tmp}/fifo"], "is not a regular file"),
        ("missing data file", [*CSV, "dataset.file={tmp}/none.csv"], "data file not found"),
        ("binary data file", [*CSV, "dataset.file={tmp}/binary.csv"], "not a UTF-8 text CSV file"),
        ("duplicate header", [*CSV, "dataset.file={tmp}/duplicate.csv"], "column name(s) ['f0'] appear more than once"),
        ("huge values", [*CSV, "dataset.file={tmp}/huge.csv"], "column 'f0' encodes to values beyond"),
        ("sha256 mismatch", [*CSV, "dataset.file={tmp}/ok.csv", "+dataset.sha256=" + "0" * 64], "sha256 mismatch"),
        ("more clients than rows", [*CSV, "dataset.file={tmp}/ok.csv", "dataset.num_clients=50"], "50 clients requested"),
        ("k groups, a measure of two", ["dataset=dutch_sex_country"], "method.fairness=covariance: a measure of two groups, but dataset.sensitive has 6 groups"),
        ("k groups, a binary method", ["dataset=dutch_sex_country", "method=dp_fedavg"], "dataset.sensitive: 6 groups, but method 'dp_fedavg' takes a binary"),
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


def test_the_command_gives_the_numbers_of_the_api(tmp_path):
    """The command is a thin shell over fedsynth.api: the same experiment through the API in
    this process gives the same θ and accuracy."""
    done = fedsynth(tmp_path, "engine=inprocess", "method.k_max=10")
    assert done.returncode == 0, done.stderr[-2000:]
    from fedsynth import api

    config = api.compose(["engine=inprocess", "method.k_max=10"])
    here = api.run(api.check(config), api.engine(config))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["theta"] == here.theta and results["accuracy"] == here.metrics["accuracy"]


def one_line_error(done: subprocess.CompletedProcess, code: int = 2) -> str:
    """The command's only stderr line about an error, after checking the exit code and that it
    is one ``fedsynth: error:`` line with no traceback."""
    assert done.returncode == code, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(lines) == 1 and lines[0].startswith("fedsynth: error: "), done.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method.rho_0=10"], "method.rho_0: no such key; did you mean method.rho_s or method.rho_o?"),
        (["federation.timout_s=5"], "federation.timout_s: no such key; did you mean federation.timeout_s?"),
        (["dataset=law_school"], "dataset=law_school: no such option; did you mean law_school_race or law_school_gender?"),
        (["federation.timeout_s=soon"], "federation.timeout_s='soon': must be a number"),
        (["method.rho_o=["], "write overrides as KEY=VALUE"),
    ],
    ids=["key typo", "section key typo", "unknown option", "wrong type", "override syntax"],
)
def test_hydras_composition_errors_are_one_line_exit_2(tmp_path, overrides, message):
    """Hydra's own errors (issue 24): one line naming the key and the nearest valid ones, never
    Hydra's multi-line text or its ``+key`` hint."""
    line = one_line_error(fedsynth(tmp_path, *overrides))
    assert message in line and "+method" not in line and "Traceback" not in line


def test_an_unknown_option_lists_the_users_own_specs_apart(tmp_path):
    """The user's config folder ($FEDSYNTH_CONFIG_DIR) is on Hydra's search path: its specs are
    listed as the user's, not mixed into the built-in ones."""
    own = tmp_path / "config" / "dataset"
    own.mkdir(parents=True)
    (own / "my_law.yaml").write_text("name: my_law\nkind: table\nnum_clients: 2\n")
    env = {**os.environ, "FEDSYNTH_CONFIG_DIR": str(tmp_path / "config")}
    command = [sys.executable, "-m", "fedsynth.cli", f"hydra.run.dir={tmp_path / 'run'}", "dataset=my_lw"]
    line = one_line_error(subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path))
    assert "did you mean my_law?" in line
    built_in, yours = line.split("built in: ")[1].split("; yours")
    assert "my_law" not in built_in and "synthetic" in built_in and yours.endswith(": my_law")


def test_every_point_of_a_sweep_is_checked_before_the_first_runs(tmp_path):
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "fedsynth.cli", "-m", f"hydra.sweep.dir={sweep}", "engine=inprocess", "method.rho_o=10,abc,20"]
    line = one_line_error(subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path))
    assert "sweep point 1 of 3 (engine=inprocess method.rho_o=abc): method.rho_o='abc': must be a number" in line
    assert not list(sweep.glob("*/results.json")) and not (sweep / "0").exists()


def test_runs_never_share_an_output_folder(tmp_path):
    """A run's folder is its own: a second run into a folder that holds a run, or that a run in
    progress holds, is one line and exit 2; the default folders of two runs started together
    differ."""
    first = fedsynth(tmp_path, "engine=inprocess", "method.k_max=2", "method.synthetic_size=20")
    assert first.returncode == 0, first.stderr[-2000:]
    before = (tmp_path / "results.json").read_bytes()
    line = one_line_error(fedsynth(tmp_path, "engine=inprocess", "method.k_max=2", "seed=1"))
    assert f"the output folder {tmp_path} holds another run's output" in line
    assert (tmp_path / "results.json").read_bytes() == before
    busy = tmp_path / "busy"
    running = subprocess.Popen(
        [sys.executable, "-m", "fedsynth.cli", f"hydra.run.dir={busy}", "engine=inprocess", "method.k_max=100000", "method.tolerance=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 120
        while not (busy / ".hydra").exists():
            assert running.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        (busy / ".hydra").rename(busy / ".hydra-moved")  # only the lock is left to tell
        line = one_line_error(fedsynth(busy, "engine=inprocess", "method.k_max=2"))
        assert f"the output folder {busy} belongs to another run in progress" in line
    finally:
        running.kill()
        running.wait()
    together = [
        subprocess.Popen([sys.executable, "-m", "fedsynth.cli", "engine=inprocess", "method.k_max=2", "method.synthetic_size=20"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
        for _ in range(2)
    ]
    paths = [process.communicate(timeout=600)[0].strip().splitlines()[-1] for process in together]
    assert all(process.returncode == 0 for process in together) and paths[0] != paths[1]
    assert all(Path(path).is_file() for path in paths)


def in_a_mount(tmp_path: Path, options: str, *overrides: str) -> subprocess.CompletedProcess:
    """``fedsynth OVERRIDES`` whose output folder is on a 1 MiB tmpfs mounted with ``options``
    in a mount namespace of its own (skips where one cannot be made)."""
    mount = tmp_path / "mount"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a mount namespace here: {probe.stderr.decode()[-200:]}")
    fill = f"head -c 1040000 /dev/zero > {mount}/fill 2>/dev/null; " if "ro" not in options else ""
    command = " ".join([sys.executable, "-m", "fedsynth.cli", f"hydra.run.dir={mount}/run", *overrides])
    script = f"mount -t tmpfs -o size=1m,{options} tmpfs {mount} && {fill}exec {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path)


@pytest.mark.parametrize("options, message", [("ro", "cannot create the output folder"), ("rw", "KiB free on its file system")])
def test_a_read_only_or_full_output_folder_is_one_line(tmp_path, options, message):
    done = in_a_mount(tmp_path, options, "engine=inprocess", "method.k_max=2")
    assert message in one_line_error(done)


def test_a_run_over_its_time_limit_is_one_line(tmp_path):
    line = one_line_error(fedsynth(tmp_path, "engine=inprocess", "engine.run_timeout_s=1", "method.k_max=100000", "method.tolerance=0"), code=1)
    assert "the run took longer than engine.run_timeout_s" in line


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
    report = Path(sys.executable).parent / "fedsynth-report"
    assert done.stdout.strip().splitlines()[-2:] == [f"sweep finished: {sweep}", f"report: {report} {sweep}"]
    assert sorted(p.parent.name for p in sweep.glob("*/results.json")) == ["0", "1"]


def test_a_deployment_sends_no_harness_report_unless_asked_and_counts_failed_nodes() -> None:
    """Issue 24: ``fedsynth-deploy`` turns the harness report off unless the overrides set it, and
    its closing line counts the client nodes that failed, not their failures."""
    from fedsynth import api
    from fedsynth.api import RunOutcome
    from fedsynth.deploy.cli import deployment_overrides

    assert api_report(deployment_overrides(["dataset=law_school_race"])) is False
    assert api_report(deployment_overrides(["federation.report_metrics=true"])) is True
    # with its defaults it deploys a table with a file (the experiments' default, synthetic, has none)
    assert api.compose(deployment_overrides([])).dataset["name"] == "law_school_race"
    assert "dataset=law_school_race" not in deployment_overrides(["dataset=dutch_gender"])
    outcome = RunOutcome(engine="deployment", theta=[0.0], failures=[
        {"node": 7, "reason": "timed out"}, {"node": 7, "reason": "invalid reply"}, {"node": 9, "reason": "crashed"},
    ])
    assert ", 2 client node(s) failed;" in outcome.summary("outcome.json")


def api_report(overrides: list[str]) -> bool:
    from fedsynth import api

    return bool(api.compose(overrides).federation.report_metrics)


def test_a_diverging_synthesis_says_why_in_one_line_per_client_and_no_traceback(tmp_path):
    """Issue 24: method.lr=1e308 passes the checks (a finite step) but makes P non-finite on every
    client; each client logs its one-line reason with the fix, the command ends in one line, exit 1."""
    done = fedsynth(tmp_path, "engine=inprocess", "method=single_shot_paper", "method.lr=1e308", "method.k_max=20")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    reasons = [line for line in output.splitlines() if "client failed on 'train'" in line]
    assert len(reasons) == 3 and all(line.endswith("lower lr or raise lambda_theta / lambda_x") for line in reasons), output[-2000:]
    last = [line for line in done.stderr.splitlines() if line.startswith("fedsynth: error: ")]
    assert len(last) == 1 and "numerics" in last[0]
