"""The one ``results.json`` schema: what the ``fedsynth`` command writes for a run
(:func:`results_record`) and how every report reads it back (:func:`read_results` and the field
readers below). Standard library only (and :mod:`fedsynth.metrics.counts`, plain Python), so the
command imports it without pandas or torch.

Keys (part of the interface): ``dataset``, ``method``, ``engine``, ``config`` (the resolved Hydra
config), ``seed``; the pooled test metrics ``accuracy``, ``balanced_accuracy``, ``spd``,
``covariance``, ``eod``, ``auc`` (ROC AUC of the decision values, pooled from histograms) and
``auc_error_bound`` (the most that binning can have moved it); ``client_min`` and ``client_max``
(per metric, the lowest and highest value over the clients that report it); ``reference`` (the
``constant`` classifier on the same test rows); ``groups`` (per group of the sensitive attribute,
``s1``/``s0`` for a binary one and ``s0`` .. ``s<k-1>`` for k groups, its pooled test rows, positive
rate, true-positive rate and accuracy: :func:`~fedsynth.metrics.counts.group_metrics`; ``spd`` and
``eod`` are the gaps of the first two rates, the largest gap over the groups for k > 2);
``min_distance``, ``per_client``, ``failures``,
``bytes_up``, ``bytes_down``, ``round_trips``, ``wall_seconds``, ``timings``, ``sends``, ``info``,
``theta``; ``warnings`` (values that were not finite numbers, written as null).

The file is strict JSON: a value that is not a finite number (a client without rows of one group
has no SPD of its own) is written as ``null``, listed in ``warnings`` and logged once per run.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from fedsynth.metrics.counts import METRIC_KEYS, constant_classifier, group_metrics, sum_counts
from fedsynth.reporting.paper import SMALL_SIZES

if TYPE_CHECKING:  # the writer takes an engine's outcome; readers need no engine code
    from fedsynth.outcome import RunOutcome

log = logging.getLogger("fedsynth")

RESULTS_FILE = "results.json"
CLIENT_RANGE_KEYS = ("accuracy", "balanced_accuracy", "spd", "eod", "auc")
"""The per-client metrics whose lowest and highest value over the clients ``results.json`` keeps
(``client_min``, ``client_max``)."""
EVALUATE = "evaluate"
"""The harness's final exchange (θ to the clients, their test counts back), the same for every
method: left out of a method's protocol traffic."""


class NoResultsError(FileNotFoundError):
    """No ``results.json`` under the given paths."""


def results_record(config: dict[str, Any], outcome: "RunOutcome", wall_seconds: float) -> dict[str, Any]:
    """The ``results.json`` content of one run of ``config`` (key names are part of the interface;
    every value JSON's own: see :func:`strict_json`)."""
    per_client = [
        {
            "client_id": client["client_id"],
            "node": client["node"],
            **client["metrics"],
            "bytes_up": sum(client["bytes_up"].values()),
            "bytes_down": sum(client["bytes_down"].values()),
        }
        for client in outcome.clients
    ]
    distances = [c["min_distance"] for c in per_client if c.get("min_distance") is not None]
    reported = [client["counts"] for client in outcome.clients if client.get("counts")]
    record = {
        "dataset": config["dataset"]["name"],
        "method": config["method"]["name"],
        "engine": outcome.engine,
        "config": config,
        "seed": config["seed"],
        **{key: outcome.metrics.get(key) for key in METRIC_KEYS},  # None: no client reported
        "client_min": client_extreme(per_client, min),
        "client_max": client_extreme(per_client, max),
        "reference": {"constant": constant_classifier(sum_counts(reported))} if reported else {},
        "groups": group_metrics(sum_counts(reported)) if reported else {},
        "min_distance": min(distances) if distances else None,
        "per_client": per_client,
        "failures": outcome.failures,
        "bytes_up": outcome.bytes_up,
        "bytes_down": outcome.bytes_down,
        "round_trips": outcome.round_trips,
        "wall_seconds": wall_seconds,
        "timings": outcome.timings,
        "sends": outcome.sends,
        "info": outcome.info,
        "theta": outcome.theta,
    }
    record, replaced = strict_json(record)
    if replaced:
        record["warnings"] = [f"{path} was {value}, written as null" for path, value in replaced]
        log.warning(
            "results.json: %d value(s) were not finite numbers and are written as null: %s",
            len(replaced), "; ".join(f"{path} ({value})" for path, value in replaced),
        )
    return record


def headline(record: dict[str, Any]) -> str:
    """The run's metrics in one line, as the command logs them: ``accuracy=0.8865 spd=0.0493
    covariance=0.00311 eod=0.0123 balanced_accuracy=0.6021 auc=0.8613 (constant classifier:
    accuracy=0.8897)``; ``n/a`` for a value that is not a number."""

    def shown(value: Any, digits: int) -> str:
        return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"

    digits = {"covariance": 5}
    keys = ("accuracy", "spd", "covariance", "eod", "balanced_accuracy", "auc")
    text = " ".join(f"{key}={shown(record.get(key), digits.get(key, 4))}" for key in keys)
    constant = (record.get("reference") or {}).get("constant")
    return text + (f" (constant classifier: accuracy={shown(constant['accuracy'], 4)})" if constant else "")


def client_extreme(per_client: list[dict[str, Any]], pick: Any) -> dict[str, float | None]:
    """``pick`` (``min`` or ``max``) of each :data:`CLIENT_RANGE_KEYS` metric over the clients
    whose value is a finite number (None when no client has one)."""
    extremes: dict[str, float | None] = {}
    for key in CLIENT_RANGE_KEYS:
        values = [float(c[key]) for c in per_client if isinstance(c.get(key), (int, float)) and math.isfinite(c[key])]
        extremes[key] = pick(values) if values else None
    return extremes


def strict_json(value: Any, path: str = "") -> tuple[Any, list[tuple[str, str]]]:
    """``value`` with every float that is not finite (NaN, ±Infinity: not JSON) replaced by None,
    and the ``(path, repr)`` of each replacement (paths like ``per_client[1].spd``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, [(path, repr(value))]
    if isinstance(value, dict):
        replaced: list[tuple[str, str]] = []
        clean = {}
        for key, item in value.items():
            clean[key], found = strict_json(item, f"{path}.{key}" if path else str(key))
            replaced += found
        return clean, replaced
    if isinstance(value, (list, tuple)):
        replaced, clean_items = [], []
        for index, item in enumerate(value):
            clean, found = strict_json(item, f"{path}[{index}]")
            clean_items.append(clean)
            replaced += found
        return clean_items, replaced
    return value, []


# ----------------------------------------------------------------------------- reading


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


def read_results(paths: Iterable[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, record)`` of every ``results.json`` under ``paths``; raises
    :class:`NoResultsError` if there is none and ``ValueError`` naming a file that is not one."""
    paths = list(paths)
    files = find_results(paths)
    if not files:
        raise NoResultsError(f"no {RESULTS_FILE} under {', '.join(map(str, paths))}")
    records = []
    for file in files:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read {file}: {error}") from error
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise ValueError(f"{file} is not a fedsynth results file (no 'config' mapping); "
                             "pass the folders of `fedsynth` runs")
        records.append((file, record))
    return records


# ----------------------------------------------------------------------------- fields


def method_settings(record: dict[str, Any]) -> dict[str, Any]:
    """The method's own settings, read from its resolved config (``config.method``): every key but
    ``_target_`` and ``name``, and but the keys that mirror a value set elsewhere in the config
    (same name and value at the top level or in another section, e.g. ``seed: ${seed}``,
    ``fit_intercept: ${model.fit_intercept}``, ``min_clients: ${federation.min_clients}``: the
    run's seed and the shared model and federation settings, not the method's knobs). Any method,
    a plugin's too, is described by the keys of its own ``conf/method/*.yaml``."""
    config = record["config"]
    settings = {}
    for key, value in (config.get("method") or {}).items():
        if key in ("_target_", "name"):
            continue
        elsewhere = [config[key]] if key in config and not isinstance(config[key], dict) else []
        elsewhere += [section[key] for name, section in config.items()
                      if name != "method" and isinstance(section, dict) and key in section]
        if any(other == value for other in elsewhere):
            continue
        settings[key] = value
    return settings


def synthetic_size(record: dict[str, Any]) -> tuple[str, str] | None:
    """(label, kind) of a ``synthetic_size`` setting (single_shot's N_s) in the paper's Table 1
    terms: ``("N", "full")`` for ``full``; ``auto`` (single_shot's default, resolved from d on
    the server) the rows one client sent (``info.synthetic_rows``) and ``auto``; an integer's label
    is its value and its kind ``small`` when it is the paper's N^train,small for the dataset (or the
    run's ``study.n_s`` says so), else the value again. None for a method without the setting."""
    config = record["config"]
    method = config.get("method") or {}
    if "synthetic_size" not in method:
        return None
    size = method["synthetic_size"]
    if size is None or size == "full":
        return "N", "full"
    if size == "auto":
        rows = sorted({int(n) for n in ((record.get("info") or {}).get("synthetic_rows") or {}).values()})
        return (str(rows[0]) if len(rows) == 1 else "auto"), "auto"
    size = int(size)
    study = config.get("study") or {}
    if study.get("n_s") == "small" or SMALL_SIZES.get(dataset_name(record)) == size:
        return str(size), "small"
    return str(size), str(size)


def dataset_name(record: dict[str, Any]) -> str:
    """The run's ``dataset.name``."""
    return record.get("dataset") or (record["config"].get("dataset") or {}).get("name", "")


def method_name(record: dict[str, Any]) -> str:
    """The run's ``method.name``."""
    return record.get("method") or (record["config"].get("method") or {}).get("name", "")


def split_label(record: dict[str, Any]) -> str:
    """``iid`` or ``dirichlet α=<alpha>``."""
    partition = record["config"].get("partition") or {}
    scheme = partition.get("scheme", "iid")
    if scheme == "dirichlet":
        return f"dirichlet α={partition['dirichlet_alpha']:g}"
    return str(scheme)


REFERENCE_METHOD = {"name": "centralized", "variant": "plain"}
"""The runs that are the reports' model reference (issue 21): the centralized plain model, ℓ_r on
the pooled training rows (``+experiment=reference``)."""


def is_reference(record: dict[str, Any]) -> bool:
    """Whether the run is a :data:`REFERENCE_METHOD` run."""
    method = record["config"].get("method") or {}
    return method_name(record) == REFERENCE_METHOD["name"] and method.get("variant") == REFERENCE_METHOD["variant"]


def constant_reference(record: dict[str, Any]) -> dict[str, Any]:
    """The run's constant classifier (``reference.constant``: the majority label of the pooled
    training rows, on the run's test rows); empty for a run written without it."""
    return (record.get("reference") or {}).get("constant") or {}


ROW_ARRAYS = ("x", "s", "y")
"""The payload arrays of rows, in the order they are shown."""


def payload(record: dict[str, Any]) -> str:
    """What the clients sent as the method's payload, as the server's ledger recorded it: the
    payload arrays (``info.client_arrays``; ``θ`` for the model array ``theta``) and the method's
    replies per client (``info.client_messages``), e.g. ``rows x, s, y (1 reply per client)``,
    ``θ (20 replies per client)``, ``nothing`` (no reply), or why it is not known."""
    info = record.get("info") or {}
    if "client_arrays" not in info or "client_messages" not in info:
        return "not recorded (results written before the server's ledger)"
    messages = int(info["client_messages"])
    if not messages:
        return "nothing"
    arrays = list(info["client_arrays"])
    rows = [name for name in ROW_ARRAYS if name in arrays]
    others = ["θ" if name == "theta" else name for name in arrays if name not in ROW_ARRAYS]
    names = ", ".join(([f"rows {', '.join(rows)}"] if rows else []) + others) or "no arrays"
    per_client = messages / max(1, len(record.get("per_client") or []))
    return f"{names} ({per_client:g} repl{'y' if per_client == 1 else 'ies'} per client)"


def protocol_bytes(record: dict[str, Any]) -> tuple[int, int, str]:
    """Bytes up and down of the method's protocol and ``"protocol"`` (the harness's
    ``evaluate`` exchange left out); the run's totals and ``"total"`` when the record does not
    list its exchanges (``sends``)."""
    sends = record.get("sends")
    if sends is None:
        return int(record["bytes_up"]), int(record["bytes_down"]), "total"
    kept = [send for send in sends if send["action"] != EVALUATE]
    return sum(int(s["bytes_up"]) for s in kept), sum(int(s["bytes_down"]) for s in kept), "protocol"


def client_statistics(record: dict[str, Any]) -> str:
    """The statistics that left the clients besides the payload, as the server's ledger recorded
    them (``info.client_statistics``, with the replies per client when a client sent them more
    than once), what the payload itself tells of each client (``info.disclosure``, e.g.
    single_shot's exact group moments) and what the server holds besides them
    (``info.server_privileges``, e.g. FAIR-FATE's validation rows)."""
    info = record.get("info") or {}
    if "client_statistics" not in info:
        return "not recorded"
    names = [name.split(".", 1)[-1] for name in info["client_statistics"]]
    per_client = int(info.get("client_messages") or 0) / max(1, len(record.get("per_client") or []))
    text = ", ".join(names) + (f" (in each of {per_client:g} replies per client)" if names and per_client > 1 else "") or "none"
    privileges = info.get("server_privileges") or []
    disclosed = info.get("disclosure") or {}
    told = "".join(f"; {what.replace('_', ' ')} told: {how}" for what, how in disclosed.items())
    return text + told + "".join(f"; server holds {privilege}" for privilege in privileges)


def client_mean(record: dict[str, Any], key: str) -> float:
    """The mean of a per-client metric (e.g. ``mia_auc``) over the clients that report it; NaN
    if none does."""
    values = [float(c[key]) for c in record.get("per_client") or [] if c.get(key) is not None]
    return sum(values) / len(values) if values else math.nan
