"""Names a package exports from its modules, imported when first used (PEP 562), so that importing
one light module of the package does not import its heavy ones (torch, Flower)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package`` that imports each exported name from its module
    (``sources``: name → module, relative to the package) when it is first asked for."""

    def get(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{sources[name]}"), name)

    return get
