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
from scipy.stats import beta


def clopper_pearson(successes: np.ndarray | int, trials: np.ndarray | int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided Clopper–Pearson ("exact") confidence interval of binomial proportions
    (elementwise): the α/2 and 1 − α/2 quantiles of Beta(k, n − k + 1) and Beta(k + 1, n − k),
    α = 1 − ``confidence``, with 0 and 1 at the ends (the same interval as SciPy's
    ``binomtest(k, n).proportion_ci(method="exact")``, vectorized)."""
    k, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore"):
        low = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        high = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    return low, high


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
    fpr_high = float(clopper_pearson(fp, negatives, confidence)[1])
    fnr_high = float(clopper_pearson(fn, positives, confidence)[1])
    return epsilon_from_rates(fpr_high, fnr_high, delta)


def _best_threshold(without: np.ndarray, with_canary: np.ndarray, delta: float, confidence: float) -> float:
    """The threshold, among the midpoints between consecutive observed scores, with the largest
    lower bound on ε."""
    scores = np.unique(np.concatenate([without, with_canary]))
    thresholds = (scores[1:] + scores[:-1]) / 2 if len(scores) > 1 else scores
    # "canary in" ⇔ score ≥ t: counts of each arm at or above every threshold, by sorting
    false_positives = len(without) - np.searchsorted(np.sort(without), thresholds, side="left")
    false_negatives = np.searchsorted(np.sort(with_canary), thresholds, side="left")
    fpr_high = clopper_pearson(false_positives, len(without), confidence)[1]
    fnr_high = clopper_pearson(false_negatives, len(with_canary), confidence)[1]
    bounds = [epsilon_from_rates(fp, fn, delta) for fp, fn in zip(fpr_high, fnr_high)]
    return float(thresholds[int(np.argmax(bounds))])


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
