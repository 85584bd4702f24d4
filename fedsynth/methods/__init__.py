"""Federated method plugins, chosen by config (``conf/method/*.yaml``, key ``_target_``)."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from fedsynth.methods.base import (
    MESSAGE_TYPES,
    ClientFailure,
    Communicator,
    FederatedMethod,
    NotEnoughClients,
    ReplySchema,
    ServerResult,
    UnansweredMessage,
    arrays_of,
    config_of,
    failure_summary,
    make_content,
    metrics_of,
    usable_replies,
)

__all__ = [
    "MESSAGE_TYPES",
    "ClientFailure",
    "Communicator",
    "FederatedMethod",
    "NotEnoughClients",
    "ReplySchema",
    "ServerResult",
    "UnansweredMessage",
    "arrays_of",
    "build_method",
    "config_of",
    "failure_summary",
    "make_content",
    "metrics_of",
    "usable_replies",
]


def build_method(config: Mapping[str, Any]) -> FederatedMethod:
    """Instantiate the method named by ``config["_target_"]`` (``"package.module.Class"``) with the
    remaining keys as keyword arguments. Keys starting with ``_`` other than ``_target_`` and the
    descriptive key ``name`` are not passed."""
    if "_target_" not in config:
        raise ValueError(f"method config needs a '_target_' key naming the class; got {sorted(config)}")
    module_name, _, class_name = str(config["_target_"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import method class {config['_target_']!r}: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, FederatedMethod)):
        raise ValueError(f"{config['_target_']!r} is not a FederatedMethod subclass")
    kwargs = {k: v for k, v in config.items() if not k.startswith("_") and k != "name"}
    return cls(**kwargs)
