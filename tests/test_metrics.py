"""Metrics against fairlearn / scikit-learn and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference, equal_opportunity_difference as fl_eod
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from fedsynth.core import LogisticModel
from fedsynth.data.types import TabularData
from fedsynth.metrics import (
    accuracy,
    decision_boundary_covariance,
    distance_to_closest_record,
    equal_opportunity_difference,
    evaluate_model,
    evaluation_counts,
    metrics_from_counts,
    min_distance,
    privacy_report,
    statistical_parity_difference,
    sum_counts,
)


def table(rows: int, seed: int) -> TabularData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 4, generator=g, dtype=torch.float64)
    s = (torch.rand(rows, generator=g) < 0.4).double()
    y = torch.where(x[:, 0] + s + 0.5 * torch.randn(rows, generator=g, dtype=torch.float64) > 0.5, 1.0, -1.0).double()
    return TabularData(x, s, y, ("a", "b", "c", "d"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spd_and_eod_equal_fairlearn_up_to_sign(seed):
    data = table(500, seed)
    theta = torch.randn(6, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    y_pred = LogisticModel().predict(theta, data)
    spd = statistical_parity_difference(y_pred, data.s)
    eod = equal_opportunity_difference(data.y, y_pred, data.s)
    y_true01, y_pred01 = (data.y.numpy() + 1) / 2, (y_pred.numpy() + 1) / 2
    assert abs(spd) == pytest.approx(demographic_parity_difference(y_true01, y_pred01, sensitive_features=data.s.numpy()), abs=1e-12)
    assert abs(eod) == pytest.approx(fl_eod(y_true01, y_pred01, sensitive_features=data.s.numpy()), abs=1e-12)
    assert spd != 0 and eod != 0


def test_spd_sign_convention_is_privileged_minus_unprivileged():
    s = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert statistical_parity_difference(torch.tensor([1.0, 1.0, 1.0, -1.0]), s) == pytest.approx(0.5)


def test_covariance_is_equation_2():
    data = table(200, 3)
    theta = torch.randn(5, dtype=torch.float64)
    decisions = data.a @ theta
    expected = np.mean((data.s.numpy() - data.s.numpy().mean()) * decisions.numpy())
    assert decision_boundary_covariance(data.s, decisions) == pytest.approx(expected, abs=1e-14)
    assert evaluate_model(LogisticModel(fit_intercept=False), theta, data)["covariance"] == pytest.approx(expected, abs=1e-12)


def test_pooled_counts_equal_metrics_on_the_union():
    parts = [table(150, 4), table(90, 5), table(210, 6)]
    theta = torch.randn(6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    union = TabularData(*(torch.cat([getattr(p, k) for p in parts]) for k in ("x", "s", "y")), feature_names=parts[0].feature_names)
    pooled = metrics_from_counts(sum_counts([evaluation_counts(LogisticModel(), theta, p) for p in parts]))
    direct = evaluate_model(LogisticModel(), theta, union)
    y_pred = LogisticModel().predict(theta, union)
    assert pooled == pytest.approx(direct, abs=1e-12)
    assert direct["accuracy"] == pytest.approx(accuracy(union.y, y_pred))
    assert direct["spd"] == pytest.approx(statistical_parity_difference(y_pred, union.s))


def test_metrics_reject_mismatched_model():
    with pytest.raises(ValueError, match="weights"):
        evaluate_model(LogisticModel(), np.zeros(3), table(10, 0))
    with pytest.raises(ValueError, match="lack"):
        metrics_from_counts({"n": 1.0})


@pytest.mark.parametrize("repeats", [False, True], ids=["distinct_rows", "repeated_rows"])
def test_distances_match_brute_force(repeats):
    """Exact nearest-row distances, with repeated real and query rows (as in Dutch) too, and in
    the many dimensions where the search is brute force."""
    real, synthetic = table(300, 8).x, table(40, 9).x
    if repeats:
        real = torch.cat([real, real[:150], real[:10]])
        synthetic = torch.cat([synthetic, synthetic[:7], real[:3]])
    brute = np.array([[np.linalg.norm(r - q) for r in real.numpy()] for q in synthetic.numpy()])
    assert torch.allclose(distance_to_closest_record(synthetic, real), torch.tensor(brute.min(axis=1)))
    assert min_distance(real, synthetic) == pytest.approx(brute.min())


def test_distances_in_many_dimensions_match_pairwise_distances():
    real, synthetic = torch.randn(500, 40, dtype=torch.float64), torch.randn(60, 40, dtype=torch.float64)
    expected = torch.cdist(synthetic, real).min(dim=1).values
    torch.testing.assert_close(distance_to_closest_record(synthetic, real), expected, rtol=0, atol=1e-10)


def test_membership_auc_equals_scikit_learn():
    """privacy_report's mia_auc is the ROC AUC of the attack score −DCR(real row, synthetic data),
    members (training rows) against held-out rows, ties included. With as many training as
    held-out rows both sets are used whole, so scikit-learn can score the same attack."""
    train, held_out, synthetic = table(60, 21), table(60, 22), table(25, 23)
    train.x[:20] = synthetic.x[:20] + 0.05  # members the synthetic rows sit close to
    held_out.x[:5] = train.x[30:35]  # ties between members and held-out rows
    scores = [-distance_to_closest_record(rows.x, synthetic.x).numpy() for rows in (train, held_out)]
    expected = roc_auc_score(np.r_[np.ones(60), np.zeros(60)], np.r_[scores[0], scores[1]])
    assert expected > 0.6
    assert privacy_report(synthetic, train, held_out, seed=4)["mia_auc"] == pytest.approx(expected, abs=1e-12)


def test_privacy_report_flags_copied_training_rows():
    data = table(600, 10)
    train, held_out = data.subset(torch.arange(0, 400)), data.subset(torch.arange(400, 600))
    copied = train.subset(torch.arange(0, 200))
    leaky = privacy_report(copied, train, held_out, seed=0)
    assert leaky["min_distance"] == 0.0
    assert leaky["mia_auc"] > 0.7
    fresh = privacy_report(table(200, 11), train, held_out, seed=0)
    assert fresh["min_distance"] > 0
    assert abs(fresh["mia_auc"] - 0.5) < 0.1
    assert fresh["dcr_train_p50"] > 0 and fresh["dcr_holdout_p50"] > 0


def test_group_disclosure_measures_what_synthetic_labels_reveal():
    from fedsynth.core import choose_synthetic_labels
    from fedsynth.metrics import group_disclosure

    data = table(600, 12)
    g = torch.Generator().manual_seed(0)

    def disclosure(strategy: str, size: int) -> dict[str, float]:
        s, y = choose_synthetic_labels(data, size, strategy, g)
        return group_disclosure(TabularData(torch.zeros(size, data.num_features, dtype=torch.float64), s, y, data.feature_names), data)

    assert disclosure("copy", 600) == {"label_share_error": 0.0, "label_base_rate_error": 0.0}
    proportional = disclosure("proportional", 100)
    assert proportional["label_share_error"] <= 0.02 and proportional["label_base_rate_error"] <= 0.02
    balanced = disclosure("balanced", 100)
    rates = [float((data.y[data.s == v] > 0).double().mean()) for v in (0.0, 1.0)]
    assert balanced["label_share_error"] == pytest.approx(abs(0.5 - float(data.s.mean())))
    assert balanced["label_base_rate_error"] == pytest.approx(sum(abs(0.5 - r) for r in rates) / 2)


# ----------------------------------------------------------------------------- issue 21: new metrics


def clients(seed: int, sizes=(150, 90, 210)) -> list[TabularData]:
    return [table(rows, seed + index) for index, rows in enumerate(sizes)]


def union_of(parts: list[TabularData]) -> TabularData:
    return TabularData.concat(parts)


def labels01(values: torch.Tensor) -> np.ndarray:
    return (values.numpy() > 0).astype(int)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pooled_balanced_accuracy_and_auc_equal_scikit_learn_on_the_union(seed):
    """Balanced accuracy pooled from the clients' counts is scikit-learn's on the union exactly; the
    AUC pooled from their decision-value histograms is within its stated bound of scikit-learn's
    ``roc_auc_score`` of the decision values, and the bound is small for continuous scores."""
    parts = clients(10 * seed)
    theta = torch.randn(6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    model = LogisticModel()
    pooled = metrics_from_counts(sum_counts([evaluation_counts(model, theta, p) for p in parts]))
    union = union_of(parts)
    decisions, y_pred = model.decision(theta, union).numpy(), model.predict(theta, union)
    expected_auc = roc_auc_score(labels01(union.y), decisions)
    assert pooled["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels01(union.y), labels01(y_pred)), abs=1e-12)
    assert abs(pooled["auc"] - expected_auc) <= pooled["auc_error_bound"] + 1e-12
    assert pooled["auc_error_bound"] < 0.01
    assert evaluate_model(model, theta, union) == pytest.approx(pooled, abs=1e-12)


def test_histogram_auc_is_exact_for_tied_scores_and_its_bound_is_attained():
    """Scores that tie exactly (every row of a bin has the same value) give scikit-learn's AUC to
    the last digit; scores that all share one bin give 0.5 with bound 0.5, the most they can be off
    (here: the positives all score above the negatives, AUC 1)."""
    from fedsynth.metrics import histogram_auc
    from fedsynth.metrics.fairness import decision_histogram

    g = np.random.default_rng(3)
    y = g.random(400) > 0.3
    scores = torch.tensor(np.round(g.normal(size=400) + y, 0))  # integers: one value per bin
    auc, bound = histogram_auc(decision_histogram(scores[torch.tensor(y)]), decision_histogram(scores[torch.tensor(~y)]))
    assert auc == pytest.approx(roc_auc_score(y, scores.numpy()), abs=1e-12) and bound > 0
    close = torch.tensor(np.where(y, 1e-4, 0.0))  # one bin, perfectly ranked
    auc, bound = histogram_auc(decision_histogram(close[torch.tensor(y)]), decision_histogram(close[torch.tensor(~y)]))
    assert (auc, bound) == (0.5, 0.5) and roc_auc_score(y, close.numpy()) == 1.0
    assert np.isnan(histogram_auc([0, 3], [0, 0])).all()


def test_balanced_accuracy_with_one_label_is_the_recall_of_that_label_as_in_scikit_learn():
    data = table(200, 4)
    only_positive = data.subset(data.y == 1)
    theta = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = evaluate_model(LogisticModel(), theta, only_positive)
    y_pred = labels01(LogisticModel().predict(theta, only_positive))
    with pytest.warns(UserWarning):  # scikit-learn: y_pred contains classes not in y_true
        expected = balanced_accuracy_score(labels01(only_positive.y), y_pred)
    assert got["balanced_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert np.isnan(got["auc"]) and np.isnan(got["auc_error_bound"])  # no negative row to rank against


@pytest.mark.parametrize("seed", [0, 1])
def test_per_client_metrics_and_their_range_equal_fairlearn_metricframe(seed):
    """Per client: accuracy, SPD (selection-rate gap s = 1 minus s = 0) and EOD (true-positive-rate
    gap) from the client's own counts equal fairlearn's MetricFrame over (client, s); the run's
    client_min / client_max are MetricFrame's group_min / group_max over clients."""
    from fairlearn.metrics import MetricFrame, equalized_odds_difference, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score

    from fedsynth.outcome import RunOutcome
    from fedsynth.reporting.results import results_record

    parts = clients(100 + seed, sizes=(120, 80, 160, 60))
    theta = torch.randn(6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    model = LogisticModel()
    per_client = [metrics_from_counts(evaluation_counts(model, theta, p)) for p in parts]
    union = union_of(parts)
    client = np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)])
    y_true, y_pred = labels01(union.y), labels01(model.predict(theta, union))
    s = union.s.numpy().astype(int)
    by_client = MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred, sensitive_features=client)
    rates = MetricFrame(
        metrics={"selection": selection_rate, "tpr": true_positive_rate},
        y_true=y_true, y_pred=y_pred, sensitive_features=s, control_features=client,
    ).by_group
    for k, metrics in enumerate(per_client):
        assert metrics["accuracy"] == pytest.approx(by_client.by_group[k], abs=1e-12)
        assert metrics["spd"] == pytest.approx(rates.loc[(k, 1), "selection"] - rates.loc[(k, 0), "selection"], abs=1e-12)
        assert metrics["eod"] == pytest.approx(rates.loc[(k, 1), "tpr"] - rates.loc[(k, 0), "tpr"], abs=1e-12)
        rows = client == k
        assert abs(metrics["eod"]) == pytest.approx(fl_eod(y_true[rows], y_pred[rows], sensitive_features=s[rows]), abs=1e-12)
        # equalized odds is the larger of the TPR and FPR gaps: EOD is its TPR half
        assert abs(metrics["eod"]) <= equalized_odds_difference(y_true[rows], y_pred[rows], sensitive_features=s[rows]) + 1e-12
    outcome = RunOutcome(
        engine="test", theta=theta.tolist(),
        metrics=metrics_from_counts(sum_counts([evaluation_counts(model, theta, p) for p in parts])),
        clients=[{"client_id": k, "node": k + 1, "metrics": m, "counts": {}, "bytes_up": {}, "bytes_down": {}}
                 for k, m in enumerate(per_client)],
    )
    record = results_record({"dataset": {"name": "t"}, "method": {"name": "m"}, "seed": seed}, outcome, 1.0)
    assert record["client_min"]["accuracy"] == pytest.approx(by_client.group_min(), abs=1e-12)
    assert record["client_max"]["accuracy"] == pytest.approx(by_client.group_max(), abs=1e-12)
    spd = [m["spd"] for m in per_client]
    assert (record["client_min"]["spd"], record["client_max"]["spd"]) == (min(spd), max(spd))
    assert record["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)


def test_the_constant_classifier_is_scikit_learns_most_frequent_dummy():
    """The reference: the majority label of the pooled training rows, measured on the pooled test
    rows — scikit-learn's DummyClassifier(strategy="most_frequent") fitted on the training union;
    its SPD and EOD are 0 (fairlearn), balanced accuracy 0.5, AUC 0.5."""
    from fairlearn.metrics import demographic_parity_difference
    from sklearn.dummy import DummyClassifier

    from fedsynth.data.types import ClientPartition
    from fedsynth.metrics import constant_classifier, report_counts

    theta = torch.randn(6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for flip in (False, True):  # a majority of +1, then of −1
        parts = []
        for k, (train, test) in enumerate(zip(clients(20, (300, 200)), clients(40, (100, 80)))):
            if flip:
                train, test = (TabularData(t.x, t.s, -t.y, t.feature_names) for t in (train, test))
            parts.append(ClientPartition(k, train, test))
        counts = sum_counts([report_counts(LogisticModel(), theta, p) for p in parts])
        constant = constant_classifier(counts)
        train, test = union_of([p.train for p in parts]), union_of([p.test for p in parts])
        dummy = DummyClassifier(strategy="most_frequent").fit(train.x.numpy(), labels01(train.y))
        predicted = dummy.predict(test.x.numpy())
        assert constant["label"] == (1.0 if dummy.classes_[np.argmax(dummy.class_prior_)] == 1 else -1.0)
        assert constant["accuracy"] == pytest.approx(dummy.score(test.x.numpy(), labels01(test.y)), abs=1e-12)
        assert constant["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels01(test.y), predicted)) == 0.5
        assert demographic_parity_difference(labels01(test.y), predicted, sensitive_features=test.s.numpy()) == 0
        assert (constant["spd"], constant["eod"], constant["covariance"], constant["auc"]) == (0.0, 0.0, 0.0, 0.5)


def test_a_mixture_scores_its_expected_decision_value():
    from fedsynth.core import LogisticMixture

    data = table(300, 6)
    thetas = torch.randn(3, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64).numpy()
    weights = np.array([0.2, 0.5, 0.3])
    got = evaluate_model(LogisticModel(), LogisticMixture(thetas, weights), data)
    expected_score = sum(w * LogisticModel().decision(t, data).numpy() for w, t in zip(weights, thetas))
    assert abs(got["auc"] - roc_auc_score(labels01(data.y), expected_score)) <= got["auc_error_bound"]


def group_table(rows: int, seed: int, num_groups: int) -> TabularData:
    """Rows whose labels depend on their group (k groups, s = 0..k-1) and on x."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 4, generator=g, dtype=torch.float64)
    s = torch.randint(num_groups, (rows,), generator=g).double()
    noise = 0.5 * torch.randn(rows, generator=g, dtype=torch.float64)
    y = torch.where(x[:, 0] + 0.4 * s + noise > 0.5, 1.0, -1.0).double()
    return TabularData(x, s, y, ("a", "b", "c", "d"), num_groups=num_groups)


@pytest.mark.parametrize("num_groups", [3, 4, 6])
def test_pooled_k_group_gaps_equal_fairlearn_on_the_union(num_groups):
    """Per-client counts of k groups, summed, give fairlearn's demographic_parity_difference and
    equal_opportunity_difference of the union's rows (to 1e-9), and the largest covariance of a
    group indicator with the decision value."""
    parts = [group_table(rows, num_groups + i, num_groups) for i, rows in enumerate((160, 90, 250))]
    union = TabularData.concat(parts)
    model = LogisticModel()
    theta = torch.randn(model.num_weights(4, num_groups), generator=torch.Generator().manual_seed(num_groups), dtype=torch.float64)
    pooled = metrics_from_counts(sum_counts([evaluation_counts(model, theta, part) for part in parts]))
    y_pred = model.predict(theta, union)
    y_true01, y_pred01, groups = (union.y.numpy() + 1) / 2, (y_pred.numpy() + 1) / 2, union.s.numpy()
    assert abs(pooled["spd"] - demographic_parity_difference(y_true01, y_pred01, sensitive_features=groups)) <= 1e-9
    assert abs(pooled["eod"] - fl_eod(y_true01, y_pred01, sensitive_features=groups)) <= 1e-9
    assert pooled["spd"] > 0 and pooled["eod"] > 0
    decisions = model.decision(theta, union).numpy()
    covariances = [np.mean(((groups == g) - np.mean(groups == g)) * decisions) for g in range(num_groups)]
    assert pooled["covariance"] == pytest.approx(max(abs(c) for c in covariances), abs=1e-12)
    assert pooled["accuracy"] == pytest.approx(accuracy(union.y, y_pred), abs=1e-12)
    assert pooled["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(union.y.numpy(), y_pred.numpy()), abs=1e-12)
    from fedsynth.metrics.fairness import demographic_parity_difference as ours_by_rows

    assert ours_by_rows(y_pred, union.s) == pytest.approx(pooled["spd"], abs=1e-12)


def test_k_group_counts_keys_and_a_group_absent_from_a_client():
    """A client without rows of some group still reports every group's counts (zeros); the
    gaps of the pooled counts are over the groups with rows, as fairlearn's over the groups present."""
    from fedsynth.metrics import count_keys

    data = group_table(300, 11, 4)
    without_group_2 = data.subset(data.s != 2)
    theta = torch.randn(8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    counts = evaluation_counts(LogisticModel(), theta, without_group_2)
    assert tuple(counts) == count_keys(4)
    assert counts["n_s2"] == 0 and "sum_s" not in counts
    y_pred = LogisticModel().predict(theta, without_group_2)
    expected = demographic_parity_difference(
        (without_group_2.y.numpy() + 1) / 2, (y_pred.numpy() + 1) / 2, sensitive_features=without_group_2.s.numpy()
    )
    assert abs(metrics_from_counts(counts)["spd"] - expected) <= 1e-9
    assert math.isnan(metrics_from_counts(evaluation_counts(LogisticModel(), theta, data.subset(data.s == 1)))["spd"])


def test_the_constant_classifier_of_k_groups_has_no_gap():
    from fedsynth.metrics import constant_classifier

    data = group_table(400, 5, 5)
    counts = evaluation_counts(LogisticModel(), torch.randn(9, dtype=torch.float64), data)
    constant = constant_classifier(counts)
    assert constant["spd"] == 0 and constant["eod"] == 0 and constant["covariance"] == pytest.approx(0, abs=1e-12)
    assert constant["balanced_accuracy"] == 0.5


def test_binary_counts_keep_their_keys_and_the_signed_gap():
    """A binary attribute keeps today's count keys (s1 before s0, sum_s, sum_s_decision) and its
    signed SPD, whose absolute value is fairlearn's difference."""
    from fedsynth.metrics import count_keys
    from fedsynth.metrics.counts import COUNT_KEYS

    data = table(300, 8)
    counts = evaluation_counts(LogisticModel(), torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64), data)
    assert tuple(counts) == COUNT_KEYS == count_keys(2)
    assert COUNT_KEYS[2:4] == ("n_s1", "n_s0") and "sum_s_decision" in COUNT_KEYS
