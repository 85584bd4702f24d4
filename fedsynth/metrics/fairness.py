"""Accuracy and group-fairness metrics of a linear classifier y_θ(a) = sign(aᵀθ), row by row and as
the additive counts a client reports (:func:`evaluation_counts`, :func:`report_counts`).

Summed over clients, the counts give the pooled metrics exactly (:mod:`fedsynth.metrics.counts`:
:func:`~fedsynth.metrics.counts.metrics_from_counts`, :func:`~fedsynth.metrics.counts.sum_counts`;
the ROC AUC from decision-value histograms on fixed bins, with its error bound).
"""

from __future__ import annotations

import numpy as np
import torch

from fedsynth.core.model import LogisticMixture, LogisticModel
from fedsynth.data.types import ClientPartition, TabularData
from fedsynth.metrics.counts import (
    COUNT_KEYS,
    DECISION_BIN_EDGES,
    DECISION_BINS,
    HISTOGRAM_KEYS,
    REPORT_KEYS,
    TRAINING_COUNT_KEYS,
    count_keys,
    group_suffixes,
    metrics_from_counts,
    sum_counts,
)

__all__ = [
    "COUNT_KEYS",
    "REPORT_KEYS",
    "TRAINING_COUNT_KEYS",
    "accuracy",
    "decision_boundary_covariance",
    "decision_histogram",
    "demographic_parity_difference",
    "equal_opportunity_difference",
    "evaluate_model",
    "evaluation_counts",
    "metrics_from_counts",
    "report_counts",
    "statistical_parity_difference",
    "sum_counts",
]


def accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Fraction of correct predictions."""
    return float((y_true == y_pred).double().mean())


def demographic_parity_difference(y_pred: torch.Tensor, s: torch.Tensor) -> float:
    """The largest gap of the positive rate over the groups present in ``s`` (any number of
    them): max_g P(ŷ = 1 | s = g) − min_g P(ŷ = 1 | s = g), fairlearn's
    ``demographic_parity_difference``; |SPD| of eq. (4) for two groups. 0 for one group."""
    rates = [_positive_rate(y_pred, s == group) for group in torch.unique(s)]
    return max(rates) - min(rates)


def _positive_rate(y_pred: torch.Tensor, mask: torch.Tensor) -> float:
    count = int(mask.sum())
    return float((y_pred[mask] == 1).double().sum() / count) if count else float("nan")


def statistical_parity_difference(y_pred: torch.Tensor, s: torch.Tensor) -> float:
    """SPD, eq. (4): P(ŷ = 1 | s = 1) − P(ŷ = 1 | s = 0). NaN when a group is empty."""
    return _positive_rate(y_pred, s == 1) - _positive_rate(y_pred, s == 0)


def equal_opportunity_difference(y_true: torch.Tensor, y_pred: torch.Tensor, s: torch.Tensor) -> float:
    """EOD: true-positive-rate difference P(ŷ = 1 | y = 1, s = 1) − P(ŷ = 1 | y = 1, s = 0)."""
    return _positive_rate(y_pred, (s == 1) & (y_true == 1)) - _positive_rate(y_pred, (s == 0) & (y_true == 1))


def decision_boundary_covariance(s: torch.Tensor, decisions: torch.Tensor) -> float:
    """Decision-boundary covariance, eq. (2): (1/N) Σ (s_i − s̄) d_θ(a_i)."""
    return float(((s - s.mean()) * decisions).mean())


def evaluate_model(
    model: LogisticModel, theta: np.ndarray | torch.Tensor | LogisticMixture, data: TabularData
) -> dict[str, float]:
    """Every metric of :func:`~fedsynth.metrics.counts.metrics_from_counts` (accuracy, balanced
    accuracy, SPD (4), covariance (2), EOD, ROC AUC) of ``model`` with weights θ (or a mixture) on
    ``data``."""
    return metrics_from_counts(evaluation_counts(model, theta, data))


def decision_histogram(decisions: torch.Tensor) -> list[int]:
    """How many of ``decisions`` fall into each of the fixed bins
    (:data:`~fedsynth.metrics.counts.DECISION_BIN_EDGES`), as a list of
    :data:`~fedsynth.metrics.counts.DECISION_BINS` whole numbers."""
    edges = torch.tensor(DECISION_BIN_EDGES, dtype=torch.float64)
    bins = torch.searchsorted(edges, decisions.double().contiguous(), right=True)
    return torch.bincount(bins, minlength=DECISION_BINS).tolist()


def evaluation_counts(
    model: LogisticModel, theta: np.ndarray | torch.Tensor | LogisticMixture, data: TabularData
) -> dict[str, float | list[int]]:
    """Additive counts (:data:`~fedsynth.metrics.counts.COUNT_KEYS`) from which
    :func:`~fedsynth.metrics.counts.metrics_from_counts` derives every metric; summing the counts
    of several clients gives the pooled metrics exactly (the AUC up to its stated bound): per group
    of s its rows, positive predictions, positive labels and true positives, the correct
    predictions, the sums of s and of the decision values (for k > 2 groups, per group the sum of
    the decision values instead of the s-sums: ``count_keys(data.num_groups)``), and per label a
    histogram of the decision values.

    For a :class:`LogisticMixture` (a randomized classifier) every count of predictions is the
    expected count Σ_j w_j counts(θ_j): accuracy, SPD and EOD are those of its expected
    predictions; its decision value is the expected one, Σ_j w_j d_{θ_j}(a) (the covariance's and
    the AUC's score)."""
    if isinstance(theta, LogisticMixture):
        per_model = [evaluation_counts(model, member, data) for member in theta.thetas]
        counts: dict[str, float | list[int]] = {
            key: float(sum(w * c[key] for w, c in zip(theta.weights, per_model)))
            for key in count_keys(data.num_groups)
            if key not in HISTOGRAM_KEYS
        }
        expected = sum(float(w) * model.decision(member, data) for w, member in zip(theta.weights, theta.thetas))
        return counts | _histograms(expected, data)
    decisions = model.decision(theta, data)
    y_pred = torch.where(decisions >= 0, 1.0, -1.0).double()
    positive = y_pred == 1
    label_positive = data.y == 1
    counts = {"n": float(len(data)), "correct": float((y_pred == data.y).sum())}
    members = {group: data.s == float(group[1:]) for group in group_suffixes(data.num_groups)}
    for name, rows in (("n", None), ("positive", positive), ("n_y1", label_positive),
                       ("true_positive", positive & label_positive)):
        for group, member in members.items():
            counts[f"{name}_{group}"] = float((member if rows is None else rows & member).sum())
    if data.num_groups == 2:
        counts |= {
            "sum_s": float(data.s.sum()),
            "sum_decision": float(decisions.sum()),
            "sum_s_decision": float((data.s * decisions).sum()),
        }
    else:
        counts["sum_decision"] = float(decisions.sum())
        counts |= {f"sum_decision_{group}": float(decisions[member].sum()) for group, member in members.items()}
    return counts | _histograms(decisions, data)


def _histograms(decisions: torch.Tensor, data: TabularData) -> dict[str, list[int]]:
    """The decision-value histogram of each label's rows, by :data:`HISTOGRAM_KEYS`."""
    return {key: decision_histogram(decisions[data.y == label]) for key, label in zip(HISTOGRAM_KEYS, (1.0, -1.0))}


def report_counts(
    model: LogisticModel,
    theta: np.ndarray | torch.Tensor | LogisticMixture,
    data: ClientPartition,
    *,
    training: bool = True,
) -> dict[str, float | list[int]]:
    """A client's counts for the harness (:data:`~fedsynth.metrics.counts.REPORT_KEYS`): the
    :func:`evaluation_counts` of θ on its test rows and, with ``training``, its training rows'
    count and positive labels (``train_n``, ``train_n_y1``: the majority label of the pooled
    training rows is the constant classifier's, :func:`~fedsynth.metrics.counts.constant_classifier`).
    A client whose training rows are under a privacy guarantee sends none (``training=False``)."""
    counts = evaluation_counts(model, theta, data.test)
    if training:
        counts |= {"train_n": float(len(data.train)), "train_n_y1": float((data.train.y == 1).sum())}
    return counts
