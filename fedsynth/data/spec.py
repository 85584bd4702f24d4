"""Declarative dataset descriptions: which file, which label and sensitive column, and how every
feature is encoded.

A :class:`DatasetSpec` is built from the plain mapping of one ``conf/dataset/*.yaml`` file. All
encoding constants (numeric centre and scale, category levels) are written in that file, so every
client encodes its rows identically without sharing any statistic at run time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedsynth.data.errors import DataError

Scalar = str | int | float | bool

TABLE = "table"
SYNTHETIC = "synthetic"
DATASET_KINDS = (TABLE, SYNTHETIC)
FEATURE_TYPES = ("numeric", "binary", "categorical")


def _check_keys(where: str, cfg: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Reject keys a spec section does not know (usually typos)."""
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise DataError(f"{where}: unknown key(s) {unknown}; allowed keys are {list(allowed)}")


def _require_mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DataError(f"{where} must be a mapping, got {type(value).__name__}: {value!r}")
    return value


def _require_scalar(where: str, value: Any) -> Scalar:
    if value is None or not isinstance(value, (str, int, float, bool)):
        raise DataError(f"{where} must be a string or number, got {value!r}")
    return value


def _require_float(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _require_int(where: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _require_name(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(f"{where} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class LabelSpec:
    """The label column, two-valued; rows equal to ``positive`` get y = +1, the others y = -1."""

    column: str
    positive: Scalar


@dataclass(frozen=True)
class SensitiveSpec:
    """The sensitive attribute, in one of two forms.

    * Binary (``privileged``): one two-valued column; rows equal to ``privileged`` get s = 1, the
      others s = 0.
    * k ≥ 2 groups (``groups``): one or several columns; group g is the g-th entry of ``groups``
      (one value per column, in the order of ``columns``), and a row whose values equal that entry
      gets s = g. Several columns make their combinations the groups (race × sex); a row that
      matches no entry is an error.
    """

    columns: tuple[str, ...]
    privileged: Scalar | None = None
    groups: tuple[tuple[Scalar, ...], ...] = ()

    @property
    def num_groups(self) -> int:
        """k, the number of groups (2 for the binary form)."""
        return 2 if self.privileged is not None else len(self.groups)

    @classmethod
    def from_config(cls, name: str, cfg: Any) -> SensitiveSpec:
        """Build and validate a spec's ``sensitive`` section: ``{column, privileged}`` (binary) or
        ``{column, groups}`` with ``column`` a name or a list of names and ``groups`` a list of k ≥ 2
        values (one column) or lists of one value per column."""
        where = f"dataset {name!r}: sensitive"
        if cfg is None:
            raise DataError(
                f"{where} is missing; set dataset.sensitive.column and dataset.sensitive.privileged (or .groups)"
            )
        cfg = _require_mapping(where, cfg)
        _check_keys(where, cfg, ("column", "privileged", "groups"))
        if cfg.get("groups") is None:
            binary = {key: value for key, value in cfg.items() if key != "groups"}
            column, privileged = _column_value(name, "sensitive", "privileged", binary)
            return cls(columns=(column,), privileged=privileged)
        if cfg.get("privileged") is not None:
            raise DataError(f"{where}: give either privileged (a binary attribute) or groups (k groups), not both")
        raw_columns = cfg.get("column")
        names = raw_columns if isinstance(raw_columns, (list, tuple)) else [raw_columns]
        if not names:
            raise DataError(f"{where}.column must be a column name or a non-empty list of them")
        columns = tuple(_require_name(f"{where}.column", column) for column in names)
        if len(set(columns)) != len(columns):
            raise DataError(f"{where}.column lists a column twice: {list(columns)}")
        entries = cfg["groups"]
        if not isinstance(entries, (list, tuple)) or len(entries) < 2:
            raise DataError(f"{where}.groups must be a list of at least 2 groups, got {entries!r}")
        groups = []
        for g, entry in enumerate(entries):
            values = entry if isinstance(entry, (list, tuple)) else [entry]
            if len(values) != len(columns):
                raise DataError(
                    f"{where}.groups[{g}] must give one value per column of {list(columns)}, got {entry!r}"
                )
            groups.append(tuple(_require_scalar(f"{where}.groups[{g}]", value) for value in values))
        spelled = [tuple(map(str, group)) for group in groups]
        if len(set(spelled)) != len(spelled):
            raise DataError(f"{where}.groups lists a group twice: {[list(group) for group in groups]}")
        return cls(columns=columns, groups=tuple(groups))


@dataclass(frozen=True)
class FeatureSpec:
    """How one CSV column becomes one or more columns of ``x``.

    ``numeric``: ``(value - center) / scale``. ``binary``: the indicator ``value == positive``,
    then ``(indicator - center) / scale``. ``categorical``: one-hot over ``levels`` (one column per
    level, named ``"column=level"``); a value outside ``levels`` is an error.
    """

    name: str
    type: str = "numeric"
    center: float = 0.0
    scale: float = 1.0
    positive: Scalar | None = None
    levels: tuple[Scalar, ...] = ()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], where: str = "feature") -> FeatureSpec:
        """Build and validate one entry of a spec's ``features`` list."""
        cfg = _require_mapping(where, cfg)
        name = _require_name(f"{where}.name", cfg.get("name"))
        where = f"feature {name!r}"
        kind = cfg.get("type", "numeric")
        if kind not in FEATURE_TYPES:
            raise DataError(f"{where}: type must be one of {list(FEATURE_TYPES)}, got {kind!r}")
        if kind == "categorical":
            _check_keys(where, cfg, ("name", "type", "levels"))
            levels = cfg.get("levels")
            if not isinstance(levels, (list, tuple)) or not levels:
                raise DataError(f"{where}: a categorical feature needs a non-empty list 'levels'")
            levels = tuple(_require_scalar(f"{where}.levels", level) for level in levels)
            if len(set(map(str, levels))) != len(levels):
                raise DataError(f"{where}: 'levels' has duplicates: {list(levels)}")
            return cls(name=name, type=kind, levels=levels)
        allowed = ("name", "type", "center", "scale") + (("positive",) if kind == "binary" else ())
        _check_keys(where, cfg, allowed)
        center = _require_float(f"{where}.center", cfg.get("center", 0.0))
        scale = _require_float(f"{where}.scale", cfg.get("scale", 1.0))
        if scale <= 0:
            raise DataError(f"{where}: scale must be > 0, got {scale}")
        positive = None
        if kind == "binary":
            positive = _require_scalar(f"{where}.positive", cfg.get("positive"))
        return cls(name=name, type=kind, center=center, scale=scale, positive=positive)

    @property
    def encoded_names(self) -> tuple[str, ...]:
        """Names of the ``x`` columns this feature produces."""
        if self.type == "categorical":
            return tuple(f"{self.name}={level}" for level in self.levels)
        return (self.name,)


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the built-in biased table (see :mod:`fedsynth.data.synthetic`)."""

    seed: int = 0
    num_rows: int = 4000
    num_features: int = 5
    class_separation: float = 2.0
    rotation: float = 0.8
    sensitive_strength: float = 1.0
    num_groups: int = 2

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SyntheticSpec:
        """Build and validate a spec's ``generator`` block; missing keys take the defaults."""
        cfg = _require_mapping("generator", cfg)
        _check_keys("generator", cfg, tuple(cls.__dataclass_fields__))
        defaults = cls()
        return cls(
            seed=_require_int("generator.seed", cfg.get("seed", defaults.seed), 0),
            num_rows=_require_int("generator.num_rows", cfg.get("num_rows", defaults.num_rows), 2),
            num_features=_require_int(
                "generator.num_features", cfg.get("num_features", defaults.num_features), 2
            ),
            class_separation=_require_float(
                "generator.class_separation",
                cfg.get("class_separation", defaults.class_separation),
            ),
            rotation=_require_float("generator.rotation", cfg.get("rotation", defaults.rotation)),
            sensitive_strength=_require_float(
                "generator.sensitive_strength",
                cfg.get("sensitive_strength", defaults.sensitive_strength),
            ),
            num_groups=_require_int("generator.num_groups", cfg.get("num_groups", defaults.num_groups), 2),
        )


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset setting: where the rows come from, how they are encoded, how many clients.

    ``kind == "table"`` reads ``file`` (relative to the data directory, or absolute) and needs
    ``label`` and ``sensitive``; ``features=None`` means every other column, numeric, unscaled.
    ``kind == "synthetic"`` generates rows from ``generator`` and reads no file.
    """

    name: str
    kind: str
    num_clients: int
    file: str | None = None
    sha256: str | None = None
    label: LabelSpec | None = None
    sensitive: SensitiveSpec | None = None
    features: tuple[FeatureSpec, ...] | None = None
    generator: SyntheticSpec | None = None

    @property
    def num_groups(self) -> int:
        """k, the groups of the sensitive attribute (2 for binary specs; the synthetic table's
        ``generator.num_groups``)."""
        if self.generator is not None:
            return self.generator.num_groups
        return 2 if self.sensitive is None else self.sensitive.num_groups

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> DatasetSpec:
        """Build and validate a spec from the plain mapping of a ``conf/dataset/*.yaml`` file."""
        cfg = _require_mapping("dataset config", cfg)
        _check_keys("dataset config", cfg, tuple(cls.__dataclass_fields__))
        name = _require_name("dataset.name", cfg.get("name"))
        kind = cfg.get("kind", TABLE)
        if kind not in DATASET_KINDS:
            raise DataError(
                f"dataset {name!r}: kind must be one of {list(DATASET_KINDS)}, got {kind!r}"
            )
        num_clients = _require_int(f"dataset {name!r}: num_clients", cfg.get("num_clients"), 1)
        if kind == SYNTHETIC:
            misplaced = [
                key
                for key in ("file", "sha256", "label", "sensitive", "features")
                if cfg.get(key) is not None
            ]
            if misplaced:
                raise DataError(f"dataset {name!r}: {misplaced} are only used by kind: {TABLE}")
            generator = SyntheticSpec.from_config(cfg.get("generator") or {})
            return cls(name=name, kind=kind, num_clients=num_clients, generator=generator)

        if cfg.get("generator") is not None:
            raise DataError(f"dataset {name!r}: 'generator' is only used by kind: {SYNTHETIC}")
        file = cfg.get("file")
        if not isinstance(file, str) or not file:
            raise DataError(
                f"dataset {name!r}: no file given; set dataset.file=PATH "
                "(absolute, relative to the working directory, or a name in FEDSYNTH_DATA_DIR)"
            )
        sha256 = cfg.get("sha256")
        if sha256 is not None and not _is_sha256(sha256):
            raise DataError(f"dataset {name!r}: sha256 must be 64 hex digits, got {sha256!r}")
        label = LabelSpec(*_column_value(name, "label", "positive", cfg.get("label")))
        sensitive = SensitiveSpec.from_config(name, cfg.get("sensitive"))
        if label.column in sensitive.columns:
            raise DataError(
                f"dataset {name!r}: label and sensitive column are both {label.column!r}"
            )
        features = None
        if cfg.get("features") is not None:
            entries = cfg["features"]
            if not isinstance(entries, (list, tuple)) or not entries:
                raise DataError(f"dataset {name!r}: features must be a non-empty list or null")
            features = tuple(
                FeatureSpec.from_config(entry, f"dataset {name!r}: features[{i}]")
                for i, entry in enumerate(entries)
            )
            names = [feature.name for feature in features]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise DataError(f"dataset {name!r}: feature(s) {duplicates} listed twice")
            reserved = {label.column, *sensitive.columns} & set(names)
            if reserved:
                raise DataError(
                    f"dataset {name!r}: {sorted(reserved)} is the label or sensitive column and "
                    "cannot also be a feature"
                )
        return cls(
            name=name,
            kind=kind,
            num_clients=num_clients,
            file=file,
            sha256=sha256.lower() if sha256 else None,
            label=label,
            sensitive=sensitive,
            features=features,
        )


def _is_sha256(value: Any) -> bool:
    """Whether ``value`` is a 64-digit hexadecimal string."""
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdefABCDEF" for c in value)
    )


def _column_value(name: str, section: str, value_key: str, cfg: Any) -> tuple[str, Scalar]:
    """Read a ``{column, <value_key>}`` section (label or sensitive)."""
    where = f"dataset {name!r}: {section}"
    if cfg is None:
        raise DataError(
            f"{where} is missing; set dataset.{section}.column and dataset.{section}.{value_key}"
        )
    cfg = _require_mapping(where, cfg)
    _check_keys(where, cfg, ("column", value_key))
    if cfg.get("column") is None or cfg.get(value_key) is None:
        raise DataError(
            f"{where} needs both dataset.{section}.column and dataset.{section}.{value_key}"
        )
    column = _require_name(f"{where}.column", cfg["column"])
    return column, _require_scalar(f"{where}.{value_key}", cfg[value_key])
