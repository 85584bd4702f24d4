"""Statistical privacy audit: an empirical lower bound on ε from a membership attack on canaries.

The standard recipe (Jagielski, Ullman & Oprea 2020; Nasr et al. 2021): run the client's mechanism
many times on its data without and with one inserted *canary* row, let an attack score each
output (higher: "the canary was in"), and turn the attack's error rates into a bound. An
(ε, δ)-DP mechanism forces every test between the two datasets to satisfy

    FPR + e^ε · FNR ≥ 1 − δ   and   FNR + e^ε · FPR ≥ 1 − δ,

so ε ≥ ln((1 − δ − FPR) / FNR) and ε ≥ ln((1 − δ − FNR) / FPR). With Clopper–Pearson upper
confidence bounds for FPR and FNR in place of the observed rates the bound holds with the stated
confidence. The attack's threshold is chosen on one half of the runs and the bound computed on the
other half, so choosing it costs no confidence. A correct mechanism gives a lower bound at most the
claimed ε; a bound above it proves the implementation wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import binomtest


def clopper_pearson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """The two-sided Clopper–Pearson ("exact") confidence interval of a binomial proportion
    (SciPy's ``binomtest(...).proportion_ci(method="exact")``)."""
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)


def epsilon_from_rates(false_positive: float, false_negative: float, delta: float) -> float:
    """The largest ε that the error rates (FPR, FNR) of one test prove:
    max(ln((1 − δ − FPR)/FNR), ln((1 − δ − FNR)/FPR)), at least 0; infinite when a rate is 0 and
    the other below 1 − δ (a test no (ε, δ)-DP mechanism allows)."""
    bounds = [0.0]
    for one, other in ((false_positive, false_negative), (false_negative, false_positive)):
        if 1 - delta - one > 0:
            bounds.append(math.log((1 - delta - one) / other) if other > 0 else math.inf)
    return max(bounds)


@dataclass(frozen=True)
class AuditResult:
    """An audit's outcome: ``epsilon_lower`` is the lower bound on ε at ``confidence`` (from the
    Clopper–Pearson upper bounds of the error rates on the evaluation half), ``epsilon_point`` the
    same from the observed rates; the threshold and rates of the attack; the runs per arm."""

    epsilon_lower: float
    epsilon_point: float
    confidence: float
    threshold: float
    false_positive_rate: float
    false_negative_rate: float
    runs_per_arm: int

    def flags(self, claimed_epsilon: float) -> bool:
        """Whether the audit proves the claim wrong (its lower bound exceeds ``claimed_epsilon``)."""
        return self.epsilon_lower > claimed_epsilon


def _error_rates(without: np.ndarray, with_canary: np.ndarray, threshold: float) -> tuple[int, int]:
    """(false positives, false negatives) of "canary in" ⇔ score ≥ threshold."""
    return int((without >= threshold).sum()), int((with_canary < threshold).sum())


def _lower_bound(fp: int, fn: int, negatives: int, positives: int, delta: float, confidence: float) -> float:
    """ε proved by ``fp`` false positives of ``negatives`` and ``fn`` false negatives of
    ``positives`` at ``confidence``: the rates' Clopper–Pearson upper bounds in
    :func:`epsilon_from_rates` (the upper end of a two-sided interval at ``confidence`` is a
    one-sided bound at 1 − (1 − confidence)/2, so both hold together at ``confidence``)."""
    fpr_high = clopper_pearson(fp, negatives, confidence)[1]
    fnr_high = clopper_pearson(fn, positives, confidence)[1]
    return epsilon_from_rates(fpr_high, fnr_high, delta)


THRESHOLD_CANDIDATES = 201
"""How many thresholds (quantiles of the calibration half's scores) the attack tries."""


def _best_threshold(without: np.ndarray, with_canary: np.ndarray, delta: float, confidence: float) -> float:
    """The threshold among :data:`THRESHOLD_CANDIDATES` quantiles of the scores whose lower bound
    on ε is largest."""
    scores = np.concatenate([without, with_canary])
    best, best_epsilon = float("inf"), -1.0
    for threshold in np.unique(np.quantile(scores, np.linspace(0.0, 1.0, THRESHOLD_CANDIDATES))):
        fp, fn = _error_rates(without, with_canary, threshold)
        epsilon = _lower_bound(fp, fn, len(without), len(with_canary), delta, confidence)
        if epsilon > best_epsilon:
            best, best_epsilon = float(threshold), epsilon
    return best


def audit_scores(without: np.ndarray, with_canary: np.ndarray, *, delta: float, confidence: float = 0.95) -> AuditResult:
    """The empirical ε lower bound from attack scores of runs without and with the canary: the
    threshold is chosen on the first half of each arm, the bound computed on the second half."""
    without, with_canary = np.asarray(without, dtype=float), np.asarray(with_canary, dtype=float)
    if min(len(without), len(with_canary)) < 4:
        raise ValueError("an audit needs at least 4 runs per arm")
    half_out, half_in = len(without) // 2, len(with_canary) // 2
    threshold = _best_threshold(without[:half_out], with_canary[:half_in], delta, confidence)
    test_out, test_in = without[half_out:], with_canary[half_in:]
    fp, fn = _error_rates(test_out, test_in, threshold)
    return AuditResult(
        epsilon_lower=_lower_bound(fp, fn, len(test_out), len(test_in), delta, confidence),
        epsilon_point=epsilon_from_rates(fp / len(test_out), fn / len(test_in), delta),
        confidence=confidence,
        threshold=threshold,
        false_positive_rate=fp / len(test_out),
        false_negative_rate=fn / len(test_in),
        runs_per_arm=min(len(test_out), len(test_in)),
    )


def audit(
    run: Callable[[bool, int], float], *, runs: int, delta: float, confidence: float = 0.95
) -> AuditResult:
    """Run ``run(canary_in, trial)`` ``runs`` times per arm (trial = 0..runs−1 in each; the
    mechanism's randomness must differ between trials) and audit the scores it returns
    (:func:`audit_scores`)."""
    without = np.array([run(False, trial) for trial in range(runs)])
    with_canary = np.array([run(True, trial) for trial in range(runs)])
    return audit_scores(without, with_canary, delta=delta, confidence=confidence)
