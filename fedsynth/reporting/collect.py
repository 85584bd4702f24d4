"""Collect ``results.json`` files (the one schema of :mod:`.results`) into tables: one row per
run (:func:`load_runs`) and one row per setting, mean ± std over seeds (:func:`summarize`; by
default the settings of a single_shot sweep, :data:`SETTING_COLUMNS`; the method comparison groups
by :data:`COMPARISON_COLUMNS`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from fedsynth.reporting.results import (
    client_mean,
    client_statistics,
    dataset_name,
    method_name,
    method_setting,
    protocol_bytes,
    read_results,
    split_label,
    synthetic_size,
)

SETTING_COLUMNS = (
    "dataset",
    "engine",
    "method",
    "n_s",
    "n_s_kind",
    "synthetic_labels",
    "init",
    "rho_o",
    "rho_s",
    "lambda_theta",
    "lambda_x",
    "k_max",
    "lr",
    "inner_max_iter",
    "fit_intercept",
    "partition",
    "num_clients",
)
"""Columns that define a single_shot setting; runs of one setting differ only in ``seed``."""

COMPARISON_COLUMNS = ("dataset", "partition", "setting")
"""Columns that define a row of the method comparison (``setting``: :func:`.results.method_setting`)."""

METRICS = (
    "accuracy", "spd", "abs_spd", "covariance", "eod", "min_distance", "wall_seconds",
    "protocol_bytes_up", "protocol_bytes_down", "round_trips", "mia_auc", "dcr_train_p05", "dcr_holdout_p05",
)
"""Per-run numbers that :func:`summarize` averages (``<metric>_mean``, ``<metric>_std``)."""


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def run_row(record: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """One run's ``results.json`` content as a flat row."""
    config = record["config"]
    method = config.get("method") or {}
    study = config.get("study") or {}
    n_s, kind = synthetic_size(record)
    fit_intercept = method.get("fit_intercept", (config.get("model") or {}).get("fit_intercept"))
    spd = _number(record.get("spd"))
    bytes_up, bytes_down, scope = protocol_bytes(record)
    return {
        "study": study.get("name", ""),
        "dataset": dataset_name(record),
        "engine": record.get("engine", ""),
        "method": method_name(record),
        "setting": method_setting(record),
        "n_s": n_s,
        "n_s_kind": kind,
        "synthetic_labels": method.get("synthetic_labels", ""),
        "init": method.get("init", ""),
        "rho_o": _number(method.get("rho_o")),
        "rho_s": _number(method.get("rho_s")),
        "lambda_theta": _number(method.get("lambda_theta")),
        "lambda_x": _number(method.get("lambda_x")),
        "k_max": int(method.get("k_max", -1)),
        "lr": _number(method.get("lr")),
        "inner_max_iter": int(method.get("inner_max_iter", -1)),
        "fit_intercept": bool(fit_intercept) if fit_intercept is not None else True,
        "partition": split_label(record),
        "num_clients": int((config.get("dataset") or {}).get("num_clients", len(record.get("per_client", [])))),
        "seed": int(record.get("seed", config.get("seed", 0))),
        "accuracy": _number(record.get("accuracy")),
        "spd": spd,
        "abs_spd": abs(spd),
        "covariance": _number(record.get("covariance")),
        "eod": _number(record.get("eod")),
        "min_distance": _number(record.get("min_distance")),
        "wall_seconds": _number(record.get("wall_seconds")),
        "protocol_bytes_up": float(bytes_up),
        "protocol_bytes_down": float(bytes_down),
        "bytes_scope": scope,
        "round_trips": _number(record.get("round_trips")),
        "client_statistics": client_statistics(record),
        "mia_auc": client_mean(record, "mia_auc"),
        "dcr_train_p05": client_mean(record, "dcr_train_p05"),
        "dcr_holdout_p05": client_mean(record, "dcr_holdout_p05"),
        "failures": len(record.get("failures") or []),
        "path": str(path.parent) if path is not None else "",
    }


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per ``results.json`` under ``paths``; raises :class:`.results.NoResultsError` if
    none."""
    rows = []
    for path, record in read_results(paths):
        try:
            rows.append(run_row(record, path))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} does not follow the results.json schema ({type(error).__name__}: {error})") from None
    frame = pd.DataFrame(rows)
    return frame.sort_values([*SETTING_COLUMNS, "seed"], kind="stable").reset_index(drop=True)


def summarize(runs: pd.DataFrame, by: Sequence[str] = SETTING_COLUMNS) -> pd.DataFrame:
    """One row per setting (the distinct values of the columns ``by``): ``<metric>_mean``,
    ``<metric>_std`` (sample std over seeds, NaN for one seed) of every :data:`METRICS` entry,
    ``runs``, ``seeds``, ``repeated_seeds`` (runs whose seed another run of the setting already
    has), ``failures``, ``study``, ``bytes_scope`` (``protocol`` when every run listed its
    exchanges, else ``total``) and ``client_statistics`` (the distinct values, `` / ``-joined)."""
    rows = []
    for key, group in runs.groupby(list(by), dropna=False, sort=True):
        row = dict(zip(by, key))
        row["study"] = ",".join(sorted({s for s in group["study"] if s}))
        for metric in METRICS:
            values = group[metric].to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            row[f"{metric}_mean"] = float(finite.mean()) if len(finite) else math.nan
            row[f"{metric}_std"] = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
        row["runs"] = len(group)
        row["seeds"] = " ".join(str(s) for s in sorted(group["seed"]))
        row["repeated_seeds"] = int(group["seed"].duplicated().sum())  # e.g. two sweeps of one setting
        row["failures"] = int(group["failures"].sum())
        row["bytes_scope"] = "protocol" if (group["bytes_scope"] == "protocol").all() else "total"
        row["client_statistics"] = " / ".join(sorted(set(group["client_statistics"])))
        rows.append(row)
    return pd.DataFrame(rows)


def varying(frame: pd.DataFrame, columns: Iterable[str] = SETTING_COLUMNS) -> list[str]:
    """The columns of ``columns`` with more than one distinct value in ``frame``."""
    return [c for c in columns if c in frame and frame[c].nunique(dropna=False) > 1]
