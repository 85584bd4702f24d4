"""The server decides what is valid (issue 12, item 3): the reply schema comes from its own
experiment, never from the other replies; extra records, complex or huge arrays, wrong row
counts, bad evaluation reports are rejected and filed under the node the server addressed."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedsynth.core import LogisticModel, fit_server_model
from fedsynth.data.types import TabularData
from fedsynth import api
from fedsynth.config import experiment_from_mapping
from fedsynth.federated import inprocess
from fedsynth.federated.inprocess import InProcessTransport
from fedsynth.federated.messages import ARRAYS, HARNESS, METRICS
from fedsynth.outcome import RunOutcome
from fedsynth.federated.server_logic import run_experiment
from fedsynth.federated.validation import check_evaluation_reply, reply_schema
from fedsynth.methods import NotEnoughClients
from fedsynth.methods.replies import fit_without_culprits
from fedsynth.metrics.counts import COUNT_KEYS, DECISION_BINS, HISTOGRAM_KEYS
from federated_support import SYNTHETIC_ROWS, TINY, tiny_experiment

Tamper = Callable[[RecordDict], RecordDict]


class TamperingTransport(InProcessTransport):
    """The in-process federation, with the replies of some nodes to one message type rewritten
    as a malicious client would send them."""

    def __init__(self, experiment: api.Experiment, message_type: str, tamper: dict[int, Tamper]) -> None:
        clients = int(experiment.dataset["num_clients"])
        super().__init__(clients, inprocess._pool(clients, "off"))
        self.message_type, self.tamper = message_type, tamper

    def exchange(self, message_type, contents, timeout):
        replies = super().exchange(message_type, contents, timeout)
        if message_type == self.message_type:
            for node, change in self.tamper.items():
                replies[node] = change(replies[node])
        return replies


def run_tampered(message_type: str, tamper: dict[int, Tamper], *overrides: str) -> RunOutcome:
    experiment = tiny_experiment(*overrides)
    return run_experiment(experiment, TamperingTransport(experiment, message_type, tamper), engine="test")


def set_x(change: Callable[[np.ndarray], np.ndarray]) -> Tamper:
    """A tamper that replaces the uploaded x̂ by ``change(x̂)``."""

    def tamper(reply: RecordDict) -> RecordDict:
        arrays = reply.array_records[ARRAYS]
        arrays["x"] = Array(np.ascontiguousarray(change(arrays["x"].numpy())))
        return reply

    return tamper


def add_record(name: str, record) -> Tamper:
    def tamper(reply: RecordDict) -> RecordDict:
        reply[name] = record
        return reply

    return tamper


class UndecodableArray(Array):
    """An array that fails the test if anyone decodes it."""

    def numpy(self):
        raise AssertionError("an oversized array was decoded")


def reasons(outcome: RunOutcome) -> dict[int, str]:
    return {f["node"]: f["reason"] for f in outcome.failures}


def test_two_malicious_clients_of_three_cannot_redefine_the_feature_count() -> None:
    """The expected width is the dataset spec's (5 features), not the majority's (6)."""
    wider = set_x(lambda x: np.hstack([x, np.zeros((len(x), 1))]))
    outcome = run_tampered("train", {2: wider, 3: wider})
    assert sorted(reasons(outcome)) == [2, 3]
    assert all("x must have shape (rows, 5)" in r for r in reasons(outcome).values())
    assert outcome.info["synthetic_rows"] == {"1": SYNTHETIC_ROWS}  # the honest client is the one kept


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda x: x.astype(np.complex128), "x must hold real floating-point numbers, got dtype complex128"),
        (lambda x: x.astype(np.int64), "x must hold real floating-point numbers, got dtype int64"),
        (lambda x: np.full_like(x, 1e308), "beyond ±1e+06"),
        (lambda x: np.full_like(x, 1e150), "beyond ±1e+06"),
        (lambda x: np.full_like(x, np.inf), "finite"),
        (lambda x: x[:-1], f"expected {SYNTHETIC_ROWS} rows, got {SYNTHETIC_ROWS - 1}"),
    ],
)
def test_invalid_rows_are_rejected_and_theta_stays_finite(change, expected) -> None:
    outcome = run_tampered("train", {1: set_x(change)})
    assert list(reasons(outcome)) == [1] and expected in reasons(outcome)[1]
    assert np.isfinite(outcome.theta).all() and np.abs(outcome.theta).max() > 0
    assert sorted(outcome.info["synthetic_rows"]) == ["2", "3"]


def test_an_oversized_table_is_refused_before_it_is_decoded() -> None:
    """Issue 24: the server knows the rows and the width it asked for, so a reply of more bytes
    than that many float64 rows is refused from its size, never decoded."""

    def tamper(reply: RecordDict) -> RecordDict:
        x = reply.array_records[ARRAYS]["x"].numpy()
        reply.array_records[ARRAYS]["x"] = UndecodableArray(np.ascontiguousarray(np.tile(x, (10, 1))))
        return reply

    outcome = run_tampered("train", {1: tamper})
    assert "x is" in reasons(outcome)[1] and "refused undecoded" in reasons(outcome)[1]
    assert sorted(outcome.info["synthetic_rows"]) == ["2", "3"]


def test_a_configurable_bound_on_x() -> None:
    outcome = run_tampered("train", {1: set_x(lambda x: x * 0 + 50.0)}, "federation.max_abs_x=10")
    assert "beyond ±10" in reasons(outcome)[1]


@pytest.mark.parametrize(
    "record",
    [
        ConfigRecord({"note": "hello"}),
        MetricRecord({"n": 8319.0}),
        ArrayRecord({"counts": UndecodableArray(np.zeros(4))}),  # counted from its shape, not decoded
    ],
)
def test_a_record_beyond_the_schema_is_rejected_and_ledgered(record) -> None:
    outcome = run_tampered("train", {1: add_record("extra", record)})
    assert "unexpected record(s) ['extra']" in reasons(outcome)[1]
    assert any(name.startswith("extra.") for name in outcome.info["client_statistics"])


def test_extra_arrays_in_the_payload_record_are_rejected() -> None:
    def tamper(reply: RecordDict) -> RecordDict:
        reply.array_records[ARRAYS]["n"] = Array(np.array([8319.0]))
        return reply

    outcome = run_tampered("train", {1: tamper})
    assert "expected exactly arrays" in reasons(outcome)[1]
    assert "arrays.n" in outcome.info["client_statistics"]


def counts_of(reply: RecordDict) -> dict[str, float]:
    return dict(reply.metric_records[METRICS])


def set_metric(key: str, value) -> Tamper:
    def tamper(reply: RecordDict) -> RecordDict:
        reply.metric_records[METRICS][key] = value
        return reply

    return tamper


def drop_metric(key: str) -> Tamper:
    def tamper(reply: RecordDict) -> RecordDict:
        del reply.metric_records[METRICS][key]
        return reply

    return tamper


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (set_metric("n", float("nan")), "n must be a finite number"),
        (set_metric("correct", -3.0), "count correct must be >= 0"),
        (set_metric("n", 1e12), "federation.max_test_rows"),
        (set_metric("n_s1", 0.5), "whole number"),
        (set_metric("correct", 1e6), "correct must be <= n"),
        (set_metric("n_s1", 0.0), "n must equal n_s1 + n_s0"),
        (set_metric("client_id", 0.0), "unexpected ['client_id']"),
        (set_metric("decision_histogram_y1", 3.0), "must be a list of 1024 counts"),
        (set_metric("decision_histogram_y0", [0] * 10), "must be a list of 1024 counts"),
        (set_metric("decision_histogram_y0", [-1] + [0] * (DECISION_BINS - 1)), "whole numbers >= 0"),
        (set_metric("decision_histogram_y1", [0.5] + [0.0] * (DECISION_BINS - 1)), "whole numbers >= 0"),
        (set_metric("decision_histogram_y1", [1] * DECISION_BINS), "the label counts say"),
        (set_metric("train_n", 0.0), "train_n must be a whole number >= 1"),
        (set_metric("train_n_y1", 1e9), "train_n_y1 one in 0..train_n"),
        (drop_metric("train_n"), "training counts must be both or none"),
        (add_record(HARNESS, MetricRecord({"client_id": 0.0})), "harness record may hold only"),
        (add_record("extra", MetricRecord({"n": 1.0})), "unexpected record(s) ['extra']"),
    ],
)
def test_invalid_evaluation_reports_are_rejected_and_the_others_count(tamper, expected) -> None:
    honest = run_tampered("evaluate", {})
    outcome = run_tampered("evaluate", {2: tamper})
    assert list(reasons(outcome)) == [2] and expected in reasons(outcome)[2]
    assert outcome.metrics and np.isfinite(list(outcome.metrics.values())).all()
    kept = [c["counts"] for c in outcome.clients if c["node"] != 2]
    assert kept == [c["counts"] for c in honest.clients if c["node"] != 2]
    # the client id is the server's: a node cannot claim another's
    assert [c["client_id"] for c in outcome.clients] == [0, 1, 2]


def test_evaluation_statistics_are_in_the_ledger() -> None:
    outcome = run_tampered("evaluate", {})
    harness = outcome.info["harness_statistics"]
    assert {f"metrics.{key}" for key in COUNT_KEYS} <= set(harness)
    assert "harness.compute_s.train" in harness and outcome.info["harness_messages"] == 3
    off = run_tampered("evaluate", {}, "federation.report_metrics=false")
    assert off.info["harness_statistics"] == [] and off.info["harness_statistic_values"] == 0


def test_a_report_when_reporting_is_off_is_rejected() -> None:
    def tamper(reply: RecordDict) -> RecordDict:
        reply[METRICS] = MetricRecord({"n": 10.0})
        return reply

    outcome = run_tampered("evaluate", {1: tamper}, "federation.report_metrics=false")
    assert "expected an empty reply" in reasons(outcome)[1]


def table(scale: float, seed: int) -> TabularData:
    g = np.random.default_rng(seed)
    return TabularData(
        torch.tensor(g.normal(size=(30, 3)) * scale),
        torch.tensor((g.random(30) > 0.5).astype(float)),
        torch.tensor(np.where(g.random(30) > 0.5, 1.0, -1.0)),
        feature_names=("a", "b", "c"),
    )


def fit(tables: Mapping[int, TabularData]) -> np.ndarray:
    return fit_server_model([tables[node] for node in sorted(tables)], LogisticModel()).theta.numpy()


def test_the_client_whose_rows_make_theta_non_finite_is_found_and_dropped() -> None:
    tables = {1: table(1.0, 0), 2: table(1e307, 1), 3: table(1.0, 2)}
    assert not np.isfinite(fit(tables)).all()
    theta, dropped = fit_without_culprits(tables, fit, min_clients=1)
    assert [f.node for f in dropped] == [2] and "non-finite" in dropped[0].reason
    np.testing.assert_array_equal(theta, fit({1: tables[1], 3: tables[3]}))
    with pytest.raises(NotEnoughClients, match="non-finite"):
        fit_without_culprits(tables, fit, min_clients=3)


def test_the_schema_comes_from_the_dataset_spec() -> None:
    schema = reply_schema(tiny_experiment())
    assert (schema.num_features, schema.max_abs_x) == (5, 1e6)


def test_check_evaluation_reply_accepts_an_honest_report() -> None:
    counts = {key: 0.0 for key in COUNT_KEYS} | {"n": 10.0, "n_s1": 4.0, "n_s0": 6.0, "sum_s": 4.0, "correct": 7.0}
    counts |= {"n_y1_s1": 2.0, "true_positive_s1": 1.0, "positive_s1": 1.0, "train_n": 40.0, "train_n_y1": 9.0}
    counts |= {key: [0] * DECISION_BINS for key in HISTOGRAM_KEYS}
    counts["decision_histogram_y1"][500], counts["decision_histogram_y0"][600] = 2, 8
    reply = RecordDict({METRICS: MetricRecord(counts), HARNESS: MetricRecord({"compute_s.train": 1.5})})
    got, extras, compute = check_evaluation_reply(reply, report_metrics=True, extra_metrics=(), max_test_rows=100)
    assert got == counts and extras == {} and compute == {"train": 1.5}
    # a client whose training rows are private sends no training counts: accepted
    private = {key: value for key, value in counts.items() if not key.startswith("train_")}
    reply = RecordDict({METRICS: MetricRecord(private), HARNESS: MetricRecord({"compute_s.train": 1.5})})
    assert check_evaluation_reply(reply, report_metrics=True, extra_metrics=(), max_test_rows=100)[0] == private


class FakeGrid:
    """A Grid whose replies come from the SuperLink's own node id (as an error reply for a lost
    node does), or answer a message of another exchange."""

    def __init__(self) -> None:
        self.pushed = []

    def get_node_ids(self):
        return [11, 22]

    def push_messages(self, messages):
        for index, message in enumerate(messages):
            message.metadata.__dict__["_message_id"] = f"m{index}"
            self.pushed.append(message)
        return [message.metadata.message_id for message in messages]

    def pull_messages(self, message_ids):
        from flwr.app import Error, Message

        if len(self.pushed) != 2:  # the replies come once
            return []
        lost = Message(Error(code=0, reason="node lost"), reply_to=self.pushed[0])
        lost.metadata.__dict__["_src_node_id"] = 1  # the SuperLink writes it
        stray = Message(RecordDict(), reply_to=self.pushed[1])
        stray.metadata.__dict__["_reply_to_message_id"] = "from-another-exchange"
        self.pushed.append(None)
        return [lost, stray]


def test_a_failure_is_filed_under_the_node_the_server_addressed(monkeypatch) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    from fedsynth.federated.server_app import GridTransport

    for name, value in (("_task_id", 1), ("_run_id", 7), ("_node_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)

    replies = GridTransport(FakeGrid()).exchange("train", {11: RecordDict(), 22: RecordDict()}, timeout=1)
    assert replies[11].reason == "crashed: node lost"  # not filed under node 1, the SuperLink
    assert replies[22].reason == "no reply within 1 s"  # a reply to another message is no reply
    assert set(replies) == {11, 22}


@pytest.mark.parametrize(
    ("target", "passes"),
    [
        (b"/v1/fleet/pull-messages", True),
        (b"/v1/fleet/activate-node", True),
        (b"/health", True),
        (b"/v1/control/register-node", False),
        (b"/v1/control/list-runs", False),
        (b"/v1/fleet/../control/register-node", False),
        (b"/v1/fleet/pull-messages?x=1", False),
        (b"/v1/fleet/%2e%2e/control/list-runs", False),
        (b"https://127.0.0.1/v1/control/list-runs", False),
        (b"/v1/fleet//control", False),
    ],
)
def test_the_fleet_gate_lets_only_the_fleet_api_through(target: bytes, passes: bool) -> None:
    from fedsynth.deploy.fleet_gate import allowed, forwarded_head

    assert allowed(target) is passes
    head, length = forwarded_head(b"POST /v1/fleet/x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n")
    assert head.endswith(b"Content-Length: 3\r\nConnection: close\r\n\r\n") and b"keep-alive" not in head and length == 3
    assert forwarded_head(b"POST /v1/fleet/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") is None


def _train_replies(overrides: list[str]) -> tuple[list[RecordDict], set[int]]:
    """The clients' ``train`` replies of one in-process run of the default experiment with
    ``overrides``, and the set of their upload sizes in bytes."""
    experiment = api.check(api.compose([*overrides, "method.k_max=2"]))
    transport = TamperingTransport(experiment, "none", {})
    seen: list[RecordDict] = []
    original = transport.exchange

    def recording(message_type, contents, timeout):
        replies = original(message_type, contents, timeout)
        seen.extend(r for r in replies.values() if message_type == "train")
        return replies

    transport.exchange = recording
    outcome = run_experiment(experiment, transport, engine="test")
    assert outcome.failures == []
    return seen, {c["bytes_up"]["train"] for c in outcome.clients}


def _label_mix(reply: RecordDict) -> tuple[int, ...]:
    arrays = reply.array_records[ARRAYS]
    s, y = arrays["s"].numpy(), arrays["y"].numpy()
    return tuple(int(((s == a) & (y == b)).sum()) for a in (0, 1) for b in (-1, 1))


def test_the_paper_setting_reply_does_not_depend_on_the_clients_data() -> None:
    """method=single_shot_paper (N_s = 200, balanced labels, equal union weights): clients of
    different sizes send replies of one size with the same (ŝ, ŷ) mix and no statistic."""
    sizes, label_mixes = set(), set()
    for rows in (1500, 3000):
        seen, bytes_up = _train_replies(["method=single_shot_paper", f"dataset.generator.num_rows={rows}"])
        sizes |= bytes_up
        label_mixes |= {_label_mix(reply) for reply in seen}
        assert all(METRICS not in reply for reply in seen)
    assert len(sizes) == 1 and label_mixes == {(50, 50, 50, 50)}


def test_by_default_a_clients_reply_tells_a_noisy_size_and_noisy_group_shares() -> None:
    """The default (N_s auto, noisy_proportional labels, noisy union weights): every client sends
    the same number of rows whatever its N; its (ŝ, ŷ) mix follows ε-DP counts and its
    ``num-examples`` is N + Laplace(1/ε) noise (a few rows off N, never N's exact value here)."""
    method = api.compose([])["method"]
    assert (method["synthetic_size"], method["synthetic_labels"], method["union_weights"]) == (
        "auto", "noisy_proportional", "noisy",
    )
    sizes, reported = set(), []
    for rows in (1500, 3000):
        seen, bytes_up = _train_replies([f"dataset.generator.num_rows={rows}"])
        sizes |= {len(reply.array_records[ARRAYS]["y"].numpy()) for reply in seen}
        reported += [(rows, float(reply.metric_records[METRICS]["num-examples"])) for reply in seen]
    assert sizes == {200}
    for rows, size in reported:  # 3 clients, 80 % of rows // 3 each for training
        true_n = rows // 3 - round(0.2 * (rows // 3))
        assert size != true_n and abs(size - true_n) < 20


def test_a_client_error_reveals_no_size_value_or_path() -> None:
    """Copied labels with N_s != N (the command's check bypassed): the client's exception names N,
    the server gets the category only."""
    experiment = experiment_from_mapping(  # 160 training rows each
        api.compose([*TINY, "method.synthetic_size=300", "method.synthetic_labels=copy"])
    )
    with pytest.raises(NotEnoughClients) as error:
        run_experiment(experiment, InProcessTransport(3, inprocess._pool(3, "off")), engine="test")
    message = str(error.value)
    assert "nodes 1, 2, 3: train: crashed: config: the node cannot use the experiment's configuration" in message
    assert "160" not in message and "300" not in message and "/" not in message


def _signed_head(key: bytes, stamp: str, length: int = 0) -> bytes:
    return (
        b"POST /v1/fleet/push-messages HTTP/1.1\r\nHost: a\r\nflwr-public-key: " + key
        + b"\r\nflwr-timestamp: " + stamp.encode() + b"\r\nflwr-signature: c2ln\r\nContent-Length: "
        + str(length).encode() + b"\r\n\r\n"
    )


def test_the_fleet_gate_passes_a_supernode_signature_once_and_only_within_its_window() -> None:
    """Flower 1.42 signs only the timestamp: copied headers must not authenticate a second request."""
    import datetime

    from fedsynth.deploy.fleet_gate import ReplayGuard

    clock = [datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)]
    guard = ReplayGuard(now=lambda: clock[0])
    stamp = clock[0].isoformat()
    assert guard.admit(_signed_head(b"a2V5", stamp))
    clock[0] += datetime.timedelta(seconds=10)
    assert not guard.admit(_signed_head(b"a2V5", stamp)), "the same signed timestamp replayed 10 s later"
    assert guard.admit(_signed_head(b"b3RoZXI=", stamp)), "another node's key at the same instant"
    assert guard.admit(_signed_head(b"a2V5", clock[0].isoformat())), "a fresh signature of the same node"
    old = (clock[0] - datetime.timedelta(seconds=400)).isoformat()
    assert not guard.admit(_signed_head(b"a2V5", old)), "outside the 310 s window"
    future = (clock[0] + datetime.timedelta(seconds=60)).isoformat()
    assert not guard.admit(_signed_head(b"a2V5", future))
    assert not guard.admit(_signed_head(b"a2V5", "2026-01-01T12:00:00")), "a timestamp without a time zone"
    assert not guard.admit(_signed_head(b"a2V5", "yesterday"))
    assert guard.admit(b"POST /v1/fleet/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), "unsigned: the SuperLink decides"
    clock[0] += datetime.timedelta(seconds=400)
    assert guard.admit(_signed_head(b"a2V5", clock[0].isoformat())) and len(guard.seen) == 1, "old entries are forgotten"


class _Writer:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


def _gate_answer(head: bytes, max_body_bytes: int) -> bytes:
    """The gate's answer to a request whose body never arrives (a refusal must not wait for it)."""
    import asyncio
    import ssl

    from fedsynth.deploy.fleet_gate import FleetGate

    async def serve() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(head)
        writer = _Writer()
        context = ssl.create_default_context()
        gate = FleetGate(("127.0.0.1", 9), context, context, max_body_bytes=max_body_bytes)
        await asyncio.wait_for(gate.handle(reader, writer), 5)
        return writer.data

    return asyncio.run(serve())


def test_the_fleet_gate_refuses_an_oversized_body_before_reading_it() -> None:
    import datetime

    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
    answer = _gate_answer(_signed_head(b"a2V5", stamp, length=480_000_000), max_body_bytes=10_000_000)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"largest honest message" in answer


def test_the_fleet_gate_refuses_a_replayed_signature_before_reading_the_body() -> None:
    import asyncio
    import datetime
    import ssl

    from fedsynth.deploy.fleet_gate import FleetGate

    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
    context = ssl.create_default_context()
    gate = FleetGate(("127.0.0.1", 9), context, context)
    assert gate.replay_guard.admit(_signed_head(b"a2V5", stamp, length=5))

    async def replay() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(_signed_head(b"a2V5", stamp, length=5))
        writer = _Writer()
        await asyncio.wait_for(gate.handle(reader, writer), 5)
        return writer.data

    assert asyncio.run(replay()).startswith(b"HTTP/1.1 401 ")


def test_the_plain_text_fleet_gate_forwards_the_fleet_api_and_refuses_an_oversized_body() -> None:
    """Without TLS (``fedsynth-deploy`` without ``--tls``) the gate still stands between the
    SuperNodes and the SuperLink: a Fleet API request of an honest size is forwarded, a longer
    one refused (413) before its body is read, anything else refused (403)."""
    import asyncio

    from fedsynth.deploy.fleet_gate import FleetGate

    async def exchange(port: int, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return answer

    async def scenario() -> tuple[bytes, bytes, bytes, list[bytes]]:
        received: list[bytes] = []

        async def superlink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            received.append(head + await reader.readexactly(4))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()

        upstream = await asyncio.start_server(superlink, "127.0.0.1", 0)
        gate = FleetGate(upstream.sockets[0].getsockname()[:2], None, None, max_body_bytes=1000)
        front = await asyncio.start_server(gate.handle, "127.0.0.1", 0)
        port = front.sockets[0].getsockname()[1]
        async with upstream, front:
            honest = await exchange(port, b"POST /v1/fleet/push-messages HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody")
            oversized = await exchange(port, b"POST /v1/fleet/push-messages HTTP/1.1\r\nHost: a\r\nContent-Length: 480000000\r\n\r\n")
            control = await exchange(port, b"POST /flwr.proto.Control/StartRun HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody")
        return honest, oversized, control, received

    honest, oversized, control, received = asyncio.run(scenario())
    assert honest.startswith(b"HTTP/1.1 200 ") and honest.endswith(b"ok")
    assert oversized.startswith(b"HTTP/1.1 413 ") and control.startswith(b"HTTP/1.1 403 ")
    assert len(received) == 1 and received[0].endswith(b"Connection: close\r\n\r\nbody")


def test_the_fleet_gate_takes_either_tls_files_or_insecure() -> None:
    from fedsynth.deploy.fleet_gate import main

    for arguments in ([], ["--insecure", "--certfile", "c.pem"], ["--certfile", "c.pem"]):
        with pytest.raises(SystemExit) as stopped:
            main(["--listen", "127.0.0.1:1", "--upstream", "127.0.0.1:2", *arguments])
        assert stopped.value.code == 2
