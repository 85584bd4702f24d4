"""The federation layer: the method plugins as a real federated system on Flower.

* :mod:`~fedsynth.federated.messages`: the wire format of the methods' ``RecordDict`` contents;
* :mod:`~fedsynth.federated.experiment`: the experiment as JSON and in Flower's run config;
* :mod:`~fedsynth.federated.client_logic` / :mod:`~fedsynth.federated.server_logic`: what
  clients and server do, shared by every engine;
* :mod:`~fedsynth.federated.client_app` / :mod:`~fedsynth.federated.server_app`: the ClientApp
  and the server side over Flower's ``Grid``;
* :mod:`~fedsynth.federated.inprocess` / :mod:`~fedsynth.federated.simulation`: the engines,
  ``InProcessEngine`` and ``SimulationEngine``, each ``engine.run(experiment) -> RunOutcome``;
* :mod:`~fedsynth.federated.lifeline`: processes that end with the command.

Flower's runtime is used only inside this package (the methods use its record types and FedAvg
its aggregation function, never a ``Message``, ``Context`` or ``Grid``). Use it through
:mod:`fedsynth.api`.
"""
