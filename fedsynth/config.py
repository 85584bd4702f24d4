"""The experiment's one typed configuration: Hydra structured configs, checked once.

``conf/config.yaml`` starts from :class:`CommandConfig` (in Hydra's ConfigStore as
``fedsynth_schema``), so Hydra types every top-level key while it composes the command line:
``federation.timeout_s=soon`` or an unknown key is a composition error, which the commands turn
into one line (:func:`describe_hydra_error`). The ``dataset``, ``method`` and ``engine`` groups
are mappings: the dataset spec checks its own (:meth:`fedsynth.data.DatasetSpec.from_config`),
and a ``_target_`` section is typed against the settings of its class (:func:`settings_schema`,
OmegaConf's own validation) and built by ``hydra.utils.instantiate``.

An :class:`Experiment` is what the federation runs and carries to the clients (the command's
config without ``engine``). Each range rule of its sections is in that section's
``__post_init__``; :func:`experiment_from_mapping` is the one route from a mapping (the composed
config, the JSON a client receives) to an :class:`Experiment`.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException


@dataclass
class PartitionConfig:
    """``partition``: how the dataset is split into clients (:mod:`fedsynth.data.partition`)."""

    scheme: str = "iid"
    test_fraction: float = 0.2
    dirichlet_alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.scheme not in ("iid", "dirichlet"):
            raise ValueError(f"partition.scheme={self.scheme!r}: must be iid or dirichlet")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"partition.test_fraction={self.test_fraction:g}: must be between 0 and 1")
        if not (math.isfinite(self.dirichlet_alpha) and self.dirichlet_alpha > 0):
            raise ValueError(f"partition.dirichlet_alpha={self.dirichlet_alpha:g}: must be > 0")


@dataclass
class FederationConfig:
    """``federation``: what the server requires of the clients and their replies."""

    min_clients: int = 1
    timeout_s: float = 3600.0
    report_metrics: bool = True
    max_abs_x: float = 1.0e6
    max_test_rows: int = 100_000_000

    def __post_init__(self) -> None:
        if self.min_clients < 1:
            raise ValueError(f"federation.min_clients={self.min_clients}: must be >= 1")
        for key in ("timeout_s", "max_abs_x"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"federation.{key}={value:g}: must be > 0")
        if self.max_test_rows < 1:
            raise ValueError(f"federation.max_test_rows={self.max_test_rows}: must be >= 1")


@dataclass
class ModelConfig:
    """``model``: the logistic model every method fits."""

    fit_intercept: bool = True


MAX_SEED = 2**64 - 1
"""The largest seed ``torch.Generator.manual_seed`` takes."""


@dataclass
class Experiment:
    """One experiment, as the federation runs it and every client receives it."""

    dataset: Dict[str, Any] = MISSING
    method: Dict[str, Any] = MISSING
    seed: int = 0
    data_dir: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)

    def __post_init__(self) -> None:
        clients = self.dataset.get("num_clients") if isinstance(self.dataset, dict) else None
        largest = MAX_SEED - (clients if isinstance(clients, int) and clients > 0 else 0)
        if not 0 <= self.seed <= largest:
            raise ValueError(
                f"seed={self.seed}: must be between 0 and {largest} (client c seeds torch with seed + c, "
                "at most 2**64 - 1); pick a smaller seed"
            )

    def to_dict(self) -> dict[str, Any]:
        """The experiment as plain JSON-ready values."""
        return dataclasses.asdict(self)


@dataclass
class CommandConfig(Experiment):
    """The ``fedsynth`` command's config: the experiment, the ``engine`` that runs it, and the
    ``study`` a preset names (labels and sizes for the reports, ``conf/study``)."""

    engine: Dict[str, Any] = MISSING
    study: Optional[Dict[str, Any]] = None


EXPERIMENT_KEYS = tuple(item.name for item in dataclasses.fields(Experiment))
SCHEMA_NAME = "fedsynth_schema"
ConfigStore.instance().store(name=SCHEMA_NAME, node=CommandConfig)


def experiment_from_mapping(mapping: Mapping[str, Any]) -> Experiment:
    """The :class:`Experiment` of a mapping (a composed config, with or without ``engine``, or the
    experiment a message carries): typed by OmegaConf against the dataclass, each section's rules
    run once; ``ValueError`` with one line naming the key."""
    values = {key: mapping[key] for key in EXPERIMENT_KEYS if key in mapping}
    if OmegaConf.is_config(mapping):
        values = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value for key, value in values.items()}
    try:
        typed = OmegaConf.merge(OmegaConf.structured(Experiment), values)
        return OmegaConf.to_object(typed)
    except OmegaConfBaseException as error:
        raise ValueError(describe_omegaconf_error(error)) from None


def settings_schema(cls: type) -> type:
    """A structured config of the settings ``cls`` is built with: a plain dataclass of the
    parameters of ``cls`` with their annotated types and, where it takes ``**settings``, of its
    ``settings_type`` dataclass; nested settings (a dataclass-typed parameter) as nested schemas,
    ``_target_`` allowed everywhere. OmegaConf types a method's or engine's config with it
    (:func:`typed_settings`)."""
    fields: dict[str, tuple[str, Any, Any]] = {"_target_": ("_target_", Optional[str], field(default=None))}
    sources = [cls]
    while sources:
        source = sources.pop()
        hints = typing.get_type_hints(source if dataclasses.is_dataclass(source) else source.__init__)
        for name, parameter in inspect.signature(source).parameters.items():
            if parameter.kind is parameter.VAR_KEYWORD and hasattr(cls, "settings_type"):
                sources.append(cls.settings_type)
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or name in fields:
                continue
            hint = _structured_type(hints.get(name, Any))
            default = parameter.default
            factory = _default_factory(source, name)
            if factory is not None:
                spec = field(default_factory=factory)
            elif default is parameter.empty:
                spec = field(default=MISSING)
            elif dataclasses.is_dataclass(default) and dataclasses.is_dataclass(hint):
                spec = field(default_factory=hint)  # the nested schema's defaults are the class's
            elif isinstance(default, (dict, list)):
                spec = field(default_factory=lambda value=default: value)
            else:
                spec = field(default=default)
            fields[name] = (name, hint, spec)
    return dataclasses.make_dataclass(f"{cls.__name__}Settings", list(fields.values()))


def _default_factory(source: type, name: str) -> Any:
    """The ``default_factory`` of dataclass ``source``'s field ``name``, if it has one."""
    if not dataclasses.is_dataclass(source):
        return None
    found = next((item for item in dataclasses.fields(source) if item.name == name), None)
    return None if found is None or found.default_factory is dataclasses.MISSING else found.default_factory


def _structured_type(hint: Any) -> Any:
    """The type OmegaConf checks a value of annotation ``hint`` against: the primitives, optional
    primitives, nested settings and mappings; anything else is not type-checked (``Any``)."""
    options = [option for option in typing.get_args(hint) if option is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if len(options) == 1 and len(typing.get_args(hint)) == 2:
            inner = _structured_type(options[0])
            return Any if inner is Any else Optional[inner]
        return Any
    if hint in (int, float, bool, str):
        return hint
    if dataclasses.is_dataclass(hint):
        return settings_schema(hint)
    if (typing.get_origin(hint) or hint) in (dict, Mapping, typing.Mapping):
        return Dict[str, Any]
    return Any


def typed_settings(cls: type, section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (a ``_target_`` config section without its descriptive ``name``) checked and
    converted by OmegaConf against :func:`settings_schema` of ``cls``: an unknown key or a value
    of the wrong type is a ``ValueError`` naming ``section.key``; an integer for a float setting
    becomes a float."""
    try:
        typed = OmegaConf.merge(OmegaConf.structured(settings_schema(cls)), dict(values))
    except OmegaConfBaseException as error:
        raise ValueError(describe_omegaconf_error(error, section)) from None
    return {key: _without_empty_targets(value) for key, value in OmegaConf.to_container(typed).items() if key in values}


def _without_empty_targets(value: Any) -> Any:
    """``value`` without the ``_target_: None`` the schema gives a nested section that names no
    class (``method.privacy``: a mapping the class converts itself)."""
    if not isinstance(value, dict):
        return value
    return {key: _without_empty_targets(item) for key, item in value.items() if not (key == "_target_" and item is None)}


def build(section: str, config: Mapping[str, Any], base: type | None = None) -> Any:
    """The object of a ``_target_`` config ``section`` (``method``, ``engine``): its settings
    typed (:func:`typed_settings`), then ``hydra.utils.instantiate`` (nested ``_target_``
    settings included); the descriptive key ``name`` is not a setting. ``ValueError`` with one
    line naming the key, or the class's own message."""
    target = config.get("_target_")
    try:
        cls = get_class(str(target))
    except Exception as error:  # Hydra wraps the import error
        raise ValueError(f"{section}._target_={target!r}: cannot import it ({error}); pick a {section}= from conf/{section}/") from None
    if base is not None and not issubclass(cls, base):
        raise ValueError(f"{section}._target_={target!r}: not a {base.__name__}")
    settings = typed_settings(cls, section, {key: value for key, value in config.items() if key != "name"})
    try:
        return instantiate(settings, _convert_="all")
    except InstantiationException as error:
        raise ValueError(f"{section} ({config.get('name', cls.__name__)}): {error.__cause__ or error}") from None


def describe_omegaconf_error(error: OmegaConfBaseException, section: str = "") -> str:
    """One line for OmegaConf's multi-line error: the full key and value and what the value must
    be, or, for an unknown key, the nearest valid keys."""
    key = ".".join(part for part in (section, str(getattr(error, "full_key", "") or "")) if part)
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, ConfigKeyError) or " not in " in message:
        return unknown_key_message(key, getattr(error, "parent_node", None))
    expected = next((text for name, text in _TYPE_NAMES.items() if f"converted to {name}" in message or f"valid {name.lower()}" in message), None)
    if expected:
        return f"{key}={getattr(error, 'value', None)!r}: must be {expected}"
    return f"{key}: {message}"


_TYPE_NAMES = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false", "Bool": "true or false", "String": "a string"}


def unknown_key_message(full_key: str, parent: Any) -> str:
    """``section.key: no such key`` and the nearest valid keys of its section (else all of them)."""
    section, _, key = full_key.rpartition(".")
    known = sorted(str(name) for name in parent.keys() if not str(name).startswith("_")) if OmegaConf.is_dict(parent) else []
    near = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    prefix = f"{section}." if section else ""
    hint = f"did you mean {' or '.join(prefix + name for name in near)}?" if near else f"its keys: {', '.join(prefix + name for name in known)}"
    return f"{full_key}: no such key; {hint}"
