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
from fedsynth.metrics.counts import COUNT_KEYS, HISTOGRAM_KEYS, REPORT_KEYS, check_histograms, check_training_counts

DATA_COUNTS = ("n", "n_s1", "n_s0", "n_y1_s1", "n_y1_s0", "sum_s")
"""Counts of test rows: whole numbers whatever the model."""
PREDICTION_COUNTS = ("correct", "positive_s1", "positive_s0", "true_positive_s1", "true_positive_s0")
"""Counts of predictions: whole numbers, or expected counts of a randomized model."""
DECISION_SUMS = ("sum_decision", "sum_s_decision")
"""Sums of decision values: any finite number."""
COMPUTE_PREFIX = "compute_s."
TOLERANCE = 1e-9
"""Relative slack of the count checks: a randomized model's expected counts are weighted sums."""


def reply_schema(experiment: Experiment) -> ReplySchema:
    """The :class:`~fedsynth.methods.base.ReplySchema` of an experiment: the encoded feature count
    of its dataset spec, and ``federation.max_abs_x``."""
    spec = DatasetSpec.from_config(experiment.dataset)
    return ReplySchema(
        num_features=len(encoded_feature_names(spec, experiment.data_dir)),
        max_abs_x=experiment.federation.max_abs_x,
    )


def check_evaluation_reply(
    reply: RecordDict, *, report_metrics: bool, extra_metrics: tuple[str, ...], max_test_rows: int
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Validate one client's reply to θ and return its (counts, extra metrics, compute seconds).

    With ``report_metrics`` off the reply must be empty. With it on: exactly a ``"metrics"``
    record of the report counts (:data:`~fedsynth.metrics.counts.REPORT_KEYS`) plus the method's
    ``extra_metrics`` (optional), and a ``"harness"`` record of ``compute_s.<message type>`` seconds; every
    value finite; row counts whole numbers with ``1 <= n <= max_test_rows``, ``n = n_s1 + n_s0``,
    ``sum_s = n_s1``, ``n_y1_s* <= n_s*``; prediction counts between 0 and the rows they count;
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
    missing = sorted(set(COUNT_KEYS) - set(metrics))
    unexpected = sorted(set(metrics) - set(REPORT_KEYS) - set(extra_metrics))
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
    counts = {key: metrics[key] if key in HISTOGRAM_KEYS else float(metrics[key]) for key in REPORT_KEYS if key in metrics}
    for key in DATA_COUNTS + PREDICTION_COUNTS:
        if counts[key] < 0:
            raise ValueError(f"count {key} must be >= 0, got {counts[key]}")
    n = counts["n"]
    if not 1 <= n <= max_test_rows:
        raise ValueError(f"n must be in 1..{max_test_rows} (federation.max_test_rows), got {n:g}")
    slack = TOLERANCE * n

    def at_most(small: str, large: float) -> bool:
        return counts[small] <= large + slack

    for key in DATA_COUNTS:
        if abs(counts[key] - round(counts[key])) > slack:
            raise ValueError(f"count {key} must be a whole number, got {counts[key]}")
    if abs(counts["n_s1"] + counts["n_s0"] - n) > slack or abs(counts["sum_s"] - counts["n_s1"]) > slack:
        raise ValueError("counts are inconsistent: n must equal n_s1 + n_s0 and sum_s must equal n_s1")
    for group in ("s1", "s0"):
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
