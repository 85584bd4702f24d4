"""Collect ``results.json`` files (the one schema of :mod:`.results`) into tables: one row per
run (:func:`load_runs`), one row per setting, mean ± std over seeds (:func:`summarize`), and the
reference rows every table shows beside its settings (:func:`reference_rows`).

A setting is the run's data and model (:data:`BASE_SETTING_COLUMNS`) and its method's own settings,
read from the method's config (:func:`.results.method_settings`): each key of ``config.method`` is a
column of the run row, so a new method's sweep is grouped by its own knobs with no code here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from fedsynth.reporting.results import (
    client_mean,
    client_statistics,
    constant_reference,
    dataset_name,
    is_reference,
    method_name,
    method_settings,
    payload,
    protocol_bytes,
    read_results,
    split_label,
    synthetic_size,
)

BASE_SETTING_COLUMNS = ("dataset", "engine", "method", "partition", "num_clients", "fit_intercept")
"""The columns of every setting besides the method's own settings."""

DATA_COLUMNS = ("dataset", "partition", "num_clients", "fit_intercept")
"""What a reference must share with the points it judges (with their seeds)."""

METRICS = (
    "accuracy", "balanced_accuracy", "auc", "auc_error_bound", "spd", "abs_spd", "covariance", "eod", "abs_eod",
    "client_accuracy_min", "client_accuracy_max", "client_abs_spd_max", "client_abs_eod_max",
    "constant_accuracy", "min_distance", "compute_seconds", "wall_seconds",
    "protocol_bytes_up", "protocol_bytes_down", "round_trips", "mia_auc", "dcr_train_p05", "dcr_holdout_p05",
)
"""Per-run numbers that :func:`summarize` averages (``<metric>_mean``, ``<metric>_std``)."""

GROUP_PREFIX = "group_"
"""The per-group columns of a run (``group_<g>_<metric>``, g a group suffix such as ``s2`` and
metric a :data:`~fedsynth.metrics.counts.GROUP_METRIC_KEYS` entry, from ``results.json``'s
``groups``): neither settings nor :data:`METRICS` (their number depends on the dataset)."""

RUN_COLUMNS = (
    "study", *BASE_SETTING_COLUMNS, "setting", "reference", "n_s", "n_s_kind", "seed", "num_groups", *METRICS,
    "bytes_scope", "payload", "client_statistics", "failures", "path",
)
"""The columns :func:`run_row` makes itself; every other column is a setting of the run's method (a
method key named like one of these is shown as ``method.<key>``)."""

SETTING_DERIVED = ("setting", "reference", "n_s", "n_s_kind", "payload")
"""Columns that follow from a setting: :func:`summarize` carries them (the first run's value)."""


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _worst(low: Any, high: Any) -> float:
    """The largest |value| of a (min, max) pair over clients."""
    return max(abs(_number(low)), abs(_number(high))) if low is not None or high is not None else math.nan


def _setting_value(value: Any) -> Any:
    """A method setting as a cell: scalars as they are, lists and mappings as JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def run_row(record: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """One run's ``results.json`` content as a flat row: :data:`RUN_COLUMNS` and the method's own
    settings (:func:`.results.method_settings`), one column each."""
    config = record["config"]
    study = config.get("study") or {}
    size = synthetic_size(record)
    fit_intercept = (config.get("model") or {}).get("fit_intercept", (config.get("method") or {}).get("fit_intercept"))
    spd, eod = _number(record.get("spd")), _number(record.get("eod"))
    low, high = record.get("client_min") or {}, record.get("client_max") or {}
    bytes_up, bytes_down, scope = protocol_bytes(record)
    row = {
        "study": study.get("name", ""),
        "dataset": dataset_name(record),
        "engine": record.get("engine", ""),
        "method": method_name(record),
        "partition": split_label(record),
        "num_clients": int((config.get("dataset") or {}).get("num_clients", len(record.get("per_client", [])))),
        "fit_intercept": bool(fit_intercept) if fit_intercept is not None else True,
        "setting": method_name(record),  # made precise by load_runs (setting_labels)
        "reference": "centralized plain" if is_reference(record) else "",
        "n_s": size[0] if size else "",
        "n_s_kind": size[1] if size else "",
        "seed": int(record.get("seed", config.get("seed", 0))),
        "num_groups": len(record.get("groups") or {}) or 2,
        "accuracy": _number(record.get("accuracy")),
        "balanced_accuracy": _number(record.get("balanced_accuracy")),
        "auc": _number(record.get("auc")),
        "auc_error_bound": _number(record.get("auc_error_bound")),
        "spd": spd,
        "abs_spd": abs(spd),
        "covariance": _number(record.get("covariance")),
        "eod": eod,
        "abs_eod": abs(eod),
        "client_accuracy_min": _number(low.get("accuracy")),
        "client_accuracy_max": _number(high.get("accuracy")),
        "client_abs_spd_max": _worst(low.get("spd"), high.get("spd")),
        "client_abs_eod_max": _worst(low.get("eod"), high.get("eod")),
        "constant_accuracy": _number(constant_reference(record).get("accuracy")),
        "min_distance": _number(record.get("min_distance")),
        "compute_seconds": _number((record.get("timings") or {}).get("compute_s")),
        "wall_seconds": _number(record.get("wall_seconds")),
        "protocol_bytes_up": float(bytes_up),
        "protocol_bytes_down": float(bytes_down),
        "bytes_scope": scope,
        "round_trips": _number(record.get("round_trips")),
        "payload": payload(record),
        "client_statistics": client_statistics(record),
        "mia_auc": client_mean(record, "mia_auc"),
        "dcr_train_p05": client_mean(record, "dcr_train_p05"),
        "dcr_holdout_p05": client_mean(record, "dcr_holdout_p05"),
        "failures": len(record.get("failures") or []),
        "path": str(path.parent) if path is not None else "",
    }
    for group, values in (record.get("groups") or {}).items():
        row |= {f"{GROUP_PREFIX}{group}_{key}": _number(value) for key, value in values.items()}
    for key, value in method_settings(record).items():
        row[f"method.{key}" if key in RUN_COLUMNS or key.startswith(GROUP_PREFIX) else key] = _setting_value(value)
    return row


def method_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of ``frame`` that are method settings (all but :data:`RUN_COLUMNS` and the
    summary's own columns), in order of appearance."""
    own = set(RUN_COLUMNS) | {"runs", "seeds", "repeated_seeds", "dominated"}
    return [c for c in frame.columns if c not in own and not c.endswith(("_mean", "_std")) and not c.startswith(GROUP_PREFIX)]


def setting_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that make a setting: :data:`BASE_SETTING_COLUMNS` and the method settings."""
    return [*BASE_SETTING_COLUMNS, *method_columns(frame)]


def _canonical(value: Any) -> str:
    """A value as a grouping key: numbers compare as numbers (1 and 1.0 alike), NaN is missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return json.dumps(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value))
    return json.dumps(str(value))


def _sort_key(value: Any) -> tuple[int, Any]:
    """Order of mixed cells: numbers by value, then text, then missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, "")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return (0, float(value))
    return (1, str(value))


def group_rows(frame: pd.DataFrame, by: Sequence[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The rows of ``frame`` grouped by the values of the columns ``by`` (cells of any type: a
    setting may be a number for one run and text for another), ordered by those values."""
    by = [c for c in by if c in frame]
    if frame.empty:
        return []
    keys = frame[by].apply(lambda row: "\x1f".join(_canonical(v) for v in row), axis=1) if by else pd.Series("", frame.index)
    groups = [(dict(zip(by, group[by].iloc[0])), group) for _, group in frame.groupby(keys, sort=False)]
    return sorted(groups, key=lambda item: [_sort_key(item[0][c]) for c in by])


def setting_labels(runs: pd.DataFrame) -> pd.Series:
    """Each run's setting as text: its method and the method settings that vary among that
    method's runs of the same dataset and split in ``runs`` (``single_shot rho_o=10 k_max=300``;
    the method alone when nothing varies)."""
    labels = pd.Series(runs["method"], index=runs.index, dtype=object)
    for (name, _, _), group in runs.groupby(["method", "dataset", "partition"], sort=False):
        columns = [c for c in method_columns(group) if group[c].notna().any()]
        varied = [c for c in columns if group[c].map(_canonical).nunique() > 1]
        for index, row in group.iterrows():
            parts = [name] + [f"{c}={_label_value(row[c])}" for c in varied]
            labels[index] = " ".join(parts)
    return labels


def _label_value(value: Any) -> str:
    if isinstance(value, float) and value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per ``results.json`` under ``paths`` (:func:`run_row`), with each run's setting
    label (:func:`setting_labels`); raises :class:`.results.NoResultsError` if none."""
    rows = []
    for path, record in read_results(paths):
        try:
            rows.append(run_row(record, path))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} does not follow the results.json schema ({type(error).__name__}: {error})") from None
    frame = pd.DataFrame(rows)
    frame["setting"] = setting_labels(frame)
    ordered = [group for _, group in group_rows(frame, setting_columns(frame))]
    frame = pd.concat([group.sort_values("seed", kind="stable") for group in ordered])
    return frame.reset_index(drop=True)


def mean_and_std(group: pd.DataFrame, metrics: Iterable[str]) -> dict[str, float]:
    """``<metric>_mean`` and ``<metric>_std`` (sample std) of each column ``metrics`` of ``group``
    over its finite values: NaN without one, the std NaN with one."""
    row = {}
    for metric in metrics:
        values = group[metric].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        row[f"{metric}_mean"] = float(finite.mean()) if len(finite) else math.nan
        row[f"{metric}_std"] = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
    return row


def summarize(runs: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per setting (the distinct values of the columns ``by``, by default
    :func:`setting_columns`): those columns and :data:`SETTING_DERIVED`, ``<metric>_mean``,
    ``<metric>_std`` (sample std over seeds, NaN for one seed) of every :data:`METRICS` entry,
    ``runs``, ``seeds``, ``repeated_seeds`` (runs whose seed another run of the setting already
    has), ``failures``, ``study``, ``bytes_scope`` (``protocol`` when every run listed its
    exchanges, else ``total``), ``client_statistics`` (the distinct values, `` / ``-joined) and
    ``dominated``: whether the constant classifier, on the same runs' test rows, is at least as
    accurate (its |SPD| is 0, never more than the setting's: the setting is weakly dominated on
    accuracy and |SPD|)."""
    by = list(by) if by is not None else setting_columns(runs)
    rows = []
    for key, group in group_rows(runs, by):
        row = dict(key)
        for column in SETTING_DERIVED:
            if column not in row and column in group:
                row[column] = group[column].iloc[0]
        row["study"] = ",".join(sorted({s for s in group["study"] if s}))
        row |= mean_and_std(group, METRICS)
        row["runs"] = len(group)
        row["seeds"] = " ".join(str(s) for s in sorted(group["seed"]))
        row["repeated_seeds"] = int(group["seed"].duplicated().sum())  # e.g. two sweeps of one setting
        row["failures"] = int(group["failures"].sum())
        row["bytes_scope"] = "protocol" if (group["bytes_scope"] == "protocol").all() else "total"
        row["client_statistics"] = " / ".join(sorted(set(group["client_statistics"])))
        row["dominated"] = bool(row["accuracy_mean"] <= row["constant_accuracy_mean"])
        rows.append(row)
    return pd.DataFrame(rows)


def group_summary(points: pd.DataFrame) -> pd.DataFrame:
    """One row per setting and group of the sensitive attribute (the runs' :data:`GROUP_PREFIX`
    columns): the setting's ``dataset``, ``partition`` and ``setting`` label, ``group`` (its
    suffix, ``s0`` .. ``s<k-1>``; ``s1``/``s0`` for a binary attribute), ``runs`` and the mean over
    seeds of each of its :data:`~fedsynth.metrics.counts.GROUP_METRIC_KEYS` (``<key>_mean``).
    Empty unless a run's sensitive attribute has k > 2 groups (for two, ``spd`` and ``eod`` are
    already the gaps of the two groups' rates)."""
    if points.empty or int(points["num_groups"].max()) <= 2:
        return pd.DataFrame()
    columns = [c for c in points.columns if c.startswith(GROUP_PREFIX)]
    groups = sorted({c[len(GROUP_PREFIX):].split("_", 1)[0] for c in columns}, key=lambda g: int(g[1:]))
    rows = []
    for key, frame in group_rows(points, setting_columns(points)):
        for group in groups:
            present = [c for c in columns if c.startswith(f"{GROUP_PREFIX}{group}_")]
            if not present or frame[present].isna().all().all():
                continue
            row = {"dataset": key["dataset"], "partition": key["partition"], "setting": frame["setting"].iloc[0],
                   "group": group, "runs": len(frame)}
            row |= {f"{c[len(f'{GROUP_PREFIX}{group}_'):]}_mean": mean_and_std(frame, [c])[f"{c}_mean"] for c in present}
            rows.append(row)
    return pd.DataFrame(rows)


def reference_rows(runs: pd.DataFrame, points: pd.DataFrame | None = None) -> pd.DataFrame:
    """The reference rows of a table, one pair per data setting (:data:`DATA_COLUMNS`) of the
    points (default: the runs that are not references): the ``constant classifier`` (each point
    run's ``reference.constant``, on the same test rows; mean over those runs, one per seed) and the
    ``centralized plain`` model (the :data:`.results.REFERENCE_METHOD` runs of the same data
    setting and seeds; a row of NaN with ``runs`` 0 when there is none). Columns: those of
    :func:`summarize` (``setting`` names the reference)."""
    points = runs[runs["reference"] == ""] if points is None else points
    references = runs[runs["reference"] != ""]
    rows = []
    for key, group in group_rows(points, DATA_COLUMNS):
        seeds = set(group["seed"])
        constant = group.drop_duplicates("seed")
        row = {**key, "setting": "constant classifier", "reference": "constant classifier", "runs": len(constant),
               "seeds": " ".join(str(s) for s in sorted(constant["seed"])), "failures": 0, "dominated": False,
               "bytes_scope": "protocol", "client_statistics": "", "payload": "", "study": ""}
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"] = math.nan, math.nan
        values = constant["constant_accuracy"].to_numpy(dtype=float)
        row["accuracy_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
        row["accuracy_std"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else math.nan
        if math.isfinite(row["accuracy_mean"]):
            row |= {f"{m}_mean": value for m, value in
                    (("balanced_accuracy", 0.5), ("auc", 0.5), ("spd", 0.0), ("abs_spd", 0.0), ("eod", 0.0),
                     ("abs_eod", 0.0), ("covariance", 0.0), ("client_abs_spd_max", 0.0), ("client_abs_eod_max", 0.0))}
        rows.append(row)
        matched = references.copy()
        for column, value in key.items():
            matched = matched[matched[column].map(_canonical) == _canonical(value)]
        matched = matched[matched["seed"].isin(seeds)].drop_duplicates("seed")
        summary = summarize(matched, list(DATA_COLUMNS)) if len(matched) else pd.DataFrame()
        row = {**key, "setting": "centralized plain", "reference": "centralized plain", "runs": len(matched),
               "seeds": " ".join(str(s) for s in sorted(matched["seed"])), "failures": 0, "dominated": False,
               "bytes_scope": "protocol", "client_statistics": "", "payload": "", "study": ""}
        for metric in METRICS:
            for stat in ("mean", "std"):
                column = f"{metric}_{stat}"
                row[column] = summary[column].iloc[0] if len(summary) else math.nan
        if len(summary):
            row |= {column: summary[column].iloc[0] for column in
                    ("dominated", "bytes_scope", "client_statistics", "payload", "failures", "study")}
        rows.append(row)
    return pd.DataFrame(rows)


def missing_references(references: pd.DataFrame) -> list[str]:
    """The data settings of :func:`reference_rows` without a centralized plain run, as text."""
    lacking = references[(references["reference"] == "centralized plain") & (references["runs"] == 0)]
    return [f"{r['dataset']} {r['partition']}" + ("" if r["fit_intercept"] else " (no intercept)") for _, r in lacking.iterrows()]


def varying(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> list[str]:
    """The columns of ``columns`` (default: :func:`setting_columns`) with more than one distinct
    value in ``frame``."""
    columns = setting_columns(frame) if columns is None else columns
    return [c for c in columns if c in frame and frame[c].map(_canonical).nunique() > 1]


def seeds_warning(summary: pd.DataFrame) -> str:
    """A warning when the settings of a summary have different numbers of runs (e.g. ``3/4 seeds
    per point``: some points lack a seed the others have), naming the short ones; else ``""``."""
    counts = summary["runs"].astype(int)
    if counts.nunique() <= 1:
        return ""
    most = int(counts.max())
    short = summary[counts < most]
    names = "; ".join(f"{r['setting']} ({r['dataset']}, {r['partition']}): {r['runs']} run(s), seeds {r['seeds']}"
                      for _, r in short.head(8).iterrows())
    more = f"; and {len(short) - 8} more" if len(short) > 8 else ""
    return (f"settings have {'/'.join(map(str, sorted(set(counts))))} seeds per point: {len(short)} of "
            f"{len(summary)} have fewer than {most} ({names}{more}); their means are over fewer seeds")
