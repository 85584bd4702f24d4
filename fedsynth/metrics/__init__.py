"""Evaluation metrics: the additive test counts and the metrics derived from them (counts.py, plain
Python), accuracy and group fairness of a model on rows (fairness.py), privacy of synthetic data
(privacy.py).

The names below are loaded when first used, so that ``fedsynth.metrics.counts`` can be imported
without torch (the ``fedsynth`` command's own process reads results with it).
"""

from __future__ import annotations

from fedsynth.lazy import lazy_exports

_SOURCES = {
    "accuracy": "fairness",
    "decision_boundary_covariance": "fairness",
    "decision_histogram": "fairness",
    "demographic_parity_difference": "fairness",
    "equal_opportunity_difference": "fairness",
    "evaluate_model": "fairness",
    "evaluation_counts": "fairness",
    "report_counts": "fairness",
    "statistical_parity_difference": "fairness",
    "constant_classifier": "counts",
    "count_keys": "counts",
    "group_metrics": "counts",
    "histogram_auc": "counts",
    "metrics_from_counts": "counts",
    "sum_counts": "counts",
    "distance_to_closest_record": "privacy",
    "group_disclosure": "privacy",
    "min_distance": "privacy",
    "privacy_report": "privacy",
}

__all__ = sorted(_SOURCES)


__getattr__ = lazy_exports(__name__, _SOURCES)
