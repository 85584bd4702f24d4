"""The baseline methods (fedavg, fairfed, centralized, local) end to end on small synthetic data
through the in-process engine, their accounting, FairFed β = 0 = FedAvg, and the comparison
report; one FedAvg run on Flower's simulation engine (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import MetricRecord, RecordDict

from fedsynth.comparison import main as compare_main
from fedsynth.reporting.collect import load_runs
from fedsynth.reporting.comparison import compare_methods, comparison_references
from fedsynth.reporting.results import results_record
from fedsynth.data import DatasetSpec, partition_clients, load_dataset
from fedsynth.api import InProcessEngine, RunOutcome
from fedsynth import api
from fedsynth.federated.messages import record_nbytes
from fedsynth.methods import arrays_of, build_method, make_content, metrics_of
from fedsynth.data.types import TabularData
from fedsynth.core import InnerSolverConfig, LogisticMixture, LogisticModel
from fedsynth.methods._baselines import local_sgd
from fedsynth.federated.ledger import HARNESS_SECTION, StatisticsLedger
from fedsynth.methods.fairfed import FairFed, weighted_mean
from fedsynth.metrics import evaluate_model, evaluation_counts, metrics_from_counts, sum_counts

ROWS = 1200  # 3 clients of 400 rows: 320 train / 80 test each
SMALL = ["dataset=synthetic", f"dataset.generator.num_rows={ROWS}"]
WIDTH = 5 + 1 + 1  # x (5 features), s, intercept
EXACT = LogisticModel(solver=InnerSolverConfig(max_iter=500, tolerance_grad=1e-9))  # the centralized and local fits


def experiment(method: str, *overrides: str) -> api.Experiment:
    return api.check(api.compose([*SMALL, f"method={method}", *overrides]))


def run(method: str, *overrides: str) -> tuple[api.Experiment, RunOutcome]:
    config = experiment(method, *overrides)
    return config, InProcessEngine().run(config)


def clients(config: api.Experiment):
    """The clients' partitions exactly as the engine builds them."""
    spec = DatasetSpec.from_config(config.dataset)
    partition = config.partition
    return partition_clients(
        load_dataset(spec),
        spec.num_clients,
        seed=config.seed,
        test_fraction=partition.test_fraction,
        scheme=partition.scheme,
        dirichlet_alpha=partition.dirichlet_alpha,
    )


def protocol(outcome: RunOutcome) -> list[dict]:
    return [send for send in outcome.sends if send["action"] != "evaluate"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread, as each client gets: the server-side fits here are tiny, and on a busy
    machine torch's default thread pool makes them many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ----------------------------------------------------------------------------- shared runs
@pytest.fixture(scope="module")
def fedavg_run():
    return run("fedavg", "method.rounds=3", "partition.scheme=dirichlet")


@pytest.fixture(scope="module")
def fairfed_zero_run():
    return run("fairfed", "method.rounds=3", "method.beta=0", "partition.scheme=dirichlet")


@pytest.fixture(scope="module")
def centralized_run():
    return run("centralized")


@pytest.fixture(scope="module")
def centralized_fair_run():
    return run("centralized", "method.variant=fair", "method.rho=100")


@pytest.fixture(scope="module")
def local_run():
    return run("local")


# ----------------------------------------------------------------------------- fedavg / fairfed
def test_fedavg_end_to_end(fedavg_run) -> None:
    config, outcome = fedavg_run
    assert outcome.failures == [] and outcome.round_trips == 3
    assert [s["action"] for s in outcome.sends] == ["train"] * 3 + ["evaluate"]
    assert outcome.metrics["accuracy"] > 0.75
    assert len(outcome.theta) == WIDTH
    info = outcome.info
    assert info["client_statistics"] == ["metrics.num-examples"]
    assert info["client_arrays"] == ["theta"] and info["client_messages"] == 9
    assert info["client_statistic_values"] == 9  # n_k, from 3 clients, in 3 rounds


def test_fedavg_bytes_are_those_of_the_messages_sent(fedavg_run) -> None:
    _, outcome = fedavg_run
    reply = record_nbytes(make_content(arrays={"theta": np.zeros(WIDTH)}, metrics={"num-examples": 1.0}))
    assert all(send["bytes_up"] == 3 * reply for send in protocol(outcome))
    first, second = protocol(outcome)[:2]
    assert second["bytes_down"] - first["bytes_down"] == 3 * record_nbytes(
        make_content(arrays={"theta": np.zeros(WIDTH)})
    )  # round 1 sends no θ


def test_fairfed_with_beta_zero_is_fedavg(fedavg_run, fairfed_zero_run) -> None:
    _, fedavg = fedavg_run
    _, fairfed = fairfed_zero_run
    assert np.array_equal(fairfed.theta, fedavg.theta)
    assert fairfed.metrics == fedavg.metrics
    assert fairfed.round_trips == fedavg.round_trips
    # ... but FairFed's clients send their group statistics every round
    assert set(fairfed.info["client_statistics"]) == {
        "metrics.num-examples",
        "metrics.correct",
        "metrics.n_s0",
        "metrics.n_s1",
        "metrics.positive_s0",
        "metrics.positive_s1",
    }
    assert fairfed.info["client_statistic_values"] == 6 * 9
    assert fairfed.bytes_up > fedavg.bytes_up
    sizes = {int(c["client_id"]): len(p.train) for c, p in zip(fairfed.clients, clients(fairfed_zero_run[0]))}
    for record in fairfed.info["fairfed_rounds"]:  # weights stay n_k / n
        weights = list(record["weight"].values())
        assert weights == pytest.approx([sizes[k] / sum(sizes.values()) for k in sorted(sizes)])


def test_fairfed_beta_moves_the_weights() -> None:
    _, fedavg = run("fedavg", "method.rounds=3", "partition.scheme=dirichlet")
    _, fairfed = run("fairfed", "method.rounds=3", "method.beta=1", "partition.scheme=dirichlet")
    assert not np.allclose(fairfed.theta, fedavg.theta)
    last = fairfed.info["fairfed_rounds"][-1]
    first = fairfed.info["fairfed_rounds"][0]
    assert sum(last["weight"].values()) == pytest.approx(1.0)
    assert last["weight"] != pytest.approx(first["weight"])


def _stats(n: float, correct: float, n_s1: float, n_s0: float, pos_s1: float, pos_s0: float) -> RecordDict:
    return make_content(
        metrics={
            "num-examples": n,
            "correct": correct,
            "n_s1": n_s1,
            "n_s0": n_s0,
            "positive_s1": pos_s1,
            "positive_s0": pos_s0,
        }
    )


def test_fedavg_averages_the_replies_as_received_and_fairfed_in_the_same_arithmetic() -> None:
    """FedAvg's average is Σ n_k θ_k / Σ n_k of the reply contents themselves; FairFed's plain
    weighted mean gives the same θ to the bit for the same weights."""
    generator = np.random.default_rng(0)
    thetas = [generator.normal(size=WIDTH) for _ in range(3)]
    sizes = [120.0, 45.0, 301.0]
    replies = {
        node: make_content(arrays={"theta": theta}, metrics={"num-examples": n})
        for node, theta, n in zip((3, 1, 2), thetas, sizes)
    }
    average = build_method(experiment("fedavg").method).average(1, replies)
    assert average == pytest.approx(np.average(thetas, axis=0, weights=sizes), rel=1e-12)
    in_node_order = [replies[node] for node in sorted(replies)]
    assert np.array_equal(
        weighted_mean([arrays_of(r)["theta"] for r in in_node_order], [metrics_of(r)["num-examples"] for r in in_node_order]),
        average,
    )


def test_fairfed_weight_update_formula() -> None:
    method = FairFed(beta=0.5)
    updates = {
        1: _stats(100, 80, 50, 50, 40, 10),  # local SPD 0.6
        2: _stats(300, 240, 150, 150, 60, 60),  # local SPD 0.0
        3: _stats(100, 50, 100, 0, 70, 0),  # no s = 0 rows: SPD undefined, accuracy gap instead
    }
    weights = method.aggregation_weights(1, updates)
    spd_global = 170 / 300 - 70 / 200
    acc_global = 370 / 500
    delta = {1: abs(0.6 - spd_global), 2: abs(0.0 - spd_global), 3: abs(0.5 - acc_global)}
    mean = sum(delta.values()) / 3
    n = {1: 100, 2: 300, 3: 100}
    expected = {k: max(0.0, n[k] - 0.5 * 500 * (delta[k] - mean)) for k in n}
    assert weights == pytest.approx(expected)
    record = method.round_info()["fairfed_rounds"][0]
    assert record["spd_global"] == pytest.approx(spd_global)
    assert record["delta"] == pytest.approx({str(k): v for k, v in delta.items()})
    # a second round starts from the updated ω
    again = method.aggregation_weights(2, updates)
    assert again == pytest.approx({k: max(0.0, expected[k] - 0.5 * 500 * (delta[k] - mean)) for k in n})


def test_fairfed_clips_weights_at_zero() -> None:
    method = FairFed(beta=100.0)
    weights = method.aggregation_weights(1, {1: _stats(100, 80, 50, 50, 50, 0), 2: _stats(300, 240, 150, 150, 60, 60)})
    assert weights[1] == 0.0 and weights[2] > 0


def test_local_sgd_is_deterministic_and_approaches_the_optimum() -> None:
    config = experiment("fedavg")
    train = clients(config)[0].train
    kwargs = dict(epochs=500, lr=1.0, batch_size=train.x.shape[0], model=LogisticModel(lambda_theta=1e-3), seed=3)
    first = local_sgd(train, None, **kwargs)
    assert np.array_equal(first, local_sgd(train, None, **kwargs))
    optimum = EXACT.fit(train).theta.numpy()
    assert np.linalg.norm(first - optimum) < 1e-3 * np.linalg.norm(optimum)


def test_fedavg_rejects_a_bad_update() -> None:
    method = build_method(experiment("fedavg").method)
    with pytest.raises(ValueError, match="finite"):
        method.validate_update(make_content(arrays={"theta": np.full(WIDTH, np.nan)}, metrics={"num-examples": 5.0}), WIDTH)
    with pytest.raises(ValueError, match="float64"):  # the server averages the replies as received
        method.validate_update(make_content(arrays={"theta": np.zeros(WIDTH, np.float32)}, metrics={"num-examples": 5.0}), WIDTH)
    with pytest.raises(ValueError, match="expected array"):
        method.validate_update(make_content(arrays={"theta": np.zeros(WIDTH)}, metrics={"num-examples": 5.0, "x": 1.0}), WIDTH)


# ----------------------------------------------------------------------------- centralized
def test_centralized_fits_the_pooled_training_rows(centralized_run) -> None:
    config, outcome = centralized_run
    parts = clients(config)
    pooled = TabularData.concat([p.train for p in parts])
    expected = EXACT.fit(pooled).theta.numpy()
    np.testing.assert_allclose(outcome.theta, expected, rtol=1e-10, atol=1e-12)
    assert outcome.round_trips == 1 and outcome.info["client_arrays"] == ["s", "x", "y"]
    assert outcome.info["client_statistics"] == []
    # every training value went up: at least 8 bytes per float64 entry of (x, s, y)
    assert protocol(outcome)[0]["bytes_up"] >= 8 * len(pooled) * (pooled.num_features + 2)
    assert protocol(outcome)[0]["bytes_down"] == 0


def test_centralized_fair_lowers_the_covariance(centralized_run, centralized_fair_run) -> None:
    config, plain = centralized_run
    _, fair = centralized_fair_run
    assert abs(fair.metrics["covariance"]) < 0.5 * abs(plain.metrics["covariance"])
    assert abs(fair.metrics["spd"]) < abs(plain.metrics["spd"])
    # θ is a stationary point of ℓ_r + ρ/2 cov² (and ρ = 0 gives the plain fit)
    pooled = TabularData.concat([p.train for p in clients(config)])
    theta = torch.tensor(fair.theta, dtype=torch.float64, requires_grad=True)
    from fedsynth.core import LogisticModel, PenaltyObjective, SynthesisConfig

    penalty = PenaltyObjective(pooled, pooled.s, pooled.y, SynthesisConfig(rho_o=100.0))
    loss = LogisticModel(lambda_theta=1e-3).objective(penalty.real_loss.a, pooled.y)
    value = loss.at(theta).value() + 50.0 * penalty.real_measure(theta)[0] ** 2
    value.backward()
    assert float(theta.grad.abs().max()) < 1e-6
    np.testing.assert_array_equal(
        EXACT.fit(pooled).theta.numpy(), plain.theta
    )


def test_centralized_exponentiated_gradient_is_evaluated_in_expectation() -> None:
    pytest.importorskip("fairlearn")
    config, outcome = run("centralized", "method.variant=exponentiated_gradient", "method.eg_max_iter=10")
    mixture = LogisticMixture.unpack(np.asarray(outcome.theta), WIDTH)
    weights = mixture.weights
    assert len(weights) == outcome.info["mixture_size"] >= 1
    assert weights.sum() == pytest.approx(1.0) and (weights > 0).all()
    parts = clients(config)
    expected = metrics_from_counts(sum_counts([evaluation_counts(EXACT, mixture, p.test) for p in parts]))
    assert outcome.metrics == pytest.approx(expected)
    _, plain = run("centralized")
    assert abs(outcome.metrics["spd"]) < abs(plain.metrics["spd"])


def test_mixture_helpers() -> None:
    thetas = np.arange(14.0).reshape(2, 7)
    weights = np.array([0.25, 0.75])
    back = LogisticMixture.unpack(LogisticMixture(thetas, weights).pack(), 7)
    assert np.array_equal(back.thetas, thetas) and np.array_equal(back.weights, weights)
    with pytest.raises(ValueError, match="mixture"):
        LogisticMixture.unpack(np.zeros(9), 7)
    test = clients(experiment("centralized"))[0].test
    theta = np.linspace(-1, 1, 7)
    assert evaluation_counts(EXACT, LogisticMixture(theta[None, :], np.ones(1)), test) == evaluation_counts(EXACT, theta, test)


# ----------------------------------------------------------------------------- local
def test_local_exchanges_nothing_and_evaluates_each_clients_own_model(local_run) -> None:
    config, outcome = local_run
    assert outcome.round_trips == 0 and protocol(outcome) == []
    assert outcome.theta == [] and outcome.info["global_model"] is False
    parts = clients(config)
    own = []
    for client, part in zip(outcome.clients, parts):
        assert client["client_id"] == part.client_id
        theta = EXACT.fit(part.train).theta.numpy()
        assert client["metrics"] == pytest.approx(evaluate_model(EXACT, theta, part.test))
        own.append(evaluation_counts(EXACT, theta, part.test))
    assert outcome.metrics == pytest.approx(metrics_from_counts(sum_counts(own)))


# ----------------------------------------------------------------------------- accounting
def test_statistics_ledger_records_everything_but_the_payload() -> None:
    ledger = StatisticsLedger(["theta"])
    ledger.record(
        [
            make_content(arrays={"theta": np.zeros(3), "counts": np.zeros(4)}, metrics={"n": 1.0}),
            make_content(config={"note": "x"}),  # invalid for the method, but it left the client
            RecordDict({"extra": MetricRecord({"n": 2.0})}),  # a record beyond the schema is recorded too
        ]
    )
    ledger.record(  # the harness's evaluation replies, in their own section
        [RecordDict({"metrics": MetricRecord({"n": 5.0}), "harness": MetricRecord({"compute_s.train": 1.0})})],
        HARNESS_SECTION,
    )
    assert ledger.info() == {
        "client_statistics": ["arrays.counts", "config.note", "extra.n", "metrics.n"],
        "client_statistic_values": 7,
        "client_arrays": ["theta"],
        "client_messages": 3,
        "harness_statistics": ["harness.compute_s.train", "metrics.n"],
        "harness_statistic_values": 2,
        "harness_messages": 1,
    }


# ----------------------------------------------------------------------------- comparison
def _write(record: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")


def test_comparison_table_and_plot(tmp_path, fedavg_run, fairfed_zero_run, centralized_run, local_run) -> None:
    for index, (config, outcome) in enumerate([fedavg_run, fairfed_zero_run, centralized_run, local_run]):
        record = results_record(config.to_dict(), outcome, 1.0)
        record.setdefault("info", outcome.info)
        record.setdefault("sends", outcome.sends)
        _write(record, tmp_path / "runs" / str(index) / "results.json")
        # a second seed of the same setting
        _write({**record, "seed": 1, "accuracy": record["accuracy"] - 0.01}, tmp_path / "runs" / f"{index}b" / "results.json")
    runs = load_runs([tmp_path / "runs"])
    rows = compare_methods(runs)
    # iid before dirichlet, then the methods by name; centralized plain is the reference, not a row
    assert list(zip(rows["partition"], rows["method"])) == [
        ("iid", "local"), ("dirichlet α=0.5", "fairfed"), ("dirichlet α=0.5", "fedavg")
    ]
    labels = {row["setting"]: row for _, row in rows.iterrows()}
    assert set(labels) == {"fedavg", "fairfed", "local"}  # no setting varies within a method
    assert all(rows["runs"] == 2)
    fedavg = labels["fedavg"]
    assert fedavg["round_trips_mean"] == 3 and fedavg["bytes_scope"] == "protocol"
    assert fedavg["protocol_bytes_up_mean"] == sum(s["bytes_up"] for s in protocol(fedavg_run[1]))
    assert fedavg["accuracy_mean"] == pytest.approx(fedavg_run[1].metrics["accuracy"] - 0.005)
    assert fedavg["client_statistics"] == "num-examples (in each of 3 replies per client)"
    assert fedavg["payload"] == "θ (3 replies per client)"
    assert labels["local"]["protocol_bytes_up_mean"] == 0 and labels["local"]["client_statistics"] == "none"
    assert labels["local"]["payload"] == "nothing"
    assert "positive_s1" in labels["fairfed"]["client_statistics"]
    references = comparison_references(runs)
    plain = references[(references["reference"] == "centralized plain") & (references["partition"] == "iid")].iloc[0]
    assert plain["runs"] == 2 and plain["payload"] == "rows x, s, y (1 reply per client)"
    assert plain["accuracy_mean"] == pytest.approx(centralized_run[1].metrics["accuracy"] - 0.005)
    constant = references[(references["reference"] == "constant classifier") & (references["partition"] == "iid")].iloc[0]
    expected = results_record(local_run[0].to_dict(), local_run[1], 1.0)["reference"]["constant"]
    assert constant["runs"] == 2 and constant["accuracy_mean"] == pytest.approx(expected["accuracy"])
    assert expected == results_record(centralized_run[0].to_dict(), centralized_run[1], 1.0)["reference"]["constant"]  # one split, one constant

    assert compare_main([str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "comparison.md").read_text(encoding="utf-8")
    assert "| fairfed | 2 |" in table and "| *centralized plain* | 2 |" in table and "| *constant classifier* |" in table
    accuracy = 100 * fedavg["accuracy_mean"]  # percent, as in every report table
    assert f"| fedavg | 2 | {accuracy:.2f} ± {100 * fedavg['accuracy_std']:.2f}" in table
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "comparison.csv").read_text().count("\n") == 1 + len(rows) + len(references)


def test_baseline_settings_take_their_annotated_types_and_reject_bad_values() -> None:
    """Hydra passes YAML numbers as written (``method.rho=100`` is an int): the settings hold them
    as the types they are declared with (OmegaConf types them against the class's settings); a
    number that is not a whole one is refused for an integer setting."""
    method = build_method(experiment("centralized", "method.variant=fair", "method.rho=100", "method.max_iter=50").method)
    assert isinstance(method.rho, float) and method.rho == 100.0
    assert isinstance(method.max_iter, int) and method.max_iter == 50
    with pytest.raises(ValueError, match=r"^method.max_iter=50.5: must be an integer"):
        experiment("centralized", "method.max_iter=50.5")
    fairfed = build_method(experiment("fairfed", "method.lr=1", "method.beta=2").method)
    assert isinstance(fairfed.lr, float) and isinstance(fairfed.beta, float) and fairfed.rounds == 20
    for name, override, message in (
        ("local", "method.variant=exponentiated_gradient", "variant must be one of"),
        ("centralized", "method.min_clients=0", "min_clients must be >= 1"),
        ("fedavg", "method.rounds=0", "need rounds >= 1"),
        ("fairfed", "method.beta=-1", "beta must be a finite number >= 0"),
    ):
        with pytest.raises(ValueError, match=message):
            build_method(experiment(name, override).method)


def test_comparison_without_results_fails_clearly(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert compare_main([str(tmp_path / "empty")]) == 2
    assert "no results" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Flower simulation
@pytest.mark.slow
def test_fedavg_on_the_flower_simulation_engine() -> None:
    from fedsynth.api import SimulationEngine

    config = experiment("fedavg", "method.rounds=2")
    simulation = SimulationEngine().run(config)
    in_process = InProcessEngine().run(config)
    assert simulation.engine == "simulation" and simulation.failures == []
    assert simulation.round_trips == in_process.round_trips == 2
    # Flower delivers replies in node order of its own; the weighted sum agrees to rounding
    np.testing.assert_allclose(simulation.theta, in_process.theta, rtol=1e-12, atol=1e-14)
    assert simulation.info["client_statistics"] == in_process.info["client_statistics"]
    assert [s["bytes_up"] for s in protocol(simulation)] == [s["bytes_up"] for s in protocol(in_process)]
    for key, value in in_process.metrics.items():
        assert simulation.metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize(
    "overrides",
    [
        ["+experiment=comparison", "method=fedavg"],
        ["+experiment=comparison", "method=fairfed"],
        ["+experiment=comparison", "method=centralized", "method.variant=exponentiated_gradient"],
        ["+experiment=comparison", "method=local"],
        ["+experiment=comparison_single_shot"],
    ],
)
def test_comparison_presets_compose_and_build(overrides) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from fedsynth.cli import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[*overrides, "dataset=dutch_gender"], return_hydra_config=True)
    assert cfg.engine._target_.endswith("InProcessEngine")
    assert set(cfg.hydra.sweeper.params) == {"dataset", "partition.scheme", "seed"}
    assert str(cfg.hydra.sweep.dir) == f"multirun/comparison/{cfg.method.name}"
    method = OmegaConf.to_container(cfg.method, resolve=True)
    assert build_method(method).name == cfg.method.name
    if cfg.method.name == "single_shot":
        assert method["synthetic_size"] == 1200 and method["k_max"] == 1000  # N^train,small of Dutch
