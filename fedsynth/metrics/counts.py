"""Additive test counts and every metric derived from them, in plain Python (no torch, so the
``fedsynth`` command reads them without importing it).

A client reports counts of its test rows under θ (:func:`fedsynth.metrics.evaluation_counts`
makes them); summing the counts of several clients (:func:`sum_counts`) and deriving the metrics
from the sums (:func:`metrics_from_counts`) gives the metrics of the pooled test rows exactly —
except the ROC AUC, which is not additive and is pooled from histograms of the decision values on
fixed bins (:func:`histogram_auc`, with its error bound).

The counts are keyed per group of the sensitive attribute: the suffix ``s<g>`` of ``n_s<g>``,
``positive_s<g>``, ... for the group index g (:func:`group_suffixes`). A binary attribute has the
suffixes ``s1`` (privileged, s = 1) and ``s0`` (:data:`GROUPS`), plus ``sum_s`` and
``sum_s_decision`` for the covariance (2); an attribute with k > 2 values has ``s0`` .. ``s<k-1>``
and, instead of those two sums, the decision sum of each group (``sum_decision_s<g>``). The group
gaps (:func:`group_gap`) are the signed gap s = 1 minus s = 0 for two groups and the largest gap over
the groups for more (fairlearn's ``demographic_parity_difference`` / ``equal_opportunity_difference``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

GROUPS: dict[str, float] = {"s1": 1.0, "s0": 0.0}
"""The groups of a binary sensitive attribute: count-key suffix → value of s (1 = privileged)."""

PER_GROUP_COUNTS = ("n", "positive", "n_y1", "true_positive")
"""Counts kept per group: rows, rows predicted +1, rows labelled +1, rows both."""

DECISION_BINS = 1024
"""Bins of the decision-value histograms (two open tails and 1022 bins between them)."""
DECISION_BIN_SPAN = 8.0
"""The inner bin edges are sinh(u) for u evenly spaced on [−8, 8]: bins of ≈ 0.016 decision units
near 0, widening in proportion to |d| (≈ 1.6 % of it) up to |d| ≈ 1490, the open tails beyond."""
DECISION_BIN_EDGES: tuple[float, ...] = tuple(
    math.sinh(-DECISION_BIN_SPAN + 2 * DECISION_BIN_SPAN * i / (DECISION_BINS - 2)) for i in range(DECISION_BINS - 1)
)
"""The 1023 ascending edges: bin 0 is d < edge 0, bin b is edge b−1 ≤ d < edge b, the last bin
d ≥ the last edge. Fixed, so every client's histogram has the same bins and they add up."""

HISTOGRAM_KEYS = ("decision_histogram_y1", "decision_histogram_y0")
"""Per label (+1, −1), how many test rows have their decision value in each bin (lists of
:data:`DECISION_BINS` whole numbers)."""

def group_suffixes(num_groups: int) -> tuple[str, ...]:
    """The count-key suffixes of an attribute with ``num_groups`` values: ``("s1", "s0")`` for two
    (:data:`GROUPS`), ``("s0", ..., "s<k-1>")`` for k > 2."""
    if num_groups < 2:
        raise ValueError(f"a sensitive attribute has at least 2 groups, got {num_groups}")
    return tuple(GROUPS) if num_groups == 2 else tuple(f"s{g}" for g in range(num_groups))


def count_keys(num_groups: int = 2) -> tuple[str, ...]:
    """The keys of the test counts (:func:`fedsynth.metrics.evaluation_counts`) of an attribute
    with ``num_groups`` values: rows and correct predictions, :data:`PER_GROUP_COUNTS` per group,
    the decision sums (``sum_s``, ``sum_decision``, ``sum_s_decision`` for two groups;
    ``sum_decision`` and ``sum_decision_s<g>`` per group for more) and the decision histograms."""
    groups = group_suffixes(num_groups)
    if num_groups == 2:
        sums = ("sum_s", "sum_decision", "sum_s_decision")
    else:
        sums = ("sum_decision", *(f"sum_decision_{group}" for group in groups))
    return ("n", "correct", *(f"{count}_{group}" for count in PER_GROUP_COUNTS for group in groups), *sums, *HISTOGRAM_KEYS)


COUNT_KEYS = count_keys(2)
"""The keys of the test counts of a binary sensitive attribute (:func:`count_keys`)."""

TRAINING_COUNT_KEYS = ("train_n", "train_n_y1")
"""Counts of the client's training rows: rows, rows labelled +1 (the constant classifier's
majority); left out by a client whose training rows are under a privacy guarantee."""

REPORT_KEYS = COUNT_KEYS + TRAINING_COUNT_KEYS
"""The counts of a client's report to the harness (:func:`fedsynth.metrics.report_counts`): every
:data:`COUNT_KEYS` entry, and both or none of :data:`TRAINING_COUNT_KEYS` (a binary attribute;
``count_keys(k) + TRAINING_COUNT_KEYS`` for k groups)."""

METRIC_KEYS = ("accuracy", "balanced_accuracy", "spd", "covariance", "eod", "auc", "auc_error_bound")
"""The keys of :func:`metrics_from_counts`."""


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def count_groups(counts: Mapping[str, Any]) -> tuple[str, ...]:
    """The group suffixes of (summed) test counts, read from their ``n_s<g>`` keys: ``("s1", "s0")``
    for a binary attribute, ``("s0", ..., "s<k-1>")`` for k > 2 (:func:`group_suffixes`). Raises
    ``ValueError`` when the keys are no such set."""
    indices = sorted(int(key[3:]) for key in counts if key.startswith("n_s") and key[3:].isdigit())
    if indices != list(range(len(indices))) or len(indices) < 2:
        raise ValueError(f"evaluation counts need n_s0 .. n_s<k-1> for k >= 2 groups, got groups {indices}")
    return group_suffixes(len(indices))


def group_rates(counts: Mapping[str, Any], numerator: str, denominator: str) -> dict[str, float]:
    """``numerator_<g> / denominator_<g>`` for every group g of ``counts`` (:func:`count_groups`;
    NaN for a group without rows)."""
    return {
        group: _ratio(counts[f"{numerator}_{group}"], counts[f"{denominator}_{group}"]) for group in count_groups(counts)
    }


def group_gap(rates: Mapping[str, float]) -> float:
    """The gap between the groups' rates. Two groups (suffixes ``s1``, ``s0``): the signed gap,
    privileged minus unprivileged (s = 1 minus s = 0; NaN when a group has no rows). More groups:
    the largest gap, max_g r_g − min_g r_g ≥ 0 over the groups whose rate is defined (fairlearn's
    ``demographic_parity_difference`` / ``equal_opportunity_difference`` for the positive and
    true-positive rates; its absolute value is theirs for two groups too); NaN when fewer than two
    groups have one."""
    if set(rates) == set(GROUPS):
        return rates["s1"] - rates["s0"]
    defined = [rate for rate in rates.values() if not math.isnan(rate)]
    return max(defined) - min(defined) if len(defined) >= 2 else math.nan


def group_covariance(counts: Mapping[str, Any]) -> float:
    """The decision-boundary covariance (2) of (summed) test counts. Two groups: the signed
    (1/N) Σ_i (s_i − s̄) d_i from ``sum_s`` and ``sum_s_decision``. More groups: the largest
    |covariance| of a group indicator with the decision value, max_g |(1/N) Σ_i (1[s_i = g] − N_g/N) d_i|
    from ``sum_decision_s<g>`` (for two groups both indicators give ± the binary covariance)."""
    n = counts["n"]
    groups = count_groups(counts)
    if groups == tuple(GROUPS):
        return _ratio(counts["sum_s_decision"], n) - _ratio(counts["sum_s"], n) * _ratio(counts["sum_decision"], n)
    mean_decision = _ratio(counts["sum_decision"], n)
    return max(
        abs(_ratio(counts[f"sum_decision_{group}"], n) - _ratio(counts[f"n_{group}"], n) * mean_decision)
        for group in groups
    )


def histogram_auc(positive: Iterable[float], negative: Iterable[float]) -> tuple[float, float]:
    """ROC AUC of decision values given only their histograms on common ordered bins, the
    Mann–Whitney statistic with the pairs that share a bin counted as ties:

        AUC ≈ Σ_b P_b (N_{<b} + N_b / 2) / (P · N),

    P_b, N_b the positive / negative rows in bin b, P, N their totals. Pairs in different bins are
    ordered exactly (the bins are ordered), so the estimate differs from the AUC of the values
    themselves (scikit-learn's ``roc_auc_score``, ties ½) only through the pairs within one bin,
    each off by at most ½:

        |error| ≤ ½ Σ_b P_b N_b / (P · N)   (the returned bound, computed from the same histograms).

    Returns ``(auc, bound)``; ``(nan, nan)`` when either label is absent."""
    positive, negative = [float(v) for v in positive], [float(v) for v in negative]
    if len(positive) != len(negative):
        raise ValueError(f"histograms of {len(positive)} and {len(negative)} bins")
    total_positive, total_negative = sum(positive), sum(negative)
    if not total_positive or not total_negative:
        return math.nan, math.nan
    below, ranked, tied = 0.0, 0.0, 0.0
    for p, n in zip(positive, negative):
        ranked += p * (below + n / 2)
        tied += p * n
        below += n
    pairs = total_positive * total_negative
    return ranked / pairs, tied / pairs / 2


def metrics_from_counts(counts: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of (summed) test counts, NaN where a denominator is 0:

    * ``accuracy``;
    * ``balanced_accuracy``: the mean of the true-positive and true-negative rates (of the labels
      present, as scikit-learn's ``balanced_accuracy_score``);
    * ``spd`` (eq. 4) and ``eod``: the gaps of the positive rate and of the true-positive rate
      between the groups (:func:`group_gap`: signed for two groups, the largest gap for more);
    * ``covariance``: the decision-boundary covariance, eq. (2) (:func:`group_covariance`);
    * ``auc`` and ``auc_error_bound``: ROC AUC of the decision values and the bound on its
      binning error (:func:`histogram_auc`).
    """
    groups = count_groups(counts) if any(key.startswith("n_s") for key in counts) else tuple(GROUPS)
    missing = [key for key in count_keys(len(groups)) if key not in counts]
    if missing:
        raise ValueError(f"evaluation counts lack {missing}")
    n = counts["n"]
    labelled_positive = sum(counts[f"n_y1_{group}"] for group in groups)
    true_positive = sum(counts[f"true_positive_{group}"] for group in groups)
    recalls = [
        _ratio(hits, rows)
        for hits, rows in ((true_positive, labelled_positive), (counts["correct"] - true_positive, n - labelled_positive))
        if rows
    ]
    auc, bound = histogram_auc(*(counts[key] for key in HISTOGRAM_KEYS))
    return {
        "accuracy": _ratio(counts["correct"], n),
        "balanced_accuracy": sum(recalls) / len(recalls) if recalls else math.nan,
        "spd": group_gap(group_rates(counts, "positive", "n")),
        "covariance": group_covariance(counts),
        "eod": group_gap(group_rates(counts, "true_positive", "n_y1")),
        "auc": auc,
        "auc_error_bound": bound,
    }


GROUP_METRIC_KEYS = ("n", "positive_rate", "true_positive_rate", "accuracy")
"""The keys of each group's entry of :func:`group_metrics`."""


def group_metrics(counts: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per group of (summed) test counts (:func:`count_groups`: ``s1``, ``s0`` for a binary
    attribute, ``s0`` .. ``s<k-1>`` for k groups): its test rows ``n``, ``positive_rate`` (the rate
    whose gaps are ``spd``), ``true_positive_rate`` (``eod``'s) and ``accuracy``, the correct
    predictions among its rows (true positives plus true negatives, (n_y1 − positive + 2·tp) / n
    rows with n_y1 = ``n_y1_<g>``); NaN where the group has no rows (or no positive label)."""
    metrics = {}
    for group in count_groups(counts):
        rows, labelled = counts[f"n_{group}"], counts[f"n_y1_{group}"]
        positive, hits = counts[f"positive_{group}"], counts[f"true_positive_{group}"]
        values = (float(rows), _ratio(positive, rows), _ratio(hits, labelled),
                  _ratio(hits + (rows - labelled) - (positive - hits), rows))
        metrics[group] = dict(zip(GROUP_METRIC_KEYS, values, strict=True))
    return metrics


def sum_counts(per_client: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Add the counts of several clients key by key (histograms bin by bin); every client must
    have the keys of the first."""
    if not per_client:
        raise ValueError("sum_counts needs the counts of at least one client")
    summed: dict[str, Any] = {}
    for key, first in per_client[0].items():
        values = [client[key] for client in per_client]
        if isinstance(first, (list, tuple)):
            summed[key] = [sum(column) for column in zip(*values, strict=True)]
        else:
            summed[key] = float(sum(values))
    return summed


def constant_classifier(counts: Mapping[str, Any]) -> dict[str, Any]:
    """The constant classifier of (summed) report counts: it predicts, for every row, the majority
    label of the training rows (``train_n_y1`` against ``train_n``; +1 on a tie), and is measured
    on the test rows of ``counts`` like any model: ``label``, ``majority_of`` (``training rows``,
    or ``test rows`` when the clients sent no training counts: a private run) and every
    :func:`metrics_from_counts` metric (accuracy = the test share of that label, balanced accuracy
    0.5, SPD = EOD = covariance = 0, AUC 0.5 exactly: its decision values are all tied, so
    ``auc_error_bound`` is 0)."""
    groups = count_groups(counts)
    labelled = sum(counts[f"n_y1_{group}"] for group in groups)
    if all(key in counts for key in TRAINING_COUNT_KEYS):
        majority_of, positive_rows, rows = "training rows", counts["train_n_y1"], counts["train_n"]
    else:
        majority_of, positive_rows, rows = "test rows", labelled, counts["n"]
    label = 1.0 if 2 * positive_rows >= rows else -1.0
    positive = label > 0
    constant: dict[str, Any] = {"n": counts["n"]}
    if groups == tuple(GROUPS):
        constant["sum_s"] = counts["sum_s"]
    for group in groups:
        group_rows, group_positives = counts[f"n_{group}"], counts[f"n_y1_{group}"]
        constant |= {
            f"n_{group}": group_rows,
            f"n_y1_{group}": group_positives,
            f"positive_{group}": group_rows if positive else 0.0,
            f"true_positive_{group}": group_positives if positive else 0.0,
        }
        if groups != tuple(GROUPS):
            constant[f"sum_decision_{group}"] = label * group_rows
    constant["correct"] = labelled if positive else counts["n"] - labelled
    constant["sum_decision"] = label * counts["n"]  # decision value ±1 on every row
    if groups == tuple(GROUPS):
        constant["sum_s_decision"] = label * counts["sum_s"]
    bin_of_label = next(b for b, edge in enumerate(DECISION_BIN_EDGES) if edge > label)
    for key, rows in zip(HISTOGRAM_KEYS, (labelled, counts["n"] - labelled)):
        constant[key] = [rows if b == bin_of_label else 0 for b in range(DECISION_BINS)]
    return {"label": label, "majority_of": majority_of, **metrics_from_counts(constant), "auc_error_bound": 0.0}


def _whole(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value == round(value)


def check_histograms(counts: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless each :data:`HISTOGRAM_KEYS` entry is a list of
    :data:`DECISION_BINS` whole numbers ≥ 0 that add up to the test rows of its label
    (``n_y1_*`` summed over the groups for +1, the other rows for −1)."""
    labelled = sum(counts[f"n_y1_{group}"] for group in count_groups(counts))
    for key, rows in zip(HISTOGRAM_KEYS, (labelled, counts["n"] - labelled)):
        histogram = counts[key]
        if not isinstance(histogram, list) or len(histogram) != DECISION_BINS:
            raise ValueError(f"{key} must be a list of {DECISION_BINS} counts")
        if not all(_whole(v) and v >= 0 for v in histogram):
            raise ValueError(f"{key} must hold whole numbers >= 0")
        if abs(sum(histogram) - rows) > 1e-9 * max(1.0, rows):
            raise ValueError(f"{key} counts {sum(histogram):g} rows, the label counts say {rows:g}")


def check_training_counts(counts: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``counts`` has both or none of :data:`TRAINING_COUNT_KEYS`, and
    when it has them ``train_n`` is a whole number ≥ 1 and ``train_n_y1`` a whole number in
    0..``train_n``."""
    present = [key for key in TRAINING_COUNT_KEYS if key in counts]
    if not present:
        return
    if len(present) != len(TRAINING_COUNT_KEYS):
        raise ValueError(f"training counts must be both or none of {list(TRAINING_COUNT_KEYS)}, got {present}")
    rows, positive = counts["train_n"], counts["train_n_y1"]
    if not (_whole(rows) and rows >= 1 and _whole(positive) and 0 <= positive <= rows):
        raise ValueError(f"train_n must be a whole number >= 1 and train_n_y1 one in 0..train_n, got {rows!r}, {positive!r}")
