"""fedsynth: fair single-shot federated learning with synthetic data.

Implements Wu, Curtis & Robinson (2024), "Using Synthetic Data to Mitigate Unfairness and
Preserve Privacy through Single-Shot Federated Learning".

Layout: ``fedsynth.data`` (datasets, encoding, client partitions), ``fedsynth.core`` (the
logistic model, implicit differentiation, Algorithm 1), ``fedsynth.metrics`` (accuracy,
fairness, privacy), ``fedsynth.methods`` (federated method plugins), ``fedsynth.federated``
(message format, engines, Flower apps) and ``fedsynth.cli`` (the Hydra command).
"""

__version__ = "0.1.0"
