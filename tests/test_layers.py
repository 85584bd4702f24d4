"""The layer rules (issue 23): docs/architecture.md's layer table is the import-linter contract of
pyproject.toml (which ``.ci/run`` checks with ``lint-imports``), and only ``fedsynth.flower``
imports Flower's non-public modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomli

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_FLOWER = ("flwr.app", "flwr.clientapp", "flwr.serverapp", "flwr.simulation")
"""Flower's public API modules (its documentation's API reference); ``flwr.serverapp.strategy``'s
submodules are not among them."""


def contracts() -> list[dict]:
    return tomli.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_architecture_table_is_the_import_linter_contract() -> None:
    layers = next(contract for contract in contracts() if contract["id"] == "layers")["layers"]
    expected = [sorted(re.split(r"\s*[:|]\s*", layer)) for layer in layers]
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("| layer | packages | what it is |")[1].split("\n\n")[0]
    rows = [line.split("|")[2] for line in table.strip().splitlines()[1:]]
    assert [sorted(re.findall(r"`(fedsynth[\w.]*)`", row)) for row in rows] == expected
    for contract in contracts():
        if contract["id"] != "layers":
            assert f"- {contract['name']}" in text, contract["name"]


def test_only_the_adapter_imports_flowers_non_public_modules() -> None:
    found = {}
    for path in sorted((ROOT / "fedsynth").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("flwr") and name not in PUBLIC_FLOWER:
                    found.setdefault(str(path.relative_to(ROOT)), set()).add(name)
    assert set(found) == {"fedsynth/flower.py"}, found


def test_flowers_python_entry_point_of_the_simulation_is_there() -> None:
    """The simulation engine runs on ``flwr.simulation.run_simulation``, which Flower 1.42 marks
    deprecated: this fails when it is gone or its parameters change."""
    import inspect

    from flwr.simulation import run_simulation

    parameters = inspect.signature(run_simulation).parameters
    assert {"server_app", "client_app", "num_supernodes", "backend_config"} <= set(parameters)
