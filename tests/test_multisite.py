"""A multi-site deployment (issue 12, item 5): the SuperLink and each SuperNode in their own
network namespace, joined by veth pairs on a private test subnet inside namespaces this test
creates and removes; TLS, SuperNode authentication and the Fleet API gate; one full
single-shot run across the sites; an outsider namespace that holds the CA certificate and can
reach the gate is refused (unregistered SuperNode, ``flwr supernode register``, ``flwr ls``).

Needs root and ``ip netns`` (iproute2): it skips with the reason where namespaces cannot be made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import tomli_w

from fedsynth import api
from fedsynth.api import RunOutcome
from fedsynth.deploy import orchestration as processes
from fedsynth.deploy.certificates import make_certificates, make_node_key
from fedsynth.deploy.cli import outsider_control_refused, split_data_file, start_fleet_gate
from fedsynth.federated.experiment import APP_ROOT, run_config_for
from fedsynth.outcome import OUTCOME_FILE
from test_federated_deploy import write_table

pytestmark = pytest.mark.slow

SUBNET = "10.77.{}.{}"
SITES = ("site0", "site1")
OUTSIDER = "outsider"
GATE_PORT = 9092


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def stop(process: subprocess.Popen) -> None:
    """Stop a started process and everything it started."""
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with contextlib.suppress(psutil.Error):
            member.terminate()
    _, left = psutil.wait_procs(family, timeout=2.0)
    for member in left:
        with contextlib.suppress(psutil.Error):
            member.kill()
    process.wait()


def ip(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *arguments], capture_output=True, text=True, check=check, timeout=30)


class Namespaces:
    """``link`` (SuperLink), one per site and one outsider, each with a veth into a bridge in
    ``link``; removed (with everything in them) by :meth:`remove`."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.names = {role: f"fs12-{tag}-{role}" for role in ("link", *SITES, OUTSIDER)}
        self.net = os.getpid() % 250 + 1
        self.address = {role: SUBNET.format(self.net, k + 1) for k, role in enumerate(self.names)}
        self.tag = tag

    def prefix(self, role: str) -> list[str]:
        return ["ip", "netns", "exec", self.names[role]]

    def create(self) -> None:
        for name in self.names.values():
            ip("netns", "add", name)
            ip("-n", name, "link", "set", "lo", "up")
        link = self.names["link"]
        ip("-n", link, "link", "add", "br0", "type", "bridge")
        ip("-n", link, "addr", "add", f"{self.address['link']}/24", "dev", "br0")
        ip("-n", link, "link", "set", "br0", "up")
        for k, role in enumerate(self.names):
            if role == "link":
                continue
            inner, outer = f"fs{self.tag}a{k}", f"fs{self.tag}b{k}"
            ip("link", "add", inner, "netns", self.names[role], "type", "veth", "peer", "name", outer, "netns", link)
            ip("-n", self.names[role], "addr", "add", f"{self.address[role]}/24", "dev", inner)
            ip("-n", self.names[role], "link", "set", inner, "up")
            ip("-n", link, "link", "set", outer, "master", "br0")
            ip("-n", link, "link", "set", outer, "up")

    def remove(self) -> None:
        for name in self.names.values():
            ip("netns", "del", name, check=False)


@pytest.fixture()
def namespaces():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's ip")
    spaces = Namespaces()
    try:
        spaces.create()
    except (subprocess.CalledProcessError, OSError) as err:
        spaces.remove()
        pytest.skip(f"cannot create network namespaces here: {getattr(err, 'stderr', err)}")
    try:
        yield spaces
    finally:
        spaces.remove()
        assert not any(name in ip("netns", "list").stdout for name in spaces.names.values())


def wait_for(predicate, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:g} s; logs:\n" + "\n".join(tail(p) for p in logs))
        time.sleep(0.2)


def test_a_single_shot_run_across_sites_with_an_outsider_refused(tmp_path: Path, namespaces: Namespaces) -> None:
    table = tmp_path / "table.csv"
    write_table(table, 400)
    experiment = api.check(api.compose([
        "dataset=csv", f"dataset.file={table}", "dataset.num_clients=2",
        "dataset.label.column=label", "dataset.label.positive=1",
        "dataset.sensitive.column=group", "dataset.sensitive.privileged=1",
        "method.k_max=3", "method.synthetic_size=30", "federation.timeout_s=120",
        "federation.report_metrics=true",
    ]))
    data_files = split_data_file(experiment, tmp_path / "data")
    certificates = make_certificates(tmp_path / "certificates", hosts=("127.0.0.1", namespaces.address["link"]))
    ca = certificates[0]
    env = processes.flower_env(tmp_path)
    results = tmp_path / OUTCOME_FILE
    run_config = tmp_path / "run_config.toml"
    run_config.write_text(tomli_w.dumps(run_config_for(experiment, results)), encoding="utf-8")
    link = namespaces.prefix("link")
    superlink_port = 9093
    started: list = []
    logs: list[Path] = []

    def start(name: str, command: list[str]):
        logs.append(tmp_path / f"{name}.log")
        process = processes.start(command, env, logs[-1])
        started.append(process)
        return process

    try:
        superlink = start("superlink", [
            *link, processes.flower_command("flower-superlink"), "--host", "127.0.0.1", "--port", str(superlink_port),
            "--database", str(tmp_path / "state.db"), "--disable-runtime-dependency-installation",
            "--ssl-ca-certfile", str(ca), "--ssl-certfile", str(certificates[1]), "--ssl-keyfile", str(certificates[2]),
            "--enable-supernode-auth",
        ])
        wait_for(lambda: "Starting the SuperLink Fleet HTTP API" in logs[0].read_text(errors="replace"), 60, "no SuperLink", logs)
        gate_address = f"{namespaces.address['link']}:{GATE_PORT}"
        started.append(start_fleet_gate(
            gate_address, f"127.0.0.1:{superlink_port}", certificates, env, tmp_path / "gate.log", prefix=link
        ))
        logs.append(tmp_path / "gate.log")
        # the operator works on the SuperLink's machine: the Control API on its 127.0.0.1
        processes.write_connection(env, "operator", f"127.0.0.1:{superlink_port}", root_certificates=ca)
        nodes = []
        for k, (site, data) in enumerate(zip(SITES, data_files)):
            private, public = make_node_key(tmp_path / "certificates", f"node_{k}")
            registered = subprocess.run(
                [*link, processes.flower_command("flwr"), "supernode", "register", str(public), "operator"],
                env=env, capture_output=True, text=True, timeout=120,
            )
            assert registered.returncode == 0, registered.stdout + registered.stderr
            nodes.append(start(site, [
                *namespaces.prefix(site), processes.flower_command("flower-supernode"), "--superlink", gate_address,
                "--root-certificates", str(ca), "--auth-supernode-private-key", str(private),
                "--node-config", f'data-file="{data}" partition-id={k}',
            ]))

        # the outsider: the CA certificate and a route to the gate, nothing else
        outsider_key, outsider_public = make_node_key(tmp_path / "certificates", "outsider")
        intruder = start("outsider_supernode", [
            *namespaces.prefix(OUTSIDER), processes.flower_command("flower-supernode"), "--superlink", gate_address,
            "--root-certificates", str(ca), "--auth-supernode-private-key", str(outsider_key),
            "--node-config", f'data-file="{data_files[0]}" partition-id=0',
        ])
        assert outsider_control_refused(
            gate_address, ca, outsider_public, tmp_path / "outsider", prefix=namespaces.prefix(OUTSIDER)
        )
        direct = subprocess.run(  # the SuperLink's own port is not reachable from another namespace
            [*namespaces.prefix(OUTSIDER), sys.executable, "-c",
             f"import socket; socket.create_connection(('{namespaces.address['link']}', {superlink_port}), timeout=5)"],
            capture_output=True, text=True, timeout=60,
        )
        assert direct.returncode != 0 and "Connection refused" in direct.stderr

        runner = start("run", [
            *link, processes.flower_command("flwr"), "run", str(processes.stage_app(APP_ROOT, tmp_path / "app")),
            "operator", "--run-config", str(run_config), "--stream",
        ])
        wait_for(lambda: results.is_file() or superlink.poll() is not None, 400, "no results", logs)
        outcome = RunOutcome.read_json(results)
        assert outcome.failures == [] and len(outcome.clients) == 2
        assert outcome.info["synthetic_rows"] and all(v == 30 for v in outcome.info["synthetic_rows"].values())
        assert all(c["counts"]["n"] == 40.0 for c in outcome.clients)
        wait_for(lambda: intruder.poll() is not None, 60, "the outsider's SuperNode was not turned away", logs)
        assert intruder.returncode != 0
        assert "Failed to activate SuperNode" in (tmp_path / "outsider_supernode.log").read_text(errors="replace")
        assert all(node.poll() is None for node in nodes) and runner is not None
    finally:
        for process in reversed(started):
            stop(process)
    assert all(process.poll() is not None for process in started)
