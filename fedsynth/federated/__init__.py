"""The federation layer: the method plugins as a real federated system on Flower.

* :mod:`~fedsynth.federated.messages`: the wire format of the methods' ``RecordDict`` contents
  (serde, sizes, the server's record checks);
* :mod:`~fedsynth.federated.experiment`: the experiment config and Flower's run config;
* :mod:`~fedsynth.federated.client_logic` / :mod:`~fedsynth.federated.server_logic`: what
  clients and server do, shared by every engine;
* :mod:`~fedsynth.federated.client_app` / :mod:`~fedsynth.federated.server_app`: the Flower apps;
* :mod:`~fedsynth.federated.inprocess` / :mod:`~fedsynth.federated.simulation`: the engines,
  ``InProcessEngine`` and ``SimulationEngine``, each ``engine.run(config) -> RunOutcome``;
* :mod:`~fedsynth.federated.processes`: starting and stopping Flower's processes.

Flower's runtime is used only inside this package (the methods use its record types and FedAvg
its aggregation function, never a ``Message``, ``Context`` or ``Grid``). The names below are imported on first use, so
that a process that only launches Flower (``engine=simulation``) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "InProcessEngine": "fedsynth.federated.inprocess",
    "RunOutcome": "fedsynth.federated.outcome",
    "SimulationEngine": "fedsynth.federated.simulation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import ``InProcessEngine``, ``RunOutcome`` or ``SimulationEngine`` from its module."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
