"""Typed configuration: dataclasses built from plain mappings (YAML, JSON, a message) and back.

One route for every configuration value: a section of the experiment (``partition``,
``federation``, ``model``, see :mod:`fedsynth.federated.experiment`) or the synthesis
configuration a client receives (:class:`fedsynth.core.SynthesisConfig`) is a dataclass;
:func:`from_mapping` checks a mapping's keys and types against it once and :func:`to_mapping`
turns it back into JSON-ready values (nested dataclasses become nested mappings).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def to_mapping(config: Any) -> dict[str, Any]:
    """The fields of a dataclass instance as plain values (nested dataclasses as mappings)."""
    return dataclasses.asdict(config)


def from_mapping(cls: type[T], mapping: Mapping[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``mapping``: unknown keys, missing required keys and values of
    the wrong type raise one ``ValueError`` naming ``where.key`` and what it expects. Integers are
    accepted for float fields; missing keys take the field's default."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where} must be a mapping of keys to values, got {mapping!r}")
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in mapping:
            values[name] = _typed(hints[name], mapping[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where} lacks key {name!r}; set {where}.{name}")
    return cls(**values)


def _typed(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against (and, for int → float, converted to) the type ``hint``."""
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)
    if typing.get_origin(hint) is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    names = " or ".join("null" if option is type(None) else getattr(option, "__name__", str(option)) for option in options)
    raise ValueError(f"{where} must be {names}, got {value!r}")
