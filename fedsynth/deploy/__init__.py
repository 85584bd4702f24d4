"""A real Flower deployment on this machine (``fedsynth-deploy``, :mod:`~fedsynth.deploy.cli`):
SuperLink, SuperNodes and the fleet gate (:mod:`~fedsynth.deploy.fleet_gate`) started through
Flower's public command line (:mod:`~fedsynth.deploy.orchestration`), with throw-away TLS material
(:mod:`~fedsynth.deploy.certificates`), and stopped with everything they started."""
