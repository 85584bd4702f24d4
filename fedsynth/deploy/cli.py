"""``fedsynth-deploy``: the Flower app deployed on this machine as on separate ones, a SuperLink,
K SuperNodes each with its own data file, one run, then everything stopped.

    fedsynth-deploy [--tls] [--out DIR] [HYDRA_OVERRIDES ...]

The experiment is composed and checked like the ``fedsynth`` command's (``engine`` is ignored;
with no ``dataset=`` it deploys ``law_school_race``, and the nodes send no harness report unless
``federation.report_metrics=true``). The SuperNodes reach the SuperLink through the fleet gate,
which bounds a message's size; ``--tls`` adds a CA, SuperNode authentication and the gate's
replay check. Output, errors and signals: docs/deployment.md ("Deployment on one machine")."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import tomli_w

from fedsynth import api
from fedsynth.cli import STOP_SIGNALS, one_line_errors, raise_stopped
from fedsynth.deploy import orchestration as flower
from fedsynth.data import read_csv_file
from fedsynth.deploy.certificates import make_certificates, make_node_key
from fedsynth.deploy.fleet_gate import DEFAULT_MAX_BODY_BYTES
from fedsynth.federated.experiment import APP_ROOT, run_config_for
from fedsynth.federated.lifeline import call_in_child
from fedsynth.federated.validation import reply_schema
from fedsynth.outcome import OUTCOME_FILE

CONNECTION = "fedsynth-deploy"


def split_data_file(experiment: api.Experiment, dest: Path) -> list[Path]:
    """Write the dataset's file as ``dataset.num_clients`` disjoint random CSV parts."""
    dataset = experiment.dataset
    if dataset.get("kind", "table") != "table":
        raise api.ConfigError(f"dataset={dataset['name']}: has no file to give the SuperNodes; use a table dataset (e.g. dataset=law_school_race)")
    frame = read_csv_file(Path(dataset["file"]))
    order = np.random.default_rng(experiment.seed).permutation(len(frame))
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, rows in enumerate(np.array_split(order, int(dataset["num_clients"]))):
        paths.append((dest / f"client_{k}.csv").resolve())
        frame.iloc[np.sort(rows)].to_csv(paths[-1], index=False)
    return paths


def largest_honest_body(experiment: api.Experiment, data_files: list[Path]) -> int:
    """A bound, in bytes, on any honest SuperNode message of the experiment, for the fleet gate's
    ``--max-body-bytes``: twice the float64 bytes of a table of the encoded width plus (ŝ, ŷ) with
    the most rows a client may send (its own rows, an integer ``method.synthetic_size``, or the rule
    of d, max(200, 10 (d + 1))), plus 1 MiB for the rest of the message."""
    width = reply_schema(experiment).num_features
    rows = max(max(sum(1 for _ in path.open(encoding="utf-8")) - 1 for path in data_files), 200, 10 * (width + 1))
    size = experiment.method.get("synthetic_size")
    if isinstance(size, int) and not isinstance(size, bool):
        rows = max(rows, size)
    return 2 * 8 * rows * (width + 2) + 2**20


def deploy(arguments: tuple[api.Experiment, Path, bool], send: Callable[[api.RunOutcome], None]) -> None:
    """(In the deployment's own process, :func:`~fedsynth.federated.lifeline.call_in_child`) start
    the SuperLink and SuperNodes, run the app and send its outcome; every process it started ends
    with it."""
    experiment, out, tls = arguments
    start = time.perf_counter()
    data_files = split_data_file(experiment, out / "data")
    env = flower.flower_env(out)
    results_path = out / OUTCOME_FILE
    run_config_file = out / "run_config.toml"
    run_config_file.write_text(tomli_w.dumps(run_config_for(experiment, results_path)), encoding="utf-8")
    address = f"{flower.LOCALHOST}:{flower.free_port()}"
    superlink = [
        flower.flower_command("flower-superlink"), "--host", flower.LOCALHOST, "--port", address.rsplit(":", 1)[1],
        "--database", str(out / "superlink.db"), "--disable-runtime-dependency-installation",
    ]
    if tls:
        ca, cert, key = make_certificates(out / "certificates")
        superlink += ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--enable-supernode-auth"]
    link = flower.start(superlink if tls else [*superlink, "--insecure"], env, out / "superlink.log")
    health = f"{'https' if tls else 'http'}://{address}/health"
    flower.wait_until(lambda: flower.answers(health, verify=str(ca) if tls else True), link, out / "superlink.log")
    flower.write_connection(env, CONNECTION, address, root_certificates=ca if tls else None)
    node_address = f"{flower.LOCALHOST}:{flower.free_port()}"  # the sites reach the Fleet API through the gate only
    start_fleet_gate(
        node_address, address, (ca, cert, key) if tls else None, env, out / "fleet_gate.log",
        max_body_bytes=largest_honest_body(experiment, data_files),
    )

    def supernode(name: str, node_config: str, show_as: str | None = None, registered: bool = True) -> subprocess.Popen:
        options = ["--insecure"]
        if tls:
            private, public = make_node_key(out / "certificates", name)
            if registered:
                flower.flwr(["supernode", "register", str(public), CONNECTION], env)
            options = ["--root-certificates", str(ca), "--auth-supernode-private-key", str(private)]
        command = [flower.flower_command("flower-supernode"), "--superlink", node_address, "--port", str(flower.free_port()), "--node-config", node_config, *options]
        return flower.start(command, env, out / f"{name}.log", show_as)

    nodes = [
        supernode(f"supernode_{k}", f'data-file="{path}" partition-id={k}', show_as=f"supernode {k}")
        for k, path in enumerate(data_files)
    ]
    if tls:  # a node whose key was never registered: the SuperLink must refuse it
        intruder = supernode("supernode_unregistered", f'data-file="{data_files[0]}" partition-id=0', registered=False)
    run_id = flower.submit(flower.stage_app(APP_ROOT, out / "app"), CONNECTION, run_config_file, env)
    flower.wait_for_outcome(
        results_path, run_id, lambda: flower.run_status(CONNECTION, run_id, env), [link, *nodes],
        timeout=experiment.federation.timeout_s * 3,
    )
    outcome = api.RunOutcome.read_json(results_path).finish("deployment", start)
    if tls:
        outcome.info["unregistered_node_refused"] = intruder.poll() not in (None, 0) and "Failed to activate SuperNode" in (
            out / "supernode_unregistered.log"
        ).read_text(encoding="utf-8", errors="replace")
        public_key = out / "certificates" / "supernode_unregistered.pub"
        outcome.info["outsider_control_refused"] = outsider_control_refused(node_address, ca, public_key, out / "outsider")
    outcome.write_json(results_path)
    send(outcome)


def start_fleet_gate(
    listen: str,
    upstream: str,
    certificates: tuple[Path, Path, Path] | None,
    env: dict[str, str],
    log_path: Path,
    prefix: list[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> subprocess.Popen:
    """Start :mod:`fedsynth.deploy.fleet_gate` on ``listen`` in front of the SuperLink at
    ``upstream`` and wait until it listens (``certificates``: (CA, certificate, key) for TLS, ``None``
    for plain text; ``prefix``: e.g. ``ip netns exec NS``)."""
    command = [*(prefix or []), sys.executable, "-m", "fedsynth.deploy.fleet_gate", "--listen", listen, "--upstream", upstream,
               "--max-body-bytes", str(max_body_bytes)]
    if certificates is None:
        command.append("--insecure")
    else:
        ca, cert, key = certificates
        command += ["--certfile", str(cert), "--keyfile", str(key), "--upstream-ca", str(ca)]
    gate = flower.start(command, env, log_path)
    flower.wait_until(lambda: "fleet gate listening" in log_path.read_text(errors="replace"), gate, log_path)
    return gate


def outsider_control_refused(gate_address: str, ca: Path, public_key: Path, workdir: Path, prefix: list[str] | None = None) -> bool:
    """Whether a party holding only the CA certificate and network access to the gate is refused
    the Control API: ``flwr supernode register`` of its own key and ``flwr ls`` both fail."""
    env = flower.flower_env(workdir)
    flower.write_connection(env, "outsider", gate_address, root_certificates=ca)
    attempts = [["supernode", "register", str(public_key), "outsider"], ["ls", "outsider"]]
    return all(
        subprocess.run([*(prefix or []), flower.flower_command("flwr"), *arguments], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120).returncode != 0
        for arguments in attempts
    )


REPORT_KEY = "federation.report_metrics"
DEFAULT_DATASET = "law_school_race"
"""The deployment's dataset when the overrides name none: a table with a file to split between the
SuperNodes (the experiments' default, ``synthetic``, is generated in memory and has none)."""


def deployment_overrides(overrides: list[str]) -> list[str]:
    """A deployment's overrides: the experiment harness's report off (``federation.report_metrics=false``:
    the nodes send no test counts, privacy measures or compute seconds) unless the user sets it, and
    ``dataset=``:data:`DEFAULT_DATASET` unless the user names a dataset."""
    keys = [override.lstrip("+~").split("=", 1)[0] for override in overrides]
    defaults = [] if REPORT_KEY in keys else [f"{REPORT_KEY}=false"]
    if "dataset" not in keys:
        defaults.append(f"dataset={DEFAULT_DATASET}")
    return [*defaults, *overrides]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fedsynth-deploy`` console script."""
    parser = argparse.ArgumentParser(prog="fedsynth-deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls", action="store_true", help="TLS, SuperNode authentication, an unregistered node")
    parser.add_argument("--out", type=Path, default=None, help="output folder (must not exist yet)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/config.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the run's progress
    logging.getLogger("httpx").setLevel(logging.WARNING)
    out = (args.out or APP_ROOT / "outputs" / f"deploy-{time.strftime('%Y-%m-%d_%H-%M-%S')}").resolve()
    if out.exists():
        parser.error(f"--out {out} exists already: name a new folder (nothing is overwritten)")
    for signum in STOP_SIGNALS:
        signal.signal(signum, raise_stopped)
    with one_line_errors("deployment"):
        experiment = api.check(api.compose(deployment_overrides(args.overrides)))
        out.mkdir(parents=True)
        outcome = call_in_child(deploy, (experiment, out, args.tls), name="the deployment")
    summary = {key: getattr(outcome, key) for key in ("metrics", "failures", "bytes_down", "bytes_up", "timings")}
    summary["clients"] = [{key: client[key] for key in ("node", "client_id", "bytes_down", "bytes_up", "compute_s")} for client in outcome.clients]
    summary["info"] = outcome.info
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2, default=str))
    print(f"fedsynth: {outcome.summary(out / OUTCOME_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
