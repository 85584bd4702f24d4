"""The server's own idea of a valid reply: the schema of the method's replies, from the server's
experiment, and the check of the evaluation replies the harness collects.

Nothing here is learned from the replies themselves: the feature count comes from the dataset
spec, the bounds from the ``federation`` config, so a majority of malicious clients cannot
redefine what the honest ones must send.
"""

from __future__ import annotations

import math
from flwr.app import RecordDict

from fedsynth.config import Experiment
from fedsynth.data import DatasetSpec, encoded_feature_names
from fedsynth.federated.messages import HARNESS, check_records
from fedsynth.methods.base import MESSAGE_TYPES, METRICS, ReplySchema
from fedsynth.metrics.counts import (
    HISTOGRAM_KEYS,
    TRAINING_COUNT_KEYS,
    check_histograms,
    check_training_counts,
    count_keys,
    group_suffixes,
)

COMPUTE_PREFIX = "compute_s."
TOLERANCE = 1e-9
"""Relative slack of the count checks: a randomized model's expected counts are weighted sums."""


def reply_schema(experiment: Experiment) -> ReplySchema:
    """The :class:`~fedsynth.methods.base.ReplySchema` of an experiment: the encoded feature count
    and the groups of the sensitive attribute of its dataset spec, and ``federation.max_abs_x``."""
    spec = DatasetSpec.from_config(experiment.dataset)
    return ReplySchema(
        num_features=len(encoded_feature_names(spec, experiment.data_dir)),
        max_abs_x=experiment.federation.max_abs_x,
        num_groups=spec.num_groups,
    )


def _data_counts(num_groups: int) -> tuple[str, ...]:
    """The counts of test rows for ``num_groups`` groups: whole numbers whatever the model (rows,
    and per group rows and positive labels; ``sum_s`` too for a binary attribute)."""
    groups = group_suffixes(num_groups)
    return ("n", *(f"{count}_{g}" for count in ("n", "n_y1") for g in groups), *(("sum_s",) if num_groups == 2 else ()))


def _prediction_counts(num_groups: int) -> tuple[str, ...]:
    """The counts of predictions for ``num_groups`` groups: whole numbers, or expected counts of a
    randomized model (correct ones, and per group positive and true-positive ones)."""
    groups = group_suffixes(num_groups)
    return ("correct", *(f"{count}_{g}" for count in ("positive", "true_positive") for g in groups))


def check_evaluation_reply(
    reply: RecordDict, *, report_metrics: bool, extra_metrics: tuple[str, ...], max_test_rows: int, num_groups: int = 2
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Validate one client's reply to θ and return its (counts, extra metrics, compute seconds).

    With ``report_metrics`` off the reply must be empty. With it on: exactly a ``"metrics"``
    record of the report counts of ``num_groups`` groups (:func:`~fedsynth.metrics.counts.count_keys`,
    the training counts optional) plus the method's ``extra_metrics`` (optional), and a ``"harness"``
    record of ``compute_s.<message type>`` seconds; every value finite; row counts whole numbers
    with ``1 <= n <= max_test_rows``, ``n`` the sum of the groups' ``n_s<g>`` (and ``sum_s = n_s1``
    for a binary attribute), ``n_y1_s<g> <= n_s<g>``; prediction counts between 0 and the rows they count;
    the decision histograms and training counts as :func:`~fedsynth.metrics.counts.check_histograms`
    and :func:`~fedsynth.metrics.counts.check_training_counts` require. Raises ``ValueError`` naming the problem.
    """
    if not report_metrics:
        if len(reply):
            raise ValueError(f"expected an empty reply (federation.report_metrics is off), got records {sorted(reply)}")
        return {}, {}, {}
    check_records(reply, (METRICS, HARNESS))
    if METRICS not in reply or HARNESS not in reply:
        raise ValueError(f"expected records {[METRICS, HARNESS]}, got {sorted(reply)}")
    metrics = dict(reply.metric_records[METRICS])
    keys = count_keys(num_groups)
    report_keys = keys + TRAINING_COUNT_KEYS
    missing = sorted(set(keys) - set(metrics))
    unexpected = sorted(set(metrics) - set(report_keys) - set(extra_metrics))
    if missing or unexpected:
        raise ValueError(
            f"metrics must be the test counts and optionally {list(extra_metrics)}: "
            f"missing {missing}, unexpected {unexpected}"
        )
    harness = dict(reply.metric_records[HARNESS])
    allowed = {f"{COMPUTE_PREFIX}{message_type}" for message_type in MESSAGE_TYPES}
    if not set(harness) <= allowed:
        raise ValueError(f"harness record may hold only {sorted(allowed)}, got {sorted(harness)}")
    for name, value in {**metrics, **harness}.items():
        if name in HISTOGRAM_KEYS:
            continue  # lists, checked below
        if isinstance(value, list) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if any(value < 0 for value in harness.values()):
        raise ValueError("compute seconds must be >= 0")
    counts = {key: metrics[key] if key in HISTOGRAM_KEYS else float(metrics[key]) for key in report_keys if key in metrics}
    groups = group_suffixes(num_groups)
    whole = _data_counts(num_groups)
    for key in whole + _prediction_counts(num_groups):
        if counts[key] < 0:
            raise ValueError(f"count {key} must be >= 0, got {counts[key]}")
    n = counts["n"]
    if not 1 <= n <= max_test_rows:
        raise ValueError(f"n must be in 1..{max_test_rows} (federation.max_test_rows), got {n:g}")
    slack = TOLERANCE * n

    def at_most(small: str, large: float) -> bool:
        return counts[small] <= large + slack

    for key in whole:
        if abs(counts[key] - round(counts[key])) > slack:
            raise ValueError(f"count {key} must be a whole number, got {counts[key]}")
    if abs(sum(counts[f"n_{group}"] for group in groups) - n) > slack:
        raise ValueError(f"counts are inconsistent: n must equal {' + '.join(f'n_{group}' for group in groups)}")
    if num_groups == 2 and abs(counts["sum_s"] - counts["n_s1"]) > slack:
        raise ValueError("counts are inconsistent: sum_s must equal n_s1")
    for group in groups:
        rows = counts[f"n_{group}"]
        if not (at_most(f"n_y1_{group}", rows) and at_most(f"positive_{group}", rows)):
            raise ValueError(f"counts are inconsistent: n_y1_{group} and positive_{group} must be <= n_{group}")
        if not at_most(f"true_positive_{group}", min(counts[f"positive_{group}"], counts[f"n_y1_{group}"])):
            raise ValueError(f"counts are inconsistent: true_positive_{group} exceeds positive_{group} or n_y1_{group}")
    if not at_most("correct", n):
        raise ValueError("counts are inconsistent: correct must be <= n")
    check_histograms(counts)
    check_training_counts(counts)
    extras = {key: float(metrics[key]) for key in extra_metrics if key in metrics}
    compute = {key[len(COMPUTE_PREFIX):]: float(value) for key, value in harness.items()}
    return counts, extras, compute
