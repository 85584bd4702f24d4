"""A real Flower deployment on this machine (``fedsynth-deploy``): SuperLink, SuperNodes and the
fleet gate started, driven through Flower's public command line (``flwr run``, ``flwr ls``,
``flwr supernode register``) and stopped with everything they started.

* :mod:`~fedsynth.deploy.cli`: the command;
* :mod:`~fedsynth.deploy.orchestration`: starting, watching and stopping Flower's processes;
* :mod:`~fedsynth.deploy.certificates`: the throw-away CA, server certificate and node keys;
* :mod:`~fedsynth.deploy.fleet_gate`: the TLS proxy that lets only the Fleet API through.
"""
