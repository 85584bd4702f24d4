"""Evaluation metrics: accuracy and group fairness (fairness.py), privacy of synthetic data (privacy.py)."""

from fedsynth.metrics.fairness import (
    accuracy,
    decision_boundary_covariance,
    equal_opportunity_difference,
    evaluate_model,
    evaluation_counts,
    metrics_from_counts,
    statistical_parity_difference,
    sum_counts,
)
from fedsynth.metrics.privacy import distance_to_closest_record, group_disclosure, min_distance, privacy_report

__all__ = [
    "accuracy",
    "decision_boundary_covariance",
    "distance_to_closest_record",
    "equal_opportunity_difference",
    "evaluate_model",
    "evaluation_counts",
    "group_disclosure",
    "metrics_from_counts",
    "min_distance",
    "privacy_report",
    "statistical_parity_difference",
    "sum_counts",
]
