"""Deploy the Flower app on this machine as on real separate ones: a SuperLink, K SuperNodes
each with its own data file, one run, then everything stopped by PID.

    fedsynth-deploy [--tls] [--out DIR] [HYDRA_OVERRIDES ...]

The experiment is composed from conf/ like the ``fedsynth`` command (``engine`` is ignored):
e.g. ``dataset=law_school_race method.k_max=200`` (the default dataset, ``synthetic``, has no
file, so give a table dataset). The dataset's file is split into K disjoint random parts, one
CSV per SuperNode (``--node-config 'data-file="..." partition-id=k'``); each node encodes its own
file with the dataset spec and keeps 20 % (``partition.test_fraction``) for testing. Everything
listens on 127.0.0.1 only.

``--tls``: a throw-away CA and server certificate secure the SuperLink (HTTPS), SuperNode
authentication is on, each SuperNode gets an ECDSA P-384 key registered with
``flwr supernode register``, and the SuperNodes reach the SuperLink through
:mod:`fedsynth.federated.fleet_gate` (the Fleet API only). One extra, unregistered SuperNode is
started to show it is refused, and an outsider's ``flwr supernode register`` and ``flwr ls``
through the gate are shown refused.

Writes to ``--out`` (default ``outputs/deploy-<time>``): ``outcome.json`` (atomically, only for a
successful run), ``summary.json``, the node data files and every process's log. The experiment
and its data are checked first (as by the ``fedsynth`` command); an error prints one line,
``fedsynth: error: ...``, and exits 2 (before anything starts) or 1 (the run failed, e.g. a
SuperNode died); ``FEDSYNTH_TRACEBACK=1`` shows the traceback. SIGINT, SIGTERM and SIGHUP stop
every process it started. See docs/deployment.md for the same on separate machines.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedsynth.checks import ConfigError, check_experiment_config
from fedsynth.cli import STOP_SIGNALS, TRACEBACK_ENV, Stopped, fail
from fedsynth.data import DataError, DatasetSpec, read_csv_file, resolve_data_file
from fedsynth.federated import RunOutcome, processes
from fedsynth.federated.experiment import APP_ROOT, compose_experiment, run_config_for
from fedsynth.federated.outcome import OUTCOME_FILE, RunFailed, failure_path

CONNECTION = "fedsynth-deploy"


def split_data_file(experiment: dict, dest: Path) -> list[Path]:
    """Write the dataset's file as ``dataset.num_clients`` disjoint random CSV parts."""
    spec = DatasetSpec.from_config(experiment["dataset"])
    if spec.kind != "table":
        raise ConfigError(f"dataset={spec.name}: has no file to give the SuperNodes; use a table dataset (e.g. dataset=law_school_race)")
    frame = read_csv_file(resolve_data_file(spec, experiment.get("data_dir")))
    order = np.random.default_rng(experiment["seed"]).permutation(len(frame))
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, rows in enumerate(np.array_split(order, spec.num_clients)):
        path = dest / f"client_{k}.csv"
        frame.iloc[np.sort(rows)].to_csv(path, index=False)
        paths.append(path.resolve())
    return paths


def make_certificates(dest: Path, hosts: tuple[str, ...] = (processes.LOCALHOST,)) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for localhost and the IP addresses ``hosts``:
    (ca, cert, key) PEMs."""
    dest.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    def certificate(subject: str, public_key, issuer: str, signing_key, ca: bool, sans=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = certificate("fedsynth throw-away CA", ca_key.public_key(), "fedsynth throw-away CA", ca_key, True)
    server_key = ec.generate_private_key(ec.SECP384R1())
    sans = [*(x509.IPAddress(ipaddress.ip_address(host)) for host in hosts), x509.DNSName("localhost")]
    server_cert = certificate("127.0.0.1", server_key.public_key(), "fedsynth throw-away CA", ca_key, False, sans)

    paths = dest / "ca.pem", dest / "server.pem", dest / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    write_private(
        paths[2],
        server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return paths


def write_private(path: Path, data: bytes) -> None:
    """Write a private key into a new file that is created 0600 (never readable by others, not
    even for a moment)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def make_node_key(dest: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair in OpenSSH format for SuperNode authentication: (private, public)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = dest / name, dest / f"{name}.pub"
    write_private(
        private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return private, public


def register_node(public_key: Path, env: dict[str, str]) -> None:
    """``flwr supernode register KEY.pub CONNECTION``."""
    completed = subprocess.run(
        [processes.flower_command("flwr"), "supernode", "register", str(public_key), CONNECTION],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"flwr supernode register failed: {completed.stdout}{completed.stderr}")


def start_fleet_gate(listen: str, upstream: str, certificates: tuple[Path, Path, Path], env: dict[str, str], log_path: Path, prefix: list[str] | None = None) -> subprocess.Popen:
    """Start :mod:`fedsynth.federated.fleet_gate` on ``listen`` in front of the SuperLink at
    ``upstream`` and wait until it listens (``prefix``: e.g. ``ip netns exec NS``)."""
    ca, cert, key = certificates
    command = [*(prefix or []), sys.executable, "-m", "fedsynth.federated.fleet_gate", "--listen", listen,
               "--upstream", upstream, "--certfile", str(cert), "--keyfile", str(key), "--upstream-ca", str(ca)]
    gate = processes.start_process(command, env, log_path)
    deadline = time.monotonic() + 60
    while "fleet gate listening" not in (log_path.read_text(errors="replace") if log_path.exists() else ""):
        if gate.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the fleet gate did not start:\n{processes.tail(log_path)}")
        time.sleep(0.1)
    return gate


def outsider_control_refused(gate_address: str, ca: Path, public_key: Path, workdir: Path, prefix: list[str] | None = None) -> bool:
    """Whether a party holding only the CA certificate and network access to the gate is refused
    the Control API: ``flwr supernode register`` of its own key and ``flwr ls`` both fail."""
    env = processes.flower_env(workdir)
    processes.write_connection(env, "outsider", gate_address, root_certificates=ca)
    attempts = [["supernode", "register", str(public_key), "outsider"], ["ls", "outsider"]]
    return all(
        subprocess.run(
            [*(prefix or []), processes.flower_command("flwr"), *arguments],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
        ).returncode != 0
        for arguments in attempts
    )


def deploy(overrides: list[str], out: Path, tls: bool) -> RunOutcome:
    """Start the SuperLink and SuperNodes, run the app, stop everything; return the outcome."""
    from hydra.errors import HydraException

    start = time.perf_counter()
    try:
        experiment = compose_experiment(overrides)
    except HydraException as err:
        raise ConfigError(f"overrides {overrides}: {' '.join(str(err).split())}") from None
    check_experiment_config(experiment)
    num_clients = int(experiment["dataset"]["num_clients"])
    data_files = split_data_file(experiment, out / "data")
    env = processes.flower_env(out)
    results_path = out / OUTCOME_FILE
    results_path.unlink(missing_ok=True)  # an earlier outcome in out/ is not this run's
    failure_path(results_path).unlink(missing_ok=True)
    run_config_file = out / "run_config.toml"
    run_config_file.write_text(tomli_w.dumps(run_config_for(experiment, results_path)), encoding="utf-8")

    port = processes.free_port()
    address = f"{processes.LOCALHOST}:{port}"
    superlink_command = [
        processes.flower_command("flower-superlink"),
        "--host", processes.LOCALHOST,
        "--port", str(port),
        "--database", str(out / "superlink.db"),
        "--disable-runtime-dependency-installation",
    ]
    node_security: list[list[str]] = [["--insecure"]] * num_clients
    if tls:
        ca, cert, key = make_certificates(out / "certificates")
        superlink_command += ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
        superlink_command += ["--enable-supernode-auth"]
    else:
        superlink_command += ["--insecure"]

    started: list[subprocess.Popen] = []  # flwr run, SuperNodes, the gate, then the SuperLink: stopped in this order
    node_address = address
    superlink = processes.start_process(superlink_command, env, out / "superlink.log")
    tracker = processes.SessionTracker([superlink])
    try:
        scheme = "https" if tls else "http"
        processes.wait_until_ready(
            f"{scheme}://{address}/health", superlink, out / "superlink.log", verify=str(ca) if tls else True
        )
        processes.write_connection(env, CONNECTION, address, root_certificates=ca if tls else None)
        if tls:  # the sites reach the Fleet API through the gate only
            gate_address = f"{processes.LOCALHOST}:{processes.free_port()}"
            started.append(start_fleet_gate(gate_address, address, (ca, cert, key), env, out / "fleet_gate.log"))
            node_address = gate_address
            node_security = []
            for k in range(num_clients):
                private, public = make_node_key(out / "certificates", f"node_{k}")
                register_node(public, env)
                node_security.append(["--root-certificates", str(ca), "--auth-supernode-private-key", str(private)])

        def supernode(name: str, security: list[str], node_config: str) -> subprocess.Popen:
            command = [
                processes.flower_command("flower-supernode"),
                "--superlink", node_address,
                "--port", str(processes.free_port()),
                "--node-config", node_config,
                *security,
            ]
            process = processes.start_process(command, env, out / f"{name}.log")
            started.append(process)
            return process

        nodes = [
            supernode(f"supernode_{k}", node_security[k], f'data-file="{path}" partition-id={k}')
            for k, path in enumerate(data_files)
        ]
        tracker.roots += nodes  # a killed SuperNode's flwr-clientapp is stopped too
        if tls:
            intruder_key, intruder_public = make_node_key(out / "certificates", "unregistered")
            intruder = supernode(
                "supernode_unregistered",
                ["--root-certificates", str(ca), "--auth-supernode-private-key", str(intruder_key)],
                f'data-file="{data_files[0]}" partition-id=0',
            )

        run_log = out / "run.log"
        runner = processes.start_flwr_run(processes.stage_app(APP_ROOT, out / "app"), CONNECTION, run_config_file, env, run_log)
        started.insert(0, runner)
        run_id = processes.started_run_id(runner, run_log)
        followers = _followers(out, num_clients, run_log)
        with followers, processes.control_client(address, root_certificates=ca if tls else None) as control:
            status = processes.wait_for_run(
                control,
                run_id,
                timeout=float(experiment["federation"]["timeout_s"]) * 3,
                watch=[superlink, *nodes],
                result_file=results_path,
                tracker=tracker,
            )
        outcome = processes.read_run_outcome(status, results_path, runner, run_log).finish("deployment", start)
        if tls:
            outcome.info["unregistered_node_refused"] = _refused(intruder, out / "supernode_unregistered.log")
            outcome.info["outsider_control_refused"] = outsider_control_refused(
                gate_address, ca, intruder_public, out / "outsider"
            )
        outcome.write_json(results_path)
        return outcome
    finally:
        tracker.update()
        for process in started:
            processes.stop_process(process, grace_s=5.0)
        processes.stop_process(superlink, grace_s=5.0, sessions=tracker.sessions)


def _followers(out: Path, num_clients: int, run_log: Path) -> contextlib.ExitStack:
    """Show the app lines of the SuperNodes' logs (the clients' progress) and of the run's log (the
    server's summary) while the run goes on; leave the returned stack to stop."""
    stack = contextlib.ExitStack()
    sources = [(out / f"supernode_{k}.log", f"supernode {k}") for k in range(num_clients)] + [(run_log, "server")]
    for log_path, source in sources:
        stack.enter_context(
            processes.LogFollower(
                log_path, keep=processes.APP_LINE.search, on_line=functools.partial(processes.show_app_line, source=source)
            )
        )
    return stack


def _refused(process: subprocess.Popen, log_path: Path) -> bool:
    """Whether the unregistered SuperNode was turned away: the SuperLink refused to activate it
    and it exited with an error (Flower exit code 305) instead of joining the run."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    return process.poll() not in (None, 0) and "Failed to activate SuperNode" in text


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fedsynth-deploy`` console script."""
    parser = argparse.ArgumentParser(prog="fedsynth-deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls", action="store_true", help="TLS, SuperNode authentication, an unregistered node")
    parser.add_argument("--out", type=Path, default=None, help="output folder (must not exist yet)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/config.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the run's progress
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per status request
    out = (args.out or APP_ROOT / "outputs" / f"deploy-{time.strftime('%Y-%m-%d_%H-%M-%S')}").resolve()
    if out.exists():
        parser.error(f"--out {out} exists already: name a new folder (nothing is overwritten)")
    out.mkdir(parents=True)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)
    try:
        outcome = deploy(args.overrides, out, args.tls)
    except Stopped as stop:
        fail(f"stopped by {stop}; every process of the deployment was stopped", 128 + stop.signum, now=True)
    except (ConfigError, DataError) as err:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        fail(err, 2)
    except RuntimeError as err:  # a failed run: RunFailed, or Flower's own failure with its log
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        fail(err if isinstance(err, RunFailed) else f"deployment run failed: {err}", 1)
    summary = {key: getattr(outcome, key) for key in ("metrics", "failures", "bytes_down", "bytes_up", "timings")}
    summary["clients"] = [
        {key: client[key] for key in ("node", "client_id", "bytes_down", "bytes_up", "compute_s")}
        for client in outcome.clients
    ]
    summary["info"] = outcome.info
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2, default=str))
    print(f"fedsynth: {outcome.summary(out / OUTCOME_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
