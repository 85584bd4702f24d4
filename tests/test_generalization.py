"""Issue 20 and issue 21 item 2: the union that stands for the pooled data (row weights, a
group-Gaussian start whose group means the synthesis keeps, N_s by a rule of d, a stopping rule)
and fairness targets (eq. 8's constraint instead of a penalty weight)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedsynth.core import LogisticModel, SynthesisConfig, fit_server_model, synthesize
from fedsynth.core.fairness import FAIRNESS_MEASURES, fairness_from_config
from fedsynth.core.synthesis import (
    GROUPS,
    GroupMeans,
    converged,
    default_synthetic_size,
    group_moments,
    initial_features,
    noisy_count,
)
from fedsynth.core.targets import fit_to_target, fairness_value
from fedsynth.data.types import TabularData
from fedsynth.metrics import equal_opportunity_difference, statistical_parity_difference


def biased_table(rows: int, features: int, seed: int) -> TabularData:
    """Rows whose label and group both follow the first feature (a clearly unfair plain model)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=g, dtype=torch.float64)
    s = (torch.rand(rows, generator=g, dtype=torch.float64) < torch.sigmoid(1.5 * x[:, 0])).double()
    y = torch.where(torch.rand(rows, generator=g, dtype=torch.float64) < torch.sigmoid(2 * x[:, 0] + x[:, 1]), 1.0, -1.0)
    return TabularData(x, s, y.double(), tuple(f"x{j}" for j in range(features)))


def one_hot_table(rows: int, seed: int) -> TabularData:
    """Two one-hot blocks (3 and 4 levels, each row's block sums to 1) and one numeric column."""
    g = torch.Generator().manual_seed(seed)
    first = torch.nn.functional.one_hot(torch.randint(3, (rows,), generator=g), 3).double()
    second = torch.nn.functional.one_hot(torch.randint(4, (rows,), generator=g), 4).double()
    numeric = torch.randn(rows, 1, generator=g, dtype=torch.float64)
    x = torch.cat([first, second, numeric], dim=1)
    s = (torch.rand(rows, generator=g, dtype=torch.float64) < 0.3 + 0.4 * first[:, 0]).double()
    y = torch.where(torch.rand(rows, generator=g, dtype=torch.float64) < torch.sigmoid(numeric[:, 0] + second[:, 1]), 1.0, -1.0)
    return TabularData(x, s, y.double(), tuple(f"x{j}" for j in range(8)))


def repeated(data: TabularData, counts: torch.Tensor) -> TabularData:
    """Each row i repeated counts[i] times."""
    index = torch.repeat_interleave(torch.arange(len(data)), counts)
    return data.subset(index)


# ---------------------------------------------------------------------------- row weights
def test_integer_row_weights_are_repeated_rows() -> None:
    """ℓ_r with row weights w equals ℓ_r on the rows repeated w_i times: value, gradient, Hessian
    product and the fit, and every fairness measure bound with the weights equals it bound to the
    repeated rows."""
    data = biased_table(60, 3, 0)
    counts = torch.randint(1, 4, (60,), generator=torch.Generator().manual_seed(1))
    copies = repeated(data, counts)
    model = LogisticModel()
    theta = torch.randn(model.num_weights(3), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a, a_rep = model.design(data.x, data.s), model.design(copies.x, copies.s)
    weighted = model.objective(a, data.y, counts.double()).at(theta)
    plain = model.objective(a_rep, copies.y).at(theta)
    v = torch.randn_like(theta)
    torch.testing.assert_close(weighted.value(), plain.value())
    torch.testing.assert_close(weighted.gradient(), plain.gradient())
    torch.testing.assert_close(weighted.hvp(v), plain.hvp(v))
    torch.testing.assert_close(weighted.row_gradients().sum(0), plain.row_gradients().sum(0))
    for name in FAIRNESS_MEASURES:
        measure = fairness_from_config(name, 0.5)
        by_weight = measure.bind(a, data.s, data.y, weight=counts.double())(theta)
        by_rows = measure.bind(a_rep, copies.s, copies.y)(theta)
        torch.testing.assert_close(by_weight[0], by_rows[0])
        torch.testing.assert_close(by_weight[1], by_rows[1])
        torch.testing.assert_close(
            measure.bind(a, data.s, data.y, weight=counts.double()).row_gradients(theta).sum(0), by_rows[1]
        )
    fit_w = model.fit(data, rho=5.0, sample_weight=counts.double()).theta
    fit_rep = model.fit(copies, rho=5.0).theta
    torch.testing.assert_close(fit_w, fit_rep, atol=1e-6, rtol=1e-6)


def test_k_group_measures_with_integer_row_weights_are_repeated_rows() -> None:
    """The k-group measures (four groups here) bound with integer row weights equal them bound to
    the rows repeated that often: value, θ-gradient and the per-row terms' sum."""
    generator = torch.Generator().manual_seed(5)
    s = torch.randint(0, 4, (48,), generator=generator).double()
    y = torch.where(torch.rand(48, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
    x = torch.randn(48, 3, generator=generator, dtype=torch.float64)
    counts = torch.randint(1, 4, (48,), generator=generator)
    model = LogisticModel()
    theta = torch.randn(model.num_weights(3, 4), generator=generator, dtype=torch.float64)
    a = model.design(x, s, 4)
    a_rep, s_rep, y_rep = a.repeat_interleave(counts, 0), s.repeat_interleave(counts), y.repeat_interleave(counts)
    for name in ("group_covariance", "eo_group_covariance", "dp_largest_gap", "eo_largest_gap"):
        measure = fairness_from_config(name, 0.5)
        bound = measure.bind(a, s, y, weight=counts.double())
        by_weight, by_rows = bound(theta), measure.bind(a_rep, s_rep, y_rep)(theta)
        torch.testing.assert_close(by_weight[0], by_rows[0])
        torch.testing.assert_close(by_weight[1], by_rows[1])
        torch.testing.assert_close(bound.row_gradients(theta).sum(0), by_rows[1])


def test_bad_row_weights_are_rejected() -> None:
    data = biased_table(10, 2, 0)
    model = LogisticModel()
    a = model.design(data.x, data.s)
    for weight, message in ((torch.ones(9), "shape"), (-torch.ones(10), ">= 0"), (torch.zeros(10), "not all 0")):
        with pytest.raises(ValueError, match=message):
            model.objective(a, data.y, weight)


def test_the_server_weighs_each_client_by_its_size() -> None:
    """sizes = (2, 1): the first client's rows count twice, as if they were repeated."""
    first, second = biased_table(40, 3, 0), biased_table(40, 3, 1)
    model = LogisticModel()
    weighted = fit_server_model([first, second], model, sizes=[80.0, 40.0], rho=3.0)
    repeated_rows = fit_server_model([first, first, second], model, rho=3.0)
    torch.testing.assert_close(weighted.theta, repeated_rows.theta, atol=1e-6, rtol=1e-6)
    assert weighted.rho == 3.0 and weighted.achieved is None
    with pytest.raises(ValueError, match="one size per client"):
        fit_server_model([first, second], model, sizes=[1.0])


# ---------------------------------------------------------------------------- targets
def test_fairness_value_agrees_with_the_metrics() -> None:
    data = biased_table(200, 3, 3)
    model = LogisticModel()
    theta = model.fit(data).theta
    a = model.design(data.x, data.s)
    predictions = model.predict(theta, data)
    bound = fairness_from_config("covariance").bind(a, data.s, data.y)
    assert fairness_value("spd", theta, a, data.s, data.y, bound) == pytest.approx(
        statistical_parity_difference(predictions, data.s), abs=1e-12
    )
    assert fairness_value("eod", theta, a, data.s, data.y, bound) == pytest.approx(
        equal_opportunity_difference(data.y, predictions, data.s), abs=1e-12
    )
    assert fairness_value("measure", theta, a, data.s, data.y, bound) == pytest.approx(float(bound(theta)[0]))


@pytest.mark.parametrize("metric,measure", [("spd", "dp_gap"), ("eod", "eo_gap"), ("measure", "covariance")])
def test_a_target_is_met_with_the_least_penalty(metric: str, measure: str) -> None:
    """fit_to_target meets |G| <= target on the rows, and a clearly smaller ρ misses it."""
    data = biased_table(600, 3, 4)
    model = LogisticModel()
    fairness = fairness_from_config(measure, 0.1)
    plain = fit_to_target(data, model, fairness, 10.0, metric=metric)
    assert plain.rho == 0.0 and plain.met  # a target above the plain model's value needs no penalty
    target = abs(plain.achieved) / 3
    fit = fit_to_target(data, model, fairness, target, metric=metric)
    assert fit.met and abs(fit.achieved) <= target and fit.rho > 0
    a = model.design(data.x, data.s)
    lower = model.fit(data, rho=fit.rho / 2, fairness=fairness).theta
    missed = fairness_value(metric, lower, a, data.s, data.y, fairness.bind(a, data.s, data.y))
    assert abs(missed) > target


def test_an_unreachable_target_is_reported_as_missed() -> None:
    """The covariance cannot pin the SPD of this table to exactly 0: the largest ρ's fit comes
    back with met = False and its achieved value."""
    data = biased_table(600, 3, 5)
    fit = fit_to_target(data, LogisticModel(), fairness_from_config("covariance"), 0.0, metric="spd")
    assert not fit.met and fit.achieved != 0.0 and fit.rho >= 1e6


def test_bad_targets_name_the_key() -> None:
    with pytest.raises(ValueError, match="target_metric"):
        SynthesisConfig(fairness_target=0.1, target_metric="accuracy")
    with pytest.raises(ValueError, match="fairness target"):
        SynthesisConfig(fairness_target=-0.1)


def test_a_client_target_sets_rho_o() -> None:
    """synthesize with fairness_target: ρ_o is the target fit's, recorded with its achieved value."""
    data = biased_table(400, 3, 6)
    config = SynthesisConfig(synthetic_size=40, synthetic_labels="proportional", fairness_target=0.05, k_max=2)
    result = synthesize(data, config, seed=0)
    expected = fit_to_target(data, config.model, config.measure, 0.05)
    assert result.history.rho_o == expected.rho > 0
    assert result.history.target_achieved == expected.achieved


# ---------------------------------------------------------------------------- the start and the constraints
def test_group_gaussian_start_has_each_groups_moments_exactly() -> None:
    """Each (ŝ, ŷ) group's rows have exactly the group's (shrunk) mean and covariance (1/n), a
    large group's being its own; a group with no more rows than features has its mean, and its
    covariance within the rows' span."""
    data = biased_table(4000, 3, 7)
    generator = torch.Generator().manual_seed(0)
    counts = (300, 40, 3, 1)
    s_hat = torch.cat([torch.full((n,), s, dtype=torch.float64) for (s, _), n in zip(GROUPS, counts)])
    y_hat = torch.cat([torch.full((n,), y, dtype=torch.float64) for (_, y), n in zip(GROUPS, counts)])
    x = initial_features(data, s_hat, y_hat, "group_gaussian", generator)
    start = 0
    for (s, y), (mean, covariance), n in zip(GROUPS, group_moments(data), counts):
        rows = x[start : start + n]
        start += n
        torch.testing.assert_close(rows.mean(0), mean)
        if n > 3:
            centred = rows - rows.mean(0)
            torch.testing.assert_close(centred.T @ centred / n, covariance)
        real = data.x[(data.s == s) & (data.y == y)]
        assert float((mean - real.mean(0)).norm()) < 0.01  # large groups keep their own moments
    assert float(x[-1:].sub(group_moments(data)[3][0]).abs().max()) < 1e-12  # one row: the mean


def test_a_small_group_is_shrunk_towards_the_client() -> None:
    """A group of 2 rows gets nearly the client's mean: no synthetic group is centred on a few rows."""
    data = biased_table(500, 3, 8)
    keep = ~((data.s == 1) & (data.y == -1))
    keep[torch.nonzero((data.s == 1) & (data.y == -1)).squeeze(1)[:2]] = True
    data = data.subset(torch.nonzero(keep).squeeze(1))
    rows = data.x[(data.s == 1) & (data.y == -1)]
    mean, _ = group_moments(data)[GROUPS.index((1.0, -1.0))]
    expected = (2 * rows.mean(0) + 4 * data.x.mean(0)) / 6  # prior weight d + 1 = 4 rows
    torch.testing.assert_close(mean, expected)


def test_kept_group_means_and_one_hot_relations_hold_after_synthesis() -> None:
    """keep_group_means: after every Adam step each (ŝ, ŷ) group's mean of x̂ is the client's
    (shrunk) group mean and every row's one-hot blocks still sum to 1."""
    data = one_hot_table(400, 9)
    config = SynthesisConfig(
        rho_o=0.0, synthetic_size=60, synthetic_labels="proportional", init="group_gaussian", keep_group_means=True, k_max=15
    )
    result = synthesize(data, config, seed=1)
    x = result.data.x
    torch.testing.assert_close(x[:, :3].sum(1), torch.ones(60, dtype=torch.float64))
    torch.testing.assert_close(x[:, 3:7].sum(1), torch.ones(60, dtype=torch.float64))
    for (s, y), (mean, _) in zip(GROUPS, group_moments(data)):
        rows = (result.data.s == s) & (result.data.y == y)
        if rows.any():
            torch.testing.assert_close(x[rows].mean(0), mean)
    free = synthesize(data, SynthesisConfig(rho_o=0.0, synthetic_size=60, synthetic_labels="proportional", k_max=15), seed=1)
    assert float((free.data.x[:, :3].sum(1) - 1).abs().max()) > 1e-3  # the paper's start keeps neither


def test_the_hull_is_kept_only_with_enough_rows() -> None:
    """Fewer than 2(d + 1) rows span too few directions: only the group means are kept."""
    assert GroupMeans(one_hot_table(200, 0), torch.zeros(4), -torch.ones(4)).basis is not None
    assert GroupMeans(one_hot_table(12, 0), torch.zeros(4), -torch.ones(4)).basis is None


# ---------------------------------------------------------------------------- sizes and stopping
def test_the_synthetic_size_rule_depends_on_the_width_alone() -> None:
    assert [default_synthetic_size(d) for d in (5, 10, 59, 100)] == [200, 200, 600, 1010]


def test_noisy_count_is_laplace_noise_of_scale_one_over_epsilon() -> None:
    """N + Laplace(1/ε): mean absolute deviation 1/ε, centred on N, seeded, at least 1."""
    for epsilon in (0.5, 2.0):
        draws = np.array([noisy_count(1000, epsilon, seed=seed) for seed in range(4000)])
        assert abs(np.mean(np.abs(draws - 1000)) - 1 / epsilon) < 0.08 / epsilon
        assert abs(np.median(draws) - 1000) < 0.1 / epsilon
    assert noisy_count(1000, 1.0, seed=3) == noisy_count(1000, 1.0, seed=3)
    assert noisy_count(1, 0.01, seed=5) >= 1.0
    with pytest.raises(ValueError, match="size_epsilon"):
        noisy_count(10, 0.0, seed=0)


def test_the_stopping_rule() -> None:
    flat = [1.0] * 100
    assert converged(flat, 1e-4) and not converged(flat, 0.0) and not converged(flat[:99], 1e-4)
    falling = [1.0 - 0.001 * k for k in range(100)]
    assert not converged(falling, 1e-4) and converged(falling, 0.2)
    data = biased_table(300, 2, 10)
    config = SynthesisConfig(rho_o=0.0, synthetic_size=40, synthetic_labels="proportional", k_max=2000, tolerance=1e-3)
    result = synthesize(data, config, seed=0)
    assert len(result.history.objective) < 2000 and len(result.history.objective) % 50 == 0


def test_a_client_of_a_handful_of_rows_neither_crashes_nor_dominates() -> None:
    """A client with 3 training rows (one group missing, one of a single row) synthesizes N_s rows
    under the defaults' settings, and in the weighted union its rows weigh 3 / (3 + N_big): the
    union's model is the big client's to within a small change."""
    big = biased_table(3000, 3, 11)
    tiny = biased_table(40, 3, 12).subset(torch.tensor([0, 1, 2]))
    config = SynthesisConfig(
        rho_o=0.0, synthetic_size=default_synthetic_size(3), synthetic_labels="noisy_proportional",
        init="group_gaussian", keep_group_means=True, k_max=0,
    )
    tables = [synthesize(client, config, seed=seed).data for seed, client in enumerate((big, tiny))]
    assert all(len(table) == 200 and bool(torch.isfinite(table.x).all()) for table in tables)
    model = config.model
    weighted = fit_server_model(tables, model, sizes=[3000.0, 3.0], rho=10.0).theta
    alone = fit_server_model(tables[:1], model, sizes=[3000.0], rho=10.0).theta
    equal = fit_server_model(tables, model, rho=10.0).theta
    assert float((weighted - alone).norm()) < 0.05 * float(alone.norm())
    assert float((equal - alone).norm()) > 4 * float((weighted - alone).norm())


# ---------------------------------------------------------------------------- what the server learns
def test_the_server_recovers_each_groups_mean_and_covariance_from_the_default_rows() -> None:
    """The disclosure of single_shot's defaults, pinned: from one client's reply alone (the rows and
    their (ŝ, ŷ), no other message) the server computes each (s, y) group's feature mean and
    covariance; for groups of many rows they are the client's own to the shrinkage of d + 1 rows,
    which the run's ``info.disclosure`` states and ``moment_disclosure`` measures."""
    from fedsynth.data.types import ClientPartition
    from fedsynth import api
    from fedsynth.methods import arrays_of, build_method, make_content
    from fedsynth.metrics.privacy import moment_disclosure

    method = build_method(api.check(api.compose(["dataset=synthetic"])).method)
    train = biased_table(6000, 3, 21)
    request = method.synthesis_request(train.num_features)
    reply = method.train(make_content(config=request.to_config()), ClientPartition(0, train, train), {})
    rows = arrays_of(reply)
    x, s, y = (torch.as_tensor(rows[k]) for k in ("x", "s", "y"))
    for group, label in GROUPS:
        real = train.x[(train.s == group) & (train.y == label)]
        sent = x[(s == group) & (y == label)]
        assert len(real) > 500 and len(sent) > 20
        mean_gap = float((sent.mean(0) - real.mean(0)).norm() / real.mean(0).norm())
        real_cov = (real - real.mean(0)).T @ (real - real.mean(0)) / len(real)
        sent_cov = (sent - sent.mean(0)).T @ (sent - sent.mean(0)) / len(sent)
        assert mean_gap < 0.01 and float((sent_cov - real_cov).norm() / real_cov.norm()) < 0.01
    assert method.disclosure()["group_moments"].startswith("exact: each (s, y) group's feature mean and covariance")
    told = TabularData(x, s, y, train.feature_names)
    measured = moment_disclosure(told, train, None)
    assert measured["group_mean_error"] < 0.01 and measured["group_covariance_error"] < 0.01
    # the paper's setting tells neither: a feature-wise Gaussian start, balanced labels, no size
    paper = build_method(api.check(api.compose(["dataset=synthetic", "method=single_shot_paper"])).method)
    assert paper.disclosure() == {
        "group_moments": "the features' means and standard deviations (the start), then what the optimized rows reveal",
        "group_counts": "nothing (25 % per (s, y) pair)",
        "size": "nothing",
    }
