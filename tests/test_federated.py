"""The federation layer without a Flower runtime: message format, run config, outcome file, the
in-process engine, the protocol's privacy and fault handling."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from flwr.app import MetricRecord, RecordDict

from fedsynth import api
from fedsynth.api import InProcessEngine, RunOutcome
from fedsynth.config import experiment_from_mapping
from fedsynth.federated import client_logic, inprocess
from fedsynth.federated.experiment import RUN_CONFIG_KEYS, experiment_json, run_config_for
from fedsynth.federated.inprocess import InProcessTransport
from fedsynth.federated.messages import EXPERIMENT, decode, encode, record_nbytes, with_experiment
from fedsynth.federated.server_logic import run_experiment
from fedsynth.methods import ClientFailure, UnansweredMessage, arrays_of, build_method, config_of, make_content, metrics_of
from fedsynth.methods.single_shot import SynthesisRequest
from federated_support import SYNTHETIC_ROWS, TINY, faulty_experiment, tiny_experiment

# ----------------------------------------------------------------------------- messages


def test_content_round_trip_through_flower_serde() -> None:
    arrays = {"x": np.arange(6.0).reshape(3, 2), "s": np.array([0.0, 1.0, 1.0]), "n": np.arange(3)}
    config = {"rho_o": 10.0, "k_max": 5, "labels": "copy", "flag": True}
    metrics = {"n": 3.0, "loss": 0.5}
    record = make_content(arrays=arrays, config=config, metrics=metrics)
    assert sorted(record) == ["arrays", "config", "metrics"]
    back = decode(encode(record))
    assert config_of(back) == config and metrics_of(back) == metrics
    assert set(arrays_of(back)) == set(arrays)
    for name, array in arrays.items():
        assert arrays_of(back)[name].dtype == array.dtype and np.array_equal(arrays_of(back)[name], array)
    assert record_nbytes(record) == len(encode(record))


def test_empty_content_is_an_empty_message() -> None:
    record = make_content(arrays={}, config={}, metrics={})
    assert list(record.keys()) == [] and record_nbytes(record) == 0
    assert arrays_of(record) == {} and config_of(record) == {} and metrics_of(record) == {}


# ----------------------------------------------------------------------------- run config


def test_run_config_carries_the_experiment_exactly() -> None:
    experiment = tiny_experiment()
    run_config = run_config_for(experiment, "outcome.json")
    assert set(run_config) == set(RUN_CONFIG_KEYS)
    assert Path(run_config["results-path"]).is_absolute()
    assert api.experiment_of_run_config(run_config) == experiment


def test_overrides_compose_the_bundled_conf_like_flwr_run_does() -> None:
    composed = api.experiment_of_run_config({"overrides": " ".join(TINY)})
    assert composed == tiny_experiment()
    assert composed.method["k_max"] == 3 and composed.dataset["name"] == "synthetic"


@pytest.mark.parametrize(
    "run_config, message",
    [
        ({"experiment": "{}", "overrides": "seed=1"}, "not both"),
        ({"unknown": "1"}, "unknown run config keys"),
        ({"experiment": json.dumps({"seed": 0})}, "dataset"),
    ],
)
def test_bad_run_config_is_refused(run_config: dict, message: str) -> None:
    with pytest.raises(api.ConfigError, match=message):
        api.experiment_of_run_config(run_config)


@pytest.mark.parametrize(
    "section, value, message",
    [
        ("partition", {"scheme": "iid", "alpha": 1}, r"^partition.alpha: no such key; did you mean partition.dirichlet_alpha\?$"),
        ("federation", {"timeout_s": "soon"}, r"^federation.timeout_s='soon': must be a number$"),
        ("model", {"fit_intercept": "maybe"}, r"^model.fit_intercept='maybe': must be true or false$"),
        ("seed", 1.5, r"^seed=1.5: must be an integer$"),
        ("federation", {"min_clients": 0}, r"^federation.min_clients=0: must be >= 1$"),
        ("partition", {"test_fraction": 2}, r"^partition.test_fraction=2: must be between 0 and 1$"),
    ],
)
def test_experiment_sections_are_checked_against_their_schema(section: str, value: object, message: str) -> None:
    """One route from a mapping to an experiment (the command's config, a client's message):
    OmegaConf types it against the dataclasses, each section's rules run once."""
    experiment = {**tiny_experiment().to_dict(), section: value}
    with pytest.raises(ValueError, match=message):
        experiment_from_mapping(experiment)


def test_min_clients_above_client_count_is_refused() -> None:
    with pytest.raises(api.ConfigError, match="min_clients"):
        tiny_experiment("federation.min_clients=4")


# ----------------------------------------------------------------------------- outcome file


def test_the_outcome_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out" / "outcome.json"
    RunOutcome(engine="x", theta=[np.float64(1.5)], metrics={"accuracy": np.float64(0.5)}).write_json(path)
    assert RunOutcome.read_json(path).theta == [1.5]

    def disk_full(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", disk_full)  # the second write fails half-way
    with pytest.raises(OSError, match="disk full"):
        RunOutcome(engine="y", theta=[2.0]).write_json(path)
    assert RunOutcome.read_json(path).engine == "x"  # the old file, intact
    assert [p.name for p in path.parent.iterdir()] == ["outcome.json"]  # no temporary left


# ----------------------------------------------------------------------------- in-process runs


class RecordingTransport:
    """Wraps a transport and keeps a copy of every message in both directions."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.log: list[tuple[str, int, RecordDict, RecordDict | ClientFailure]] = []

    def nodes(self) -> list[int]:
        return self.inner.nodes()

    def exchange(self, message_type, contents, timeout):
        replies = self.inner.exchange(message_type, contents, timeout)
        for node, content in contents.items():
            self.log.append((message_type, node, decode(encode(content)), replies[node]))
        return replies


@pytest.fixture(scope="module")
def tiny_outcome() -> RunOutcome:
    return InProcessEngine().run(tiny_experiment())


def test_in_process_run_reports_per_client_metrics_and_traffic(tiny_outcome: RunOutcome) -> None:
    out = tiny_outcome
    assert out.engine == "inprocess" and out.failures == []
    assert out.round_trips == 1 and [s["action"] for s in out.sends] == ["train", "evaluate"]
    assert [c["client_id"] for c in out.clients] == [0, 1, 2]
    assert set(out.metrics) >= {"accuracy", "spd", "covariance", "eod"}
    assert all(set(c["metrics"]) >= {"accuracy", "spd"} for c in out.clients)
    assert out.bytes_up == sum(sum(c["bytes_up"].values()) for c in out.clients)
    assert out.bytes_down == sum(sum(c["bytes_down"].values()) for c in out.clients)
    assert all(c["bytes_up"]["train"] > 0 and c["compute_s"]["train"] > 0 for c in out.clients)
    assert out.timings["wall_s"] >= out.timings["server_s"] > 0
    assert len(out.theta) == 5 + 1 + 1  # x, s, intercept


def test_protocol_sends_only_synthetic_arrays_and_the_model() -> None:
    """Every message of the protocol: nothing beyond (x̂, ŝ, ŷ) leaves a client, only the
    synthesis configuration and θ reach it, with the experiment (reporting off, as outside an
    experiment)."""
    experiment = tiny_experiment("federation.report_metrics=false")
    transport = RecordingTransport(InProcessTransport(3, inprocess._pool(3, "off")))
    out = run_experiment(experiment, transport, engine="inprocess")
    assert out.failures == [] and out.metrics == {}
    for *_, sent, _ in transport.log:
        assert dict(sent.config_records.pop(EXPERIMENT)) == {"json": experiment_json(experiment), "point": 0}

    num_features = experiment.dataset["generator"]["num_features"]
    assert [message_type for message_type, *_ in transport.log] == ["train"] * 3 + ["evaluate"] * 3
    for message_type, node, sent, reply in transport.log:
        assert isinstance(reply, RecordDict), (node, reply)
        if message_type == "train":
            assert list(sent.keys()) == ["config"]
            train_config = sent.config_records["config"]
            # the rows, and the noisy size N + Laplace(1) that weighs them in the union (the default
            # union_weights: noisy); method=single_shot_paper sends the rows alone
            assert list(reply.keys()) == ["arrays", "metrics"] and list(metrics_of(reply)) == ["num-examples"]
            arrays = arrays_of(reply)
            assert sorted(arrays) == ["s", "x", "y"]
            # The row count is the server's N_s, not the client's dataset size.
            assert arrays["x"].shape == (SYNTHETIC_ROWS, num_features)
            assert arrays["s"].shape == arrays["y"].shape == (SYNTHETIC_ROWS,)
            assert set(np.unique(arrays["s"])) <= {0.0, 1.0} and set(np.unique(arrays["y"])) <= {-1.0, 1.0}
        else:
            assert sorted(sent.keys()) == ["arrays", "config"] and list(sent.array_records["arrays"]) == ["theta"]
            # θ comes with the same synthesis request as train: the client evaluates with it
            assert dict(sent.config_records["config"]) == dict(train_config)
            assert list(reply.keys()) == []  # metrics stay on the client
    assert all(c["bytes_up"]["evaluate"] == 0 for c in out.clients)


def test_synthesis_request_is_one_mapping_it_writes_and_parses_itself() -> None:
    method = build_method(tiny_experiment("method.inner.max_iter=7", "method.synthetic_size=full", "method.synthetic_labels=copy").method)
    request = method.synthesis_request()
    config = request.to_config()
    assert list(config) == ["request"]
    back = SynthesisRequest.from_config(config_of(decode(encode(make_content(config=config)))))
    assert back == request and back.config.inner.max_iter == 7 and back.config.synthetic_size is None
    broken = json.loads(config["request"])
    broken["config"]["k_max"] = "many"
    with pytest.raises(ValueError, match=r"synthesis request.config.k_max must be int, got 'many'"):
        SynthesisRequest.from_config({"request": json.dumps(broken)})
    with pytest.raises(ValueError, match="needs config key 'request'"):
        SynthesisRequest.from_config({"rho_o": 10.0})


def test_a_client_loads_its_data_once_per_run(monkeypatch) -> None:
    """Every message of a run on one node reuses the node's part; a node that missed ``train``
    still evaluates θ with the request that comes with it."""
    loads = []
    real = client_logic.load_client_data
    monkeypatch.setattr(client_logic, "load_client_data", lambda experiment, node: loads.append(node) or real(experiment, node))
    experiment = tiny_experiment("seed=4711")  # a seed no other test uses: nothing cached yet
    text = experiment_json(experiment)
    method = build_method(experiment.method)
    train = with_experiment(make_content(config=method.synthesis_request().to_config()), text, 0)
    node, other = {"partition-id": 1, "num-partitions": 3}, {"partition-id": 2, "num-partitions": 3}
    state = RecordDict()
    rows = client_logic.answer_message("train", train, node, state)
    theta = np.zeros(rows.array_records["arrays"]["x"].numpy().shape[1] + 2)  # a = (x, s), intercept
    evaluate = with_experiment(make_content(arrays={"theta": theta}, config=method.evaluation_config()), text, 0)
    first = client_logic.answer_message("evaluate", evaluate, node, state)
    again = client_logic.answer_message("evaluate", evaluate, node, state)
    client_logic.answer_message("evaluate", evaluate, other, RecordDict())
    assert loads == [node, other]
    assert dict(first.metric_records["metrics"]) == dict(again.metric_records["metrics"])


def test_a_client_process_keeps_the_parts_of_a_few_data_configurations_only(monkeypatch) -> None:
    """A process that serves many sweep points (a Flower run serves a whole sweep) keeps the
    parts of the last :data:`~fedsynth.federated.client_logic.DATA_CONFIGS_KEPT` data
    configurations: memory stays bounded, and a configuration dropped is loaded again."""
    loads = []
    real = client_logic.load_client_data
    monkeypatch.setattr(client_logic, "load_client_data", lambda experiment, node: loads.append(experiment.seed) or real(experiment, node))
    node = {"partition-id": 0, "num-partitions": 3}
    seeds = [5000 + k for k in range(client_logic.DATA_CONFIGS_KEPT + 1)]  # seeds no other test uses

    def evaluate(seed: int) -> None:
        experiment = tiny_experiment(f"seed={seed}")
        theta = np.zeros(experiment.dataset["generator"]["num_features"] + 2)
        content = make_content(arrays={"theta": theta}, config=build_method(experiment.method).evaluation_config())
        client_logic.answer_message("evaluate", with_experiment(content, experiment_json(experiment), 0), node, RecordDict())

    for seed in [*seeds, seeds[-1], seeds[1], seeds[0]]:
        evaluate(seed)
    assert loads == [*seeds, seeds[0]]  # the last ones kept; the first, dropped, loaded again


def test_a_client_answers_only_the_message_types_its_method_defines(caplog) -> None:
    """``answer_message`` calls the method's handler of the message type; a type the method has
    no handler for, or one that is not a Flower message type, or a content with a record beyond
    arrays / config / metrics, is one line on the client's log and a ``config`` category on the
    wire."""
    experiment = api.check(api.compose(["dataset=synthetic", "dataset.generator.num_rows=600", "method=local"]))
    text, node = experiment_json(experiment), {"partition-id": 0, "num-partitions": 3}
    method = build_method(experiment.method)
    data = client_logic.load_client_data(experiment, node)
    with pytest.raises(UnansweredMessage, match=r"^method 'local' does not answer 'train' messages$"):
        method.train(make_content(), data, {})
    theta = with_experiment(make_content(arrays={"theta": np.zeros(0)}), text, 0)
    evaluated = client_logic.answer_message("evaluate", theta, node, RecordDict())
    assert metrics_of(evaluated) == metrics_of(method.evaluate(make_content(), data, {}))
    for message_type, content in [
        ("train", with_experiment(make_content(), text, 0)),
        ("run_server", with_experiment(make_content(), text, 0)),
        ("evaluate", with_experiment(RecordDict({"harness": MetricRecord({"n": 1.0})}), text, 0)),
        ("evaluate", make_content(arrays={"theta": np.zeros(0)})),
    ]:
        with pytest.raises(client_logic.ClientError, match=r"^config: "):
            client_logic.answer_message(message_type, content, node, RecordDict())
    logged = [record.getMessage() for record in caplog.records]
    assert any("method 'local' does not answer 'train' messages" in line for line in logged)
    assert any("message type 'run_server' is not one of" in line for line in logged)
    assert any("unexpected record(s) ['harness']" in line for line in logged)
    assert any("the message carries no 'experiment' record" in line for line in logged)


def test_a_client_keeps_its_method_state_within_a_point_and_starts_the_next_afresh() -> None:
    """The node's ``Context.state`` outlives the points a Flower run serves (a sweep's): the
    synthetic rows the method keeps for its privacy report and the compute seconds it reports
    belong to one point; a node that gets no ``train`` in the next point reports no stale rows."""
    experiment = tiny_experiment("seed=4712")
    text, node = experiment_json(experiment), {"partition-id": 0, "num-partitions": 3}
    method = build_method(experiment.method)
    state = RecordDict()
    rows = client_logic.answer_message("train", with_experiment(make_content(config=method.synthesis_request().to_config()), text, 0), node, state)
    theta = np.zeros(rows.array_records["arrays"]["x"].numpy().shape[1] + 2)
    evaluate = make_content(arrays={"theta": theta}, config=method.evaluation_config())
    same_point = client_logic.answer_message("evaluate", with_experiment(evaluate, text, 0), node, state)
    assert "min_distance" in metrics_of(same_point)
    assert sorted(state.metric_records[client_logic.STATE_COMPUTE]) == ["evaluate", "train"]
    next_point = client_logic.answer_message("evaluate", with_experiment(evaluate, text, 1), node, state)
    assert "min_distance" not in metrics_of(next_point)
    assert metrics_of(next_point)["n"] == metrics_of(same_point)["n"]
    assert sorted(state.metric_records[client_logic.STATE_COMPUTE]) == ["evaluate"]
    assert state.config_records[client_logic.STATE_POINT]["point"] == 1


def test_crash_timeout_and_invalid_payload_are_reported_by_node_and_reason() -> None:
    faults = {"1": "crash", "2": "sleep", "3": "garbage"}
    # the timeout leaves room for the replacement of the timed-out process to start (and import
    # torch) before the evaluate round's deadline, also on a loaded machine
    out = InProcessEngine().run(faulty_experiment(faults, "federation.timeout_s=8", sleep_s=10))
    reasons = {f["node"]: f["reason"] for f in out.failures}
    assert sorted(reasons) == [2, 3, 4]  # node k + 1 holds client k
    # the client's own message (it could hold data values, sizes or paths) stays in its log
    assert reasons[2] == "train: crashed: internal: the client failed (details in the client's log)"
    assert reasons[3] == "train: no reply within 8 s"
    assert reasons[4].startswith("invalid payload: x must hold finite numbers")
    assert out.info["synthetic_rows"] == {"1": SYNTHETIC_ROWS}  # θ from the one valid client
    assert [c["node"] for c in out.clients] == [1, 2, 3, 4]  # θ still went to every client
    assert {0, 1, 3} <= {c["client_id"] for c in out.clients}


def test_in_process_clients_are_processes_of_their_own() -> None:
    """A client that ends its process (os._exit) is a crashed node, not the end of the engine; its
    process is replaced, and the next run on the same engine is whole."""
    out = InProcessEngine().run(faulty_experiment({"2": "exit"}))
    reasons = {f["node"]: f["reason"] for f in out.failures}
    assert reasons == {3: "train: crashed: its client process exited"}
    assert out.info["synthetic_rows"] == {"1": SYNTHETIC_ROWS, "2": SYNTHETIC_ROWS, "4": SYNTHETIC_ROWS}
    assert InProcessEngine().run(faulty_experiment({})).failures == []


def test_in_process_clients_log_through_the_engine(caplog) -> None:
    """The clients' log lines (here the progress lines that ``engine.progress=log`` asks for,
    a setting the client processes get when they start) reach the engine's loggers."""
    with caplog.at_level("INFO"):
        InProcessEngine(progress="log").run(tiny_experiment())
    finished = [
        record.getMessage().split(":")[0]
        for record in caplog.records
        if record.name == "fedsynth.methods.single_shot" and "outer iteration 3/3" in record.getMessage()
    ]
    assert sorted(finished) == ["client 0", "client 1", "client 2"]


def test_in_process_engine_gives_the_same_numbers_with_one_worker() -> None:
    one = InProcessEngine(workers=1).run(tiny_experiment())
    many = InProcessEngine(workers=3).run(tiny_experiment())
    assert one.theta == many.theta and one.metrics == many.metrics


def test_client_processes_are_kept_for_the_next_run() -> None:
    """A run's client processes (forked from one fork server that imported torch once) serve the
    next runs of the process: the points of a sweep fork no new ones."""
    first = InProcessEngine(workers=2, progress="off").run(tiny_experiment())
    pool = inprocess._pool(2, "off")
    kept = {process.pid for process in pool._idle}
    second = InProcessEngine(workers=2, progress="off").run(tiny_experiment())
    assert len(kept) == 2 and {process.pid for process in pool._idle} == kept
    assert second.metrics == first.metrics


def test_too_few_valid_clients_fail_the_run_with_the_reasons() -> None:
    experiment = faulty_experiment({"0": "crash", "1": "garbage", "2": "crash"}, "federation.min_clients=2")
    with pytest.raises(RuntimeError, match=r"only 1 of 4 clients.*min_clients=2") as error:
        InProcessEngine().run(experiment)
    message = str(error.value)
    assert "nodes 1, 3: train: crashed: internal: the client failed" in message  # each reason once
    assert "injected crash" not in message and "node 2: invalid payload: x must hold finite numbers" in message


def test_flower_error_reasons_are_summarized() -> None:
    from fedsynth.federated.server_app import error_summary

    deployment = "<class 'RuntimeError'>:<'injected crash on client 0'>"
    simulation = (
        "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'ray::ClientAppActor.run()\n"
        '  File "x.py", line 1\nException ClientAppException occurred. Message: injected crash on client 0\'>'
    )
    assert error_summary(deployment) == "RuntimeError: injected crash on client 0"
    assert error_summary(simulation) == "RayTaskError(ClientAppException): injected crash on client 0"
    assert error_summary("something else") == "something else"
    ray = "<class 'ray.exceptions.ActorDiedError'>:<'The actor died unexpectedly.\n\tclass_name: ClientAppActor\n\tpid: 7'>"
    assert error_summary(ray) == "ActorDiedError: The actor died unexpectedly."


@pytest.mark.slow  # Flower walks the whole checkout (a .venv included) to build the FAB
@pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")  # inside Flower
def test_app_bundle_holds_the_package_and_configs_only(tmp_path: Path) -> None:
    """The FAB Flower builds from the checkout (what ``flwr run .`` sends) equals the one built from
    the staged copy the engines run, and carries no virtual environment, outputs or tests."""
    import io
    import zipfile

    from flwr.cli.build import build_fab_from_disk

    from fedsynth.federated.experiment import APP_ROOT
    from fedsynth.deploy.orchestration import stage_app

    staged = build_fab_from_disk(stage_app(APP_ROOT, tmp_path / "app"))
    assert staged == build_fab_from_disk(APP_ROOT)
    names = zipfile.ZipFile(io.BytesIO(staged)).namelist()
    assert "fedsynth/federated/server_app.py" in names and "conf/config.yaml" in names
    assert all(
        name in ("pyproject.toml", ".info/CONTENT")
        or (name.startswith("fedsynth/") and name.endswith(".py"))
        or (name.startswith("conf/") and name.endswith(".yaml"))
        for name in names
    ), names


# ----------------------------------------------------------------------------- processes


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (not gone, not a zombie)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start_family(folder: str, send: object) -> None:
    """(In a child of ``call_in_child``) start a grandchild in the child's group and one in a
    session of its own (as Flower's SuperExec does), note their pids, then wait forever."""
    import time as clock

    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    second = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    Path(folder, "pids").write_text(f"{first.pid} {second.pid}")
    clock.sleep(600)


def test_a_call_in_a_child_ends_with_everything_it_started_when_the_caller_dies(tmp_path: Path) -> None:
    """``lifeline.call_in_child``: a SIGKILL of the caller, which runs no handler, still ends
    the child and what it started, in its group or in a session of its own."""
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from fedsynth.federated.lifeline import call_in_child\n"
        "from test_federated import _start_family\n"
        "if __name__ == '__main__':\n    call_in_child(_start_family, %r, name='family')\n"
    ) % (str(Path(__file__).parent), str(tmp_path))
    (tmp_path / "caller.py").write_text(script)
    caller = subprocess.Popen([sys.executable, str(tmp_path / "caller.py")])
    deadline = time.monotonic() + 120
    while not (tmp_path / "pids").exists() or not (tmp_path / "pids").read_text():
        assert caller.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    family = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    family += [p.pid for p in psutil.Process(caller.pid).children(recursive=True)]
    caller.kill()
    caller.wait()
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in family if alive(pid)] == []


def test_temporary_folders_a_killed_run_left_are_removed_at_the_next_start() -> None:
    from fedsynth.federated.lifeline import SCRATCH_ROOT, scratch_dir

    SCRATCH_ROOT.mkdir(mode=0o700, exist_ok=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = SCRATCH_ROOT / f"{gone.stdout.strip()}-leftover"  # a process that no longer exists
    left.mkdir()
    with scratch_dir() as folder:
        assert folder.is_dir() and folder.name.startswith(f"{os.getpid()}-")
        assert not left.exists()
    assert not folder.exists()


def test_launching_flower_does_not_import_torch() -> None:
    """The fedsynth command up to its checks, and Flower loading the two apps, import no torch:
    a composition error is reported at once, and the ServerApp's imports overlap Ray's start."""
    probe = (
        "import sys\n"
        "import fedsynth.cli, fedsynth.app, fedsynth.api, fedsynth.federated.server_app\n"
        "from fedsynth.api import RunOutcome, SimulationEngine\n"
        "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
