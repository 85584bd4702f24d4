"""The noisy-sufficient-statistics release (fedsynth.privacy.statistics) and the audit that checks it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from fedsynth.core.fairness import fairness_from_config
from fedsynth.core.model import LogisticObjective, design_matrix
from fedsynth.data.types import TabularData
from fedsynth.privacy.accounting import noise_multiplier
from fedsynth.privacy.audit import audit, audit_scores, clopper_pearson, epsilon_from_rates
from fedsynth.privacy.statistics import NoisyStatistics, augmented_rows, clip_rows, release_statistics


def _table(rows: int = 300, features: int = 4, seed: int = 0) -> TabularData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=g, dtype=torch.float64) * 1.5
    s = (torch.rand(rows, generator=g, dtype=torch.float64) < 0.4).double()
    y = torch.where(x[:, 0] + 0.5 * s + 0.3 * torch.randn(rows, generator=g, dtype=torch.float64) > 0, 1.0, -1.0).double()
    return TabularData(x, s, y, tuple(f"f{i}" for i in range(features)))


def _exact(data: TabularData, clip: float = 3.0, equal_opportunity: bool = True) -> NoisyStatistics:
    return release_statistics(data, clip=clip, noise_multiplier=0.0, generator=torch.Generator(), equal_opportunity=equal_opportunity)


def test_clipping_bounds_every_row_and_keeps_short_ones():
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64)
    clipped = clip_rows(x, 1.0)
    assert torch.allclose(clipped[0], torch.tensor([0.6, 0.8], dtype=torch.float64))
    assert torch.equal(clipped[1:], x[1:])
    rows = augmented_rows(_table(), 2.0)
    assert float(torch.linalg.vector_norm(rows, dim=1).max()) <= math.sqrt(2.0**2 + 2) + 1e-12


def test_noise_free_statistics_give_the_exact_quantities():
    data = _table()
    clipped = TabularData(clip_rows(data.x, 3.0), data.s, data.y, data.feature_names)
    stats = _exact(data)
    assert stats.count == len(data)
    counts = stats.group_counts()
    expected = [float(((data.s == s) & (data.y == y)).sum()) for s, y in ((0, -1), (0, 1), (1, -1), (1, 1))]
    assert counts.tolist() == pytest.approx(expected, abs=1e-9)
    mean, std = stats.feature_moments()
    assert torch.allclose(mean, clipped.x.mean(0)) and torch.allclose(std, clipped.x.std(0, unbiased=False))
    a = design_matrix(clipped.x, clipped.s, fit_intercept=True)
    for name in ("covariance", "eo_covariance"):
        direction = fairness_from_config(name).bind(a, clipped.s, clipped.y)(torch.zeros(a.shape[1], dtype=torch.float64))[1]
        assert torch.allclose(stats.fairness_direction(name), direction, atol=1e-12)


def test_loss_surrogate_is_the_second_order_expansion_of_the_logistic_loss_at_zero():
    data = _table()
    stats = _exact(data)
    hessian, linear = stats.loss_surrogate()
    a = augmented_rows(data, 3.0)
    theta = torch.zeros(a.shape[1], dtype=torch.float64, requires_grad=True)
    loss = LogisticObjective(a, data.y).at(theta).value()
    (gradient,) = torch.autograd.grad(loss, theta, create_graph=True)
    exact_hessian = torch.stack([torch.autograd.grad(gradient[i], theta, retain_graph=True)[0] for i in range(len(gradient))])
    assert float(loss.detach()) == pytest.approx(math.log(2.0))
    assert torch.allclose(-linear, gradient.detach(), atol=1e-12)  # ∇ℓ̃(0) = −g
    assert torch.allclose(hessian, exact_hessian, atol=1e-10)


def test_noise_has_the_calibrated_size():
    data = _table(rows=50)
    z, clip = 2.0, 1.5
    draws = [
        release_statistics(data, clip=clip, noise_multiplier=z, generator=torch.Generator().manual_seed(i))
        for i in range(400)
    ]
    exact = _exact(data, clip, equal_opportunity=False)
    bound_sq = clip * clip + 2
    second = torch.stack([d.second - exact.second for d in draws])
    label = torch.stack([d.label - exact.label for d in draws])
    # two unit-sensitivity blocks: entry noise z·√2 in block units
    assert float(second.std(0).mean()) == pytest.approx(z * math.sqrt(2) * bound_sq, rel=0.05)
    assert float(label.std(0).mean()) == pytest.approx(z * math.sqrt(2) * math.sqrt(bound_sq), rel=0.05)
    assert torch.equal(second, second.transpose(1, 2))
    assert draws[0].second_noise_std == pytest.approx(z * math.sqrt(2) * bound_sq)


def test_pooled_statistics_add_sums_and_variances():
    first, second = _table(seed=1), _table(seed=2)
    pooled = NoisyStatistics.pooled([_exact(first), _exact(second)])
    both = _exact(TabularData.concat([first, second]))
    assert torch.allclose(pooled.second, both.second) and torch.allclose(pooled.label_group, both.label_group)
    noisy = [release_statistics(first, clip=3.0, noise_multiplier=1.0, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    assert NoisyStatistics.pooled(noisy).second_noise_std == pytest.approx(math.sqrt(2) * noisy[0].second_noise_std)


def test_only_linear_measures_follow_from_the_release():
    with pytest.raises(ValueError, match="covariance"):
        _exact(_table()).fairness_direction("dp_gap")
    with pytest.raises(ValueError, match="Σ y s ā"):
        _exact(_table(), equal_opportunity=False).fairness_direction("eo_covariance")
    with pytest.raises(ValueError, match="privacy.clip"):
        release_statistics(_table(), clip=0.0, noise_multiplier=1.0, generator=torch.Generator())


# ----------------------------------------------------------------------------- the audit
def test_clopper_pearson_matches_known_intervals_and_scipy():
    # 0 of 10: the exact 95 % interval is [0, 1 − 0.025^(1/10)] = [0, 0.3085]
    low, high = clopper_pearson(0, 10, 0.95)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** 0.1, rel=1e-6)
    # 5 of 10: [0.1871, 0.8129] (Clopper & Pearson's tables; symmetric)
    low, high = clopper_pearson(5, 10, 0.95)
    assert low == pytest.approx(0.1871, abs=1e-4) and high == pytest.approx(0.8129, abs=1e-4)
    for k, n in ((0, 7), (3, 40), (40, 40), (17, 1000)):
        interval = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
        assert clopper_pearson(k, n, 0.9) == pytest.approx((interval.low, interval.high), abs=1e-9)


def test_epsilon_from_rates():
    assert epsilon_from_rates(0.1, 0.1, 0.0) == pytest.approx(math.log(9))
    assert epsilon_from_rates(0.5, 0.5, 0.0) == 0.0
    assert epsilon_from_rates(0.0, 0.0, 1e-5) == math.inf


def test_audit_of_a_known_gaussian_stays_below_its_epsilon_and_catches_a_separable_one():
    rng = np.random.default_rng(0)
    z = noise_multiplier(1.0, 1e-5)  # a Gaussian mechanism with sensitivity 1 at ε = 1
    result = audit_scores(rng.normal(0, z, 4000), rng.normal(1, z, 4000), delta=1e-5)
    assert result.epsilon_lower <= 1.0 and not result.flags(1.0)
    broken = audit_scores(rng.normal(0, 1e-3, 200), rng.normal(1, 1e-3, 200), delta=1e-5)
    assert broken.flags(1.0) and broken.false_positive_rate == 0 and broken.false_negative_rate == 0


def _canary_audit(noise: float, runs: int):
    """The small audit of the release: a 200-row client, one canary of norm 10 (clipped to 2) with
    s = 0, y = +1; the attack projects the released sums on the canary's clipped contribution."""
    data, clip = _table(rows=200), 2.0
    canary = TabularData(torch.full((1, 4), 5.0, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                         torch.ones(1, dtype=torch.float64), data.feature_names)
    with_canary = TabularData.concat([data, canary])
    base, direction = _exact(data, clip, False), _exact(canary, clip, False)

    def flat(stats: NoisyStatistics) -> torch.Tensor:
        return torch.cat([stats.second.flatten(), stats.label])

    u = flat(direction) / flat(direction).norm()

    def run(canary_in: bool, trial: int) -> float:
        generator = torch.Generator().manual_seed(2 * trial + canary_in)
        released = release_statistics(with_canary if canary_in else data, clip=clip, noise_multiplier=noise, generator=generator)
        return float((flat(released) - flat(base)) @ u)

    return audit(run, runs=runs, delta=1e-5)


def test_release_audit_stays_below_the_claim_and_flags_the_noise_off_release():
    claimed = 1.0
    honest = _canary_audit(noise_multiplier(claimed, 1e-5), runs=600)
    assert honest.epsilon_lower <= claimed
    broken = _canary_audit(0.0, runs=100)  # the deliberately broken mechanism: noise off
    assert broken.flags(claimed)


def _theta_audit(noise: float, runs: int):
    """The small black-box audit: a 100-row client synthesizes 20 rows (k_max = 10, fixed seed) from
    its release; the attacker fits θ on them and scores the canary's margin."""
    from fedsynth.core import SynthesisConfig, fit_server_model
    from fedsynth.privacy.synthesis import synthesize_from_release

    data, clip = _table(rows=100), 2.0
    canary = TabularData(torch.full((1, 4), 5.0, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                         -torch.ones(1, dtype=torch.float64), data.feature_names)
    with_canary = TabularData.concat([data, canary])
    config = SynthesisConfig(rho_o=1.0, synthetic_size=20, synthetic_labels="balanced", k_max=10)

    def run(canary_in: bool, trial: int) -> float:
        released = release_statistics(with_canary if canary_in else data, clip=clip, noise_multiplier=noise,
                                      generator=torch.Generator().manual_seed(2 * trial + canary_in))
        rows = synthesize_from_release(released, config, data.feature_names, seed=0).data
        theta = fit_server_model([rows], config.model).theta
        return float(-config.model.decision(theta, canary)[0])

    return audit(run, runs=runs, delta=1e-5)


def test_black_box_audit_of_the_released_rows_stays_below_the_claim_and_flags_noise_off():
    claimed = 1.0
    assert _theta_audit(noise_multiplier(claimed, 1e-5), runs=40).epsilon_lower <= claimed
    assert _theta_audit(0.0, runs=30).flags(claimed)
