"""The federation layer: the method plugins as a real federated system on Flower.

* :mod:`~fedsynth.federated.messages`: payloads as Flower ``RecordDict`` messages, their sizes;
* :mod:`~fedsynth.federated.experiment`: the experiment config and Flower's run config;
* :mod:`~fedsynth.federated.client_logic` / :mod:`~fedsynth.federated.server_logic`: what
  clients and server do, shared by every engine;
* :mod:`~fedsynth.federated.client_app` / :mod:`~fedsynth.federated.server_app`: the Flower apps;
* :mod:`~fedsynth.federated.engines`: ``InProcessEngine`` and ``SimulationEngine``,
  each ``engine.run(config) -> RunOutcome``;
* :mod:`~fedsynth.federated.processes`: starting and stopping Flower's processes.

Flower is imported only inside this package.
"""

from fedsynth.federated.engines import InProcessEngine, SimulationEngine
from fedsynth.federated.outcome import RunOutcome

__all__ = ["InProcessEngine", "RunOutcome", "SimulationEngine"]
