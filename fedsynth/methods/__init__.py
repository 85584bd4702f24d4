"""Federated method plugins, chosen by config (``conf/method/*.yaml``, key ``_target_``)."""

from __future__ import annotations

from typing import Any, Mapping

from fedsynth.config import build

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
    """The method of a ``method`` config (``conf/method/*.yaml``), by
    :func:`fedsynth.config.build`: typed settings, then ``hydra.utils.instantiate``."""
    return build("method", config, FederatedMethod)
