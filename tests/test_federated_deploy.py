"""fedsynth-deploy (fedsynth/deploy) end to end: a real SuperLink and SuperNodes on 127.0.0.1, each
SuperNode with its own data file, one run, everything stopped afterwards (a stop signal or a
SIGKILL of the command included); insecure, and with TLS and SuperNode authentication (an
unregistered SuperNode is refused)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fedsynth.data import SyntheticSpec, generate_synthetic
from fedsynth.api import RunOutcome
from fedsynth.outcome import OUTCOME_FILE

pytestmark = pytest.mark.slow

DEPLOY = Path(sys.executable).parent / "fedsynth-deploy"


def write_table(path: Path, rows: int) -> None:
    """A small CSV table: numeric features f0.., a 0/1 column ``group``, a -1/1 column ``label``."""
    data = generate_synthetic(SyntheticSpec(num_rows=rows, num_features=3))
    frame = pd.DataFrame(data.x.numpy(), columns=[f"f{j}" for j in range(data.num_features)])
    frame["group"] = data.s.numpy().astype(int)
    frame["label"] = data.y.numpy().astype(int)
    frame.to_csv(path, index=False)


def deploy(tmp_path: Path, *options: str, report: bool = True) -> Path:
    """Run fedsynth-deploy on a 400-row table split over 2 SuperNodes, with the harness report
    asked for (``report``) or the deployment's default (none); return its output folder."""
    table = tmp_path / "table.csv"
    write_table(table, 400)
    out = tmp_path / "deploy"
    completed = subprocess.run(
        [
            str(DEPLOY), *options, "--out", str(out),
            "dataset=csv", f"dataset.file={table}", "dataset.num_clients=2",
            "dataset.label.column=label", "dataset.label.positive=1",
            "dataset.sensitive.column=group", "dataset.sensitive.privileged=1",
            "method.k_max=3", "method.synthetic_size=30", "method.synthetic_labels=proportional",
            "federation.timeout_s=120", *(["federation.report_metrics=true"] if report else []),
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    for k in range(2):  # the clients' progress, from the SuperNodes' logs, reached the terminal
        assert f"supernode {k}: client {k}: outer iteration 3/3, P = " in completed.stderr, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1] == f"fedsynth: {RunOutcome.read_json(out / OUTCOME_FILE).summary(out / OUTCOME_FILE)}"
    shown = "fedsynth: accuracy=" if report else "fedsynth: no client metrics (federation.report_metrics=false)"
    assert shown in completed.stdout and "HTTP Request" not in completed.stderr
    return out


def nothing_left_running(out: Path) -> bool:
    """Whether every process fedsynth-deploy started is gone (their command lines name ``out``)."""
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return str(out) not in listing


def test_deploy_local_runs_the_app_on_superlink_and_supernodes(tmp_path: Path) -> None:
    out = deploy(tmp_path)

    outcome = RunOutcome.read_json(out / OUTCOME_FILE)
    assert outcome.engine == "deployment" and outcome.failures == []
    assert [c["client_id"] for c in outcome.clients] == [0, 1]
    assert all(c["bytes_up"]["train"] > 0 for c in outcome.clients)
    assert set(outcome.metrics) >= {"accuracy", "spd"}
    # Each node encoded its own file (half of the 400 rows) and tested on 20 % of it.
    assert [len(pd.read_csv(out / "data" / f"client_{k}.csv")) for k in range(2)] == [200, 200]
    assert [c["counts"]["n"] for c in outcome.clients] == [40.0, 40.0]
    # Without --tls too, the SuperNodes reached the SuperLink through the gate and its size bound.
    assert re.search(r"fleet gate listening .* \(request bodies up to \d+ bytes", (out / "fleet_gate.log").read_text())

    assert nothing_left_running(out)


def test_deploy_local_with_tls_refuses_an_unregistered_supernode(tmp_path: Path) -> None:
    out = deploy(tmp_path, "--tls", report=False)

    outcome = RunOutcome.read_json(out / OUTCOME_FILE)
    assert outcome.failures == [] and [c["client_id"] for c in outcome.clients] == [0, 1]
    # a deployment's default: no harness report left the nodes (README: off for a deployment)
    assert outcome.metrics == {} and all(not c.get("counts") for c in outcome.clients)
    assert "harness_statistics" not in outcome.info or outcome.info["harness_statistics"] == []
    assert outcome.info["unregistered_node_refused"] is True
    assert "Failed to activate SuperNode" in (out / "supernode_unregistered.log").read_text()
    # only the Fleet API is reachable through the gate: an outsider cannot register a key or list runs
    assert outcome.info["outsider_control_refused"] is True
    # the gate bounds a body by this experiment's largest honest message (200-row parts, d = 3: well under 1 MiB + rows)
    bound = int((out / "fleet_gate.log").read_text().split("request bodies up to ")[1].split()[0])
    assert 2**20 < bound < 2**20 + 2 * 8 * 200 * 5 + 1
    assert (out / "certificates").is_dir()
    keys = [out / "certificates" / name for name in ("server.key", "supernode_0", "supernode_1", "supernode_unregistered")]
    assert all(key.stat().st_mode & 0o777 == 0o600 for key in keys)
    assert nothing_left_running(out)


def test_deploy_local_reports_a_binary_data_file_in_one_line_before_starting(tmp_path: Path) -> None:
    binary = tmp_path / "table.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    completed = subprocess.run(
        [
            str(DEPLOY), "--out", str(tmp_path / "deploy"),
            "dataset=csv", f"dataset.file={binary}", "dataset.label.column=label", "dataset.label.positive=1",
            "dataset.sensitive.column=group", "dataset.sensitive.privileged=1",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [f"fedsynth: error: {binary}: not a UTF-8 text CSV file (is it binary or another encoding?)"]
    assert not (tmp_path / "deploy").exists()  # nothing was started or written


def busy_deployment(tmp_path: Path) -> tuple[subprocess.Popen, Path, dict[int, str]]:
    """Start fedsynth-deploy on a 2-client run that would go on for a long time, wait until its
    clients compute, and return the process, its output folder and its process tree then."""
    from test_process_cleanup import descendants

    table = tmp_path / "table.csv"
    write_table(table, 400)
    out = tmp_path / "deploy"
    script = subprocess.Popen(
        [
            str(DEPLOY), "--out", str(out),
            "dataset=csv", f"dataset.file={table}", "dataset.num_clients=2",
            "dataset.label.column=label", "dataset.label.positive=1",
            "dataset.sensitive.column=group", "dataset.sensitive.privileged=1",
            "method.k_max=100000", "method.tolerance=0", "method.synthetic_size=30",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    deadline = time.monotonic() + 240
    while not any("flwr-clientapp" in line for line in descendants(script.pid).values()):
        assert script.poll() is None and time.monotonic() < deadline, "the deployment did not get going"
        time.sleep(0.5)
    tree = descendants(script.pid)
    return script, out, tree


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_to_deploy_local_ends_every_process_it_started(tmp_path: Path, signum: int) -> None:
    from test_process_cleanup import survivors

    script, out, tree = busy_deployment(tmp_path)
    assert sum("flower-supernode" in line for line in tree.values()) == 2
    sent = time.monotonic()
    script.send_signal(signum)
    assert script.wait(timeout=30) == 128 + signum
    assert survivors(tree, wait_s=max(0.0, 10.0 - (time.monotonic() - sent))) == {}
    last = script.stderr.read().strip().splitlines()[-1]
    assert last == f"fedsynth: error: stopped by {signal.Signals(signum).name}; every process of the deployment was stopped"
    assert nothing_left_running(out)


def test_a_killed_deploy_command_leaves_no_process(tmp_path: Path) -> None:
    """SIGKILL, which runs no handler: the deployment's own process (in a group of its own, a
    subreaper of what it started) ends every process when the command's end closes its pipe."""
    from test_process_cleanup import descendants, survivors

    script, out, tree = busy_deployment(tmp_path)
    time.sleep(2.0)
    tree = descendants(script.pid)
    assert sum("flower-supernode" in line for line in tree.values()) == 2
    script.kill()
    script.wait(timeout=30)
    assert survivors(tree, wait_s=15.0) == {}
    assert nothing_left_running(out)


def test_a_dead_supernode_ends_the_deployment_with_one_line_naming_it(tmp_path: Path) -> None:
    from test_process_cleanup import survivors

    script, out, tree = busy_deployment(tmp_path)
    victim = next(pid for pid, line in tree.items() if "flower-supernode" in line.split(" ", 2)[1])
    os.kill(victim, signal.SIGKILL)
    assert script.wait(timeout=60) == 1
    assert survivors(tree, wait_s=10.0) == {}
    last = script.stderr.read().strip().splitlines()[-1]
    assert last.startswith("fedsynth: error: ") and f"flower-supernode (pid {victim}) exited" in last, last

