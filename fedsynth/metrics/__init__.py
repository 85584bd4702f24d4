"""Evaluation metrics: the additive test counts and the metrics derived from them (counts.py, plain
Python), accuracy and group fairness of a model on rows (fairness.py), privacy of synthetic data
(privacy.py).

The names below are loaded when first used, so that ``fedsynth.metrics.counts`` can be imported
without torch (the ``fedsynth`` command's own process reads results with it).
"""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "accuracy": "fairness",
    "decision_boundary_covariance": "fairness",
    "decision_histogram": "fairness",
    "equal_opportunity_difference": "fairness",
    "evaluate_model": "fairness",
    "evaluation_counts": "fairness",
    "report_counts": "fairness",
    "statistical_parity_difference": "fairness",
    "constant_classifier": "counts",
    "histogram_auc": "counts",
    "metrics_from_counts": "counts",
    "sum_counts": "counts",
    "distance_to_closest_record": "privacy",
    "group_disclosure": "privacy",
    "min_distance": "privacy",
    "privacy_report": "privacy",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    """The public function ``name`` from the module that defines it (PEP 562)."""
    if name not in _SOURCES:
        raise AttributeError(f"module 'fedsynth.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fedsynth.metrics.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value
