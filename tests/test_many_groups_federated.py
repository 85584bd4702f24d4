"""A sensitive attribute with k > 2 groups through the federated layer (issue 21, item 3): the
methods run on both engines, the pooled largest gaps are fairlearn's, the server's checks take the
k groups' counts and rows, and the methods of a binary attribute refuse k groups before anything
starts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equal_opportunity_difference, selection_rate
from flwr.app import MetricRecord, RecordDict
from omegaconf import OmegaConf
from sklearn.metrics import accuracy_score, recall_score

from fedsynth import api
from fedsynth.core import LargestDemographicParityGap, LargestEqualOpportunityGap, LogisticModel
from fedsynth.core.targets import fit_to_target
from fedsynth.data import DatasetSpec, load_dataset, partition_clients
from fedsynth.data.types import TabularData
from fedsynth.federated.messages import HARNESS
from fedsynth.federated.validation import check_evaluation_reply, reply_schema
from fedsynth.methods import build_method, make_content
from fedsynth.methods.base import ReplySchema
from fedsynth.methods.replies import validate_rows
from fedsynth.metrics import evaluation_counts, group_metrics, sum_counts
from fedsynth.reporting.collect import load_runs
from fedsynth.reporting.comparison import write_comparison
from fedsynth.reporting.report import build_report
from fedsynth.reporting.results import results_record

GROUPS = ["a", "b", "c", "d"]
"""The values of the sensitive column: k = 4 groups of different sizes and label rates."""

SINGLE_SHOT_PAPER = [
    "method=single_shot_paper", "method.fairness=dp_largest_gap", "method.fairness_temperature=0.1",
    "method.rho_o=3", "method.k_max=10", "method.synthetic_size=48",
]
METHODS = {
    "single_shot": ["method=single_shot", "method.fairness=group_covariance", "method.rho_o=1", "method.k_max=5"],
    "single_shot_paper": SINGLE_SHOT_PAPER,
    "single_shot_target": [
        "method=single_shot", "method.fairness=dp_largest_gap", "method.fairness_temperature=0.1",
        "method.server_fairness_target=0.05",
    ],
    "fedavg": ["method=fedavg", "method.rounds=3"],
    "fair_fate": ["method=fair_fate", "method.rounds=2"],
    "fairfed": ["method=fairfed", "method.rounds=3"],
    "centralized": ["method=centralized", "method.variant=fair", "method.fairness=group_covariance"],
    "centralized_eg": ["method=centralized", "method.variant=exponentiated_gradient", "method.eg_max_iter=10"],
}
"""Each method of k groups, in a setting small enough for a test."""


@pytest.fixture(scope="module")
def group_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 rows: three numeric features, the group column g (4 values, 40/30/20/10 %) and a label
    whose rate depends on the group."""
    rng = np.random.default_rng(0)
    groups = rng.choice(GROUPS, size=800, p=[0.4, 0.3, 0.2, 0.1])
    x = rng.normal(size=(800, 3))
    shift = np.array([{"a": 0.8, "b": 0.0, "c": -0.5, "d": -1.0}[g] for g in groups])
    y = (rng.random(800) < 1 / (1 + np.exp(-(x[:, 0] + 0.5 * x[:, 1] + shift)))).astype(int)
    path = tmp_path_factory.mktemp("groups") / "groups.csv"
    lines = [f"{a:.4f},{b:.4f},{c:.4f},{g},{label}" for (a, b, c), g, label in zip(x, groups, y)]
    path.write_text("f0,f1,f2,g,label\n" + "\n".join(lines) + "\n")
    return path


def compose(path: Path, *overrides: str):
    """The experiment config of the k-group CSV (2 clients) with ``overrides``."""
    return api.compose([
        "dataset=csv", f"dataset.file={path}", "dataset.label.column=label", "dataset.label.positive=1",
        "dataset.sensitive.column=g", "dataset.sensitive.privileged=null", f"+dataset.sensitive.groups=[{','.join(GROUPS)}]",
        *overrides,
    ])


def run(path: Path, engine: str, overrides: list[str]) -> tuple[api.Experiment, api.RunOutcome, dict]:
    """Check and run one experiment on ``engine``: the experiment, its outcome, its results.json record."""
    config = compose(path, f"engine={engine}", *overrides)
    experiment = api.check(config)
    outcome = api.run(experiment, api.engine(config))
    return experiment, outcome, results_record(OmegaConf.to_container(config, resolve=True), outcome, 0.0)


@pytest.fixture(scope="module")
def inprocess_runs(group_csv: Path) -> dict[str, tuple[api.Experiment, api.RunOutcome, dict]]:
    """Every method of :data:`METHODS` on the in-process engine."""
    try:
        return {name: run(group_csv, "inprocess", overrides) for name, overrides in METHODS.items()}
    finally:
        api.release()


def pooled_predictions(experiment: api.Experiment, theta: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clients' test rows as the clients split them (labels 0/1, groups) and θ's predictions on them."""
    spec = DatasetSpec.from_config(experiment.dataset)
    clients = partition_clients(
        load_dataset(spec, experiment.data_dir), spec.num_clients, seed=experiment.seed,
        **dataclasses.asdict(experiment.partition),
    )
    model = build_method(experiment.method).model
    tests = [client.test for client in clients]
    decisions = torch.cat([model.decision(torch.as_tensor(theta, dtype=torch.float64), test) for test in tests])
    y_true = torch.cat([test.y for test in tests]).numpy() > 0
    return y_true.astype(int), (decisions.numpy() >= 0).astype(int), torch.cat([test.s for test in tests]).numpy()


@pytest.mark.parametrize("name", list(METHODS))
def test_a_federated_run_on_k_groups_gives_fairlearns_largest_gaps(inprocess_runs, name: str) -> None:
    """Each method on the in-process engine: θ has k − 1 group indicators, and the pooled ``spd`` /
    ``eod`` are fairlearn's demographic_parity_difference / equal_opportunity_difference of θ's
    predictions on the clients' test rows (1e-9), the per-group rates of results.json its
    MetricFrame's. The exponentiated-gradient mixture is a randomized model (expected counts):
    checked through its θ layout only."""
    experiment, outcome, record = inprocess_runs[name]
    assert outcome.failures == [] and len(outcome.clients) == 2
    assert record["groups"].keys() == {f"s{g}" for g in range(len(GROUPS))}
    if name == "centralized_eg":
        assert outcome.info["mixture_size"] >= 1 and 0.5 < outcome.metrics["accuracy"] <= 1
        return
    assert len(outcome.theta) == 3 + len(GROUPS) - 1 + 1  # x, the k − 1 indicators, the intercept
    if name == "single_shot_target":  # the server's largest gap on its union meets the target
        assert outcome.info["server_target_met"] and abs(outcome.info["server_target_achieved"]) <= 0.05
    if name == "fairfed":  # the weights follow each client's largest gap on its training rows
        assert all(0 <= r["spd_global"] <= 1 and len(r["delta"]) == 2 for r in outcome.info["fairfed_rounds"])
    y_true, y_pred, groups = pooled_predictions(experiment, outcome.theta)
    assert outcome.metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    spd = demographic_parity_difference(y_true, y_pred, sensitive_features=groups)
    eod = equal_opportunity_difference(y_true, y_pred, sensitive_features=groups)
    assert abs(outcome.metrics["spd"] - spd) <= 1e-9 and abs(outcome.metrics["eod"] - eod) <= 1e-9
    assert abs(record["spd"] - spd) <= 1e-9
    frame = MetricFrame(
        metrics={"positive_rate": selection_rate, "accuracy": accuracy_score, "true_positive_rate": recall_score},
        y_true=y_true, y_pred=y_pred, sensitive_features=groups,
    ).by_group
    for g in range(len(GROUPS)):
        for key in ("positive_rate", "accuracy", "true_positive_rate"):
            assert abs(record["groups"][f"s{g}"][key] - frame.loc[float(g), key]) <= 1e-12, (g, key)


@pytest.mark.slow
def test_flowers_simulation_engine_runs_k_groups_as_the_in_process_engine(group_csv: Path, inprocess_runs) -> None:
    """single_shot_paper on k groups through Flower's simulation engine: the same metrics as the
    in-process engine (the union's row order differs, so θ to rounding) and fairlearn's gap."""
    experiment, simulated, record = run(group_csv, "simulation", SINGLE_SHOT_PAPER)
    _, in_process, _ = inprocess_runs["single_shot_paper"]
    assert simulated.engine == "simulation" and simulated.failures == []
    np.testing.assert_allclose(simulated.theta, in_process.theta, rtol=1e-6, atol=1e-9)
    y_true, y_pred, groups = pooled_predictions(experiment, simulated.theta)
    assert abs(simulated.metrics["spd"] - demographic_parity_difference(y_true, y_pred, sensitive_features=groups)) <= 1e-9
    assert simulated.metrics == pytest.approx(in_process.metrics, rel=1e-9)
    expected = group_metrics(sum_counts([client["counts"] for client in in_process.clients]))
    for group, values in record["groups"].items():
        assert values == pytest.approx(expected[group], rel=1e-9)


def rows(s: list[float], num_features: int = 2) -> RecordDict:
    """An upload of len(s) rows with groups ``s``."""
    count = len(s)
    return make_content(arrays={
        "x": np.zeros((count, num_features)), "s": np.asarray(s, dtype=np.float64), "y": np.ones(count),
    })


def test_the_server_rejects_rows_whose_group_is_out_of_range() -> None:
    schema = ReplySchema(num_features=2, max_abs_x=10.0, num_groups=4)
    validate_rows(rows([0, 1, 2, 3]), schema, (1, 10))
    for bad in ([0, 4], [0, -1], [0, 1.5]):
        with pytest.raises(ValueError, match=r"sensitive values s must be in \{0, \.\., 3\} \(the 4 groups"):
            validate_rows(rows(bad), schema, (1, 10))
    with pytest.raises(ValueError, match=r"sensitive values s must be in \{0, 1\}"):
        validate_rows(rows([0, 2]), dataclasses.replace(schema, num_groups=2), (1, 10))


def report(counts: dict) -> RecordDict:
    """A client's evaluation reply of ``counts``."""
    reply = make_content(metrics=counts)
    reply[HARNESS] = MetricRecord({"compute_s.train": 1.0})
    return reply


def test_the_server_checks_the_counts_of_every_group() -> None:
    """An honest k-group report passes; a group's rows that do not add up, a group's positives
    beyond its rows, and a binary report on a k-group run are refused."""
    generator = torch.Generator().manual_seed(0)
    data = TabularData(
        torch.randn(40, 2, generator=generator, dtype=torch.float64),
        torch.arange(40, dtype=torch.float64) % 3,
        torch.where(torch.rand(40, generator=generator, dtype=torch.float64) > 0.5, 1.0, -1.0),
        ("f0", "f1"),
        num_groups=3,
    )
    counts = evaluation_counts(LogisticModel(fit_intercept=True), np.array([0.5, -0.2, 0.3, -0.4, 0.1]), data)
    check = dict(report_metrics=True, extra_metrics=(), max_test_rows=100)
    got, _, _ = check_evaluation_reply(report(counts), num_groups=3, **check)
    assert got["n_s2"] == 13 and got.keys() == counts.keys()
    for key, value, message in (
        ("n_s2", 12.0, "n must equal n_s0 \\+ n_s1 \\+ n_s2"),
        ("positive_s1", 14.0, "n_y1_s1 and positive_s1 must be <= n_s1"),
    ):
        with pytest.raises(ValueError, match=message):
            check_evaluation_reply(report(counts | {key: value}), num_groups=3, **check)
    with pytest.raises(ValueError, match="missing"):
        check_evaluation_reply(report(counts), num_groups=2, **check)


REFUSALS = {
    "dp_fedavg": (["method=dp_fedavg"], "dataset.sensitive: 4 groups, but method 'dp_fedavg' takes a binary sensitive attribute only"),
    "dp_mst": (["method=dp_mst"], "dataset.sensitive: 4 groups, but method 'dp_mst' takes a binary"),
    "dp_suffstats": (["method=dp_suffstats"], "dataset.sensitive: 4 groups, but method 'dp_suffstats' takes a binary"),
    "default covariance": (
        ["method=single_shot"],
        "method.fairness=covariance: a measure of two groups, but dataset.sensitive has 4 groups; use method.fairness=group_covariance",
    ),
    "centralized dp_gap": (["method=centralized", "method.variant=fair", "method.fairness=dp_gap"], "use method.fairness=dp_largest_gap"),
    "target with covariance": (
        ["method=single_shot", "method.server_rho=0", "method.server_fairness_target=0.05"],
        "method.fairness=covariance: a measure of two groups",
    ),
    "privacy": (
        ["method=single_shot_paper", "method.rho_o=0", "method.privacy.epsilon=1"],
        "method 'single_shot' with method.privacy.epsilon set takes a binary sensitive attribute only",
    ),
}
"""What a k-group spec refuses at check time: the overrides and the message's words."""


@pytest.mark.parametrize("case", list(REFUSALS))
def test_methods_of_a_binary_attribute_refuse_k_groups_at_check_time(group_csv: Path, case: str) -> None:
    """One line naming dataset.sensitive (or the method key) and the fix, before anything starts."""
    overrides, message = REFUSALS[case]
    with pytest.raises(api.ConfigError) as error:
        api.check(compose(group_csv, *overrides))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_binary_settings_pass_the_group_check(group_csv: Path) -> None:
    """A binary spec passes every method's group check (the refusals are k > 2 only)."""
    for name in ("dp_fedavg", "fairfed", "single_shot"):
        method = build_method(OmegaConf.to_container(api.compose([f"method={name}"]).method, resolve=True))
        method.check_groups(2)


def test_the_synthetic_table_takes_k_groups_ordered_by_their_positive_rate() -> None:
    """``generator.num_groups`` = 4: every group present, the positive rate rising with the group
    (an ordered logit along the sensitive direction), the experiment's schema of 4 groups; the
    default stays a binary attribute."""
    spec = DatasetSpec.from_config(OmegaConf.to_container(api.compose(["dataset.generator.num_groups=4"]).dataset))
    assert spec.num_groups == 4
    data = load_dataset(spec)
    rates = [float((data.y[data.s == g] > 0).double().mean()) for g in range(4)]
    assert data.num_groups == 4 and set(data.s.unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert rates == sorted(rates) and rates[-1] - rates[0] > 0.2
    binary = load_dataset(DatasetSpec.from_config(OmegaConf.to_container(api.compose([]).dataset)))
    assert binary.num_groups == 2 and set(binary.s.unique().tolist()) == {0.0, 1.0}
    experiment = api.check(api.compose(["dataset.generator.num_groups=4", "method.fairness=group_covariance"]))
    assert reply_schema(experiment).num_groups == 4


@pytest.mark.parametrize("metric, measure", [("spd", LargestDemographicParityGap), ("eod", LargestEqualOpportunityGap)])
def test_a_fairness_target_on_k_groups_bounds_fairlearns_largest_gap(metric: str, measure: type) -> None:
    """fit_to_target on 4 groups with the measure of the metric: the achieved value it reports is
    fairlearn's largest gap of its predictions on the rows (1e-9), within the target, which the
    plain fit misses."""
    spec = DatasetSpec.from_config(OmegaConf.to_container(api.compose(["dataset.generator.num_groups=4"]).dataset))
    data = load_dataset(spec).subset(torch.arange(1200))
    model = LogisticModel(fit_intercept=True)
    fit = fit_to_target(data, model, measure(temperature=0.1), 0.05, metric=metric)
    y_true = (data.y > 0).int().numpy()
    gap = demographic_parity_difference if metric == "spd" else equal_opportunity_difference

    def largest_gap(theta: torch.Tensor) -> float:
        y_pred = (model.decision(theta, data) >= 0).int().numpy()
        return gap(y_true, y_pred, sensitive_features=data.s.numpy())

    assert fit.met and fit.rho > 0 and abs(fit.achieved - largest_gap(fit.solution.theta)) <= 1e-9
    assert largest_gap(model.fit(data).theta) > 0.05 >= fit.achieved


def test_the_reports_show_each_groups_rates(inprocess_runs, tmp_path: Path) -> None:
    """fedsynth-report writes groups.csv and a Groups section, fedsynth-compare appends the table:
    one row per setting and group, the group's positive rate and accuracy those of results.json."""
    for name in ("fedavg", "single_shot"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "results.json").write_text(json.dumps(inprocess_runs[name][2]))
    report = build_report([tmp_path / "runs"], tmp_path / "report", make_plots=False)
    groups = pd.read_csv(tmp_path / "report" / "groups.csv")
    assert len(groups) == 2 * len(GROUPS) and "## Groups" in report["report"]
    row = groups[(groups["setting"] == "fedavg") & (groups["group"] == "s3")].iloc[0]
    expected = inprocess_runs["fedavg"][2]["groups"]["s3"]
    assert row["positive_rate_mean"] == pytest.approx(expected["positive_rate"], rel=1e-12)
    assert row["accuracy_mean"] == pytest.approx(expected["accuracy"], rel=1e-12)
    comparison = write_comparison(load_runs([tmp_path / "runs"]), tmp_path / "compare")
    assert "## Groups" in comparison["markdown"].read_text() and "| fedavg | s3 |" in comparison["markdown"].read_text()


def test_fairfeds_weights_follow_each_clients_largest_gap() -> None:
    """FairFed on 3 groups: Δ_k = |F_k − F_global| with F the largest gap of the groups' positive
    rates (of the client's counts, and of the pooled counts), and the weight update of the paper."""
    fairfed = build_method(OmegaConf.to_container(api.compose(["method=fairfed", "method.beta=0.5"]).method, resolve=True))
    assert fairfed.statistic_keys(3) == ("correct", "n_s0", "n_s1", "n_s2", "positive_s0", "positive_s1", "positive_s2")
    stats = {
        1: {"num-examples": 100.0, "correct": 80.0, "n_s0": 50.0, "n_s1": 30.0, "n_s2": 20.0,
            "positive_s0": 10.0, "positive_s1": 15.0, "positive_s2": 10.0},  # rates .2 .5 .5: gap .3
        2: {"num-examples": 100.0, "correct": 70.0, "n_s0": 40.0, "n_s1": 40.0, "n_s2": 20.0,
            "positive_s0": 20.0, "positive_s1": 20.0, "positive_s2": 12.0},  # rates .5 .5 .6: gap .1
    }
    updates = {node: make_content(arrays={"theta": np.zeros(3)}, metrics=m) for node, m in stats.items()}
    weights = fairfed.aggregation_weights(1, updates)
    global_gap = 22 / 40 - 30 / 90  # pooled rates 30/90, 35/70, 22/40
    deltas = {1: abs(0.3 - global_gap), 2: abs(0.1 - global_gap)}
    assert fairfed._history[0]["spd_global"] == pytest.approx(global_gap, abs=1e-12)
    for node in (1, 2):
        expected = 100.0 - 0.5 * 200.0 * (deltas[node] - sum(deltas.values()) / 2)
        assert weights[node] == pytest.approx(expected, abs=1e-9)
