"""The federation layer: the method plugins as a federated system on Flower, used through
:mod:`fedsynth.api` (its modules, engines and layer rules: docs/architecture.md). Flower's runtime
(``Message``, ``Context``, ``Grid``) is used only inside this package.
"""
