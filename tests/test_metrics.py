"""Metrics against fairlearn / scikit-learn and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fairlearn.metrics import demographic_parity_difference, equal_opportunity_difference as fl_eod
from sklearn.metrics import roc_auc_score

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
