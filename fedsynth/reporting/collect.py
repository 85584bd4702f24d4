"""Collect ``results.json`` files (one per run, as the ``fedsynth`` command writes them) into tables:
one row per run (:func:`load_runs`) and one row per setting, mean ± std over seeds
(:func:`summarize`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from fedsynth.reporting.paper import SMALL_SIZES

RESULTS_FILE = "results.json"

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
"""Columns that define a setting; runs of one setting differ only in ``seed``."""

METRICS = ("accuracy", "spd", "abs_spd", "covariance", "eod", "min_distance", "wall_seconds")


class NoResultsError(FileNotFoundError):
    """No ``results.json`` under the given paths."""


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``results.json`` under ``paths`` (folders are searched recursively; files are taken
    as they are), sorted, without duplicates."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if path.is_file():
            found.add(path.resolve())
        elif path.is_dir():
            found.update(p.resolve() for p in path.rglob(RESULTS_FILE))
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return sorted(found)


def _n_s(dataset: str, size: Any, study: dict[str, Any]) -> tuple[str, str]:
    """(label, kind) of N_s: ``("N", "full")`` for ``full``; an integer's label is its value and its
    kind ``small`` when it is the paper's N^train,small for the dataset (or the study says so)."""
    if size is None or size == "full":
        return "N", "full"
    size = int(size)
    if study.get("n_s") == "small" or SMALL_SIZES.get(dataset) == size:
        return str(size), "small"
    return str(size), str(size)


def run_row(record: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """One run's ``results.json`` content as a flat row."""
    config = record.get("config") or {}
    method = config.get("method") or {}
    dataset = record.get("dataset") or (config.get("dataset") or {}).get("name")
    study = config.get("study") or {}
    n_s, kind = _n_s(dataset, method.get("synthetic_size", "full"), study)
    model = config.get("model") or {}
    fit_intercept = method.get("fit_intercept", model.get("fit_intercept"))

    def number(value: Any) -> float:
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan

    spd = number(record.get("spd"))
    return {
        "study": study.get("name", ""),
        "dataset": dataset,
        "engine": record.get("engine", ""),
        "method": record.get("method", method.get("name", "")),
        "n_s": n_s,
        "n_s_kind": kind,
        "synthetic_labels": method.get("synthetic_labels", ""),
        "init": method.get("init", ""),
        "rho_o": number(method.get("rho_o")),
        "rho_s": number(method.get("rho_s")),
        "lambda_theta": number(method.get("lambda_theta")),
        "lambda_x": number(method.get("lambda_x")),
        "k_max": int(method.get("k_max", -1)),
        "lr": number(method.get("lr")),
        "inner_max_iter": int(method.get("inner_max_iter", -1)),
        "fit_intercept": bool(fit_intercept) if fit_intercept is not None else True,
        "partition": (config.get("partition") or {}).get("scheme", "iid"),
        "num_clients": int((config.get("dataset") or {}).get("num_clients", len(record.get("per_client", [])))),
        "seed": int(record.get("seed", config.get("seed", 0))),
        "accuracy": number(record.get("accuracy")),
        "spd": spd,
        "abs_spd": abs(spd),
        "covariance": number(record.get("covariance")),
        "eod": number(record.get("eod")),
        "min_distance": number(record.get("min_distance")),
        "wall_seconds": number(record.get("wall_seconds")),
        "failures": len(record.get("failures") or []),
        "path": str(path.parent) if path is not None else "",
    }


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per ``results.json`` under ``paths``; raises :class:`NoResultsError` if none."""
    files = find_results(paths)
    if not files:
        raise NoResultsError(f"no {RESULTS_FILE} under {[str(p) for p in paths]}")
    rows = []
    for file in files:
        try:
            rows.append(run_row(json.loads(file.read_text()), file))
        except (json.JSONDecodeError, OSError) as error:
            raise ValueError(f"cannot read {file}: {error}") from error
    frame = pd.DataFrame(rows)
    return frame.sort_values([*SETTING_COLUMNS, "seed"], kind="stable").reset_index(drop=True)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (:data:`SETTING_COLUMNS`): ``<metric>_mean``, ``<metric>_std`` (sample
    std over seeds, NaN for one seed), ``runs``, ``seeds``, ``repeated_seeds`` (runs whose seed
    another run of the setting already has) and ``failures``."""
    groups = runs.groupby(list(SETTING_COLUMNS), dropna=False, sort=True)
    rows = []
    for key, group in groups:
        row = dict(zip(SETTING_COLUMNS, key))
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
        rows.append(row)
    return pd.DataFrame(rows)


def varying(frame: pd.DataFrame, columns: Iterable[str] = SETTING_COLUMNS) -> list[str]:
    """The columns of ``columns`` with more than one distinct value in ``frame``."""
    return [c for c in columns if c in frame and frame[c].nunique(dropna=False) > 1]
