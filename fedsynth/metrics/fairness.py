"""Accuracy and group-fairness metrics of a linear classifier y_θ(a) = sign(aᵀθ).

Every metric is also expressed through additive counts (:func:`evaluation_counts`) so that per-client
results can be pooled exactly across clients (:func:`metrics_from_counts`).
"""

from __future__ import annotations

import numpy as np
import torch

from fedsynth.core.model import LogisticMixture, LogisticModel
from fedsynth.data.types import TabularData

COUNT_KEYS = (
    "n",
    "correct",
    "n_s1",
    "n_s0",
    "positive_s1",
    "positive_s0",
    "n_y1_s1",
    "n_y1_s0",
    "true_positive_s1",
    "true_positive_s0",
    "sum_s",
    "sum_decision",
    "sum_s_decision",
)


def accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Fraction of correct predictions."""
    return float((y_true == y_pred).double().mean())


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
    """Accuracy, SPD (4), covariance (2) and EOD of ``model`` with weights θ (or a mixture) on ``data``."""
    return metrics_from_counts(evaluation_counts(model, theta, data))


def evaluation_counts(
    model: LogisticModel, theta: np.ndarray | torch.Tensor | LogisticMixture, data: TabularData
) -> dict[str, float]:
    """Additive counts from which :func:`metrics_from_counts` derives every metric; summing the
    counts of several clients gives the pooled metrics exactly. For a :class:`LogisticMixture` (a
    randomized classifier) the expected counts Σ_j w_j counts(θ_j): every count is a sum of per-row
    predictions, so accuracy, SPD and EOD are those of its expected predictions."""
    if isinstance(theta, LogisticMixture):
        per_model = [evaluation_counts(model, member, data) for member in theta.thetas]
        return {key: float(sum(w * c[key] for w, c in zip(theta.weights, per_model))) for key in COUNT_KEYS}
    decisions = model.decision(theta, data)
    y_pred = torch.where(decisions >= 0, 1.0, -1.0).double()
    s1, s0 = data.s == 1, data.s == 0
    positive = y_pred == 1
    label_positive = data.y == 1
    return {
        "n": float(len(data)),
        "correct": float((y_pred == data.y).sum()),
        "n_s1": float(s1.sum()),
        "n_s0": float(s0.sum()),
        "positive_s1": float((positive & s1).sum()),
        "positive_s0": float((positive & s0).sum()),
        "n_y1_s1": float((label_positive & s1).sum()),
        "n_y1_s0": float((label_positive & s0).sum()),
        "true_positive_s1": float((positive & label_positive & s1).sum()),
        "true_positive_s0": float((positive & label_positive & s0).sum()),
        "sum_s": float(data.s.sum()),
        "sum_decision": float(decisions.sum()),
        "sum_s_decision": float((data.s * decisions).sum()),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def metrics_from_counts(counts: dict[str, float]) -> dict[str, float]:
    """Accuracy, SPD (4), decision-boundary covariance (2) and EOD from (summed) counts."""
    missing = [key for key in COUNT_KEYS if key not in counts]
    if missing:
        raise ValueError(f"evaluation counts lack {missing}")
    n = counts["n"]
    return {
        "accuracy": _ratio(counts["correct"], n),
        "spd": _ratio(counts["positive_s1"], counts["n_s1"]) - _ratio(counts["positive_s0"], counts["n_s0"]),
        "covariance": _ratio(counts["sum_s_decision"], n)
        - _ratio(counts["sum_s"], n) * _ratio(counts["sum_decision"], n),
        "eod": _ratio(counts["true_positive_s1"], counts["n_y1_s1"])
        - _ratio(counts["true_positive_s0"], counts["n_y1_s0"]),
    }


def sum_counts(per_client: list[dict[str, float]]) -> dict[str, float]:
    """Add the counts of several clients key by key."""
    return {key: float(sum(c[key] for c in per_client)) for key in COUNT_KEYS}
