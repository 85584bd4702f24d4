"""Where fedsynth looks for data files and for the user's own configs (light: no torch, no pandas).

The one data-directory rule, for the ``fedsynth`` command, the scripts, the tests and the
benchmarks (docs/data.md): the config key ``data_dir`` when set, else ``$FEDSYNTH_DATA_DIR``,
else ``../shared/data`` beside the checkout if that folder exists. A relative ``dataset.file`` is
taken from the working directory when it is there, else from the data directory.

The user config folder (``$FEDSYNTH_CONFIG_DIR``, default ``~/.config/fedsynth``) is on Hydra's
search path (``conf/config.yaml``): ``fedsynth-spec`` writes dataset specs into its ``dataset/``
folder, and ``fedsynth dataset=NAME`` finds them there.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

DATA_DIR_ENV = "FEDSYNTH_DATA_DIR"
CONFIG_DIR_ENV = "FEDSYNTH_CONFIG_DIR"


def checkout() -> Path:
    """The repository fedsynth is installed from (``pip install -e``), else the folder above this
    package: also right in the Flower apps, which run from a copy of the package under
    ``$FLWR_HOME/apps``."""
    try:
        url = json.loads(distribution("fedsynth").read_text("direct_url.json") or "{}").get("url", "")
    except PackageNotFoundError:
        url = ""
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(url[len("file://"):]))
    return Path(__file__).resolve().parents[1]


CHECKOUT_DATA_DIR = checkout().parent / "shared" / "data"
"""The data directory when none is configured: ``../shared/data`` beside the checkout."""


def data_directory(data_dir: str | Path | None = None) -> Path | None:
    """The data directory by the rule above (``data_dir``: the config key's value), absolute, or
    ``None`` when there is none."""
    for candidate in (data_dir, os.environ.get(DATA_DIR_ENV)):
        if candidate:
            return Path(candidate).expanduser().resolve()
    return CHECKOUT_DATA_DIR if CHECKOUT_DATA_DIR.is_dir() else None


def resolve_table_file(file: str | Path, data_dir: str | Path | None = None, dataset: str = "?") -> Path:
    """The absolute path of an existing data file named ``file`` (a dataset's ``file`` key) by the
    rule above; raise ``FileNotFoundError`` with a one-line message otherwise (whether the path is
    a readable regular file is checked where it is read)."""
    path = Path(file).expanduser()
    if path.is_absolute() or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"data file not found: {path} (dataset {dataset!r}); check dataset.file and {DATA_DIR_ENV}")
        return path.resolve()
    base = data_directory(data_dir)
    if base is None or not (base / path).exists():
        where = f"nor in the data directory {base}" if base else "and no data directory is set"
        raise FileNotFoundError(
            f"dataset {dataset!r}: {file} is not in the working directory {Path.cwd()} {where}: "
            f"give dataset.file as a path, or set {DATA_DIR_ENV} (or data_dir=...) to the folder holding it"
        )
    return base / path


def user_config_dir(create: bool = True) -> Path:
    """The user config folder (``$FEDSYNTH_CONFIG_DIR``, default ``~/.config/fedsynth``, under
    ``$XDG_CONFIG_HOME`` when set); created unless ``create`` is false, as Hydra warns about a
    search-path folder that does not exist."""
    configured = os.environ.get(CONFIG_DIR_ENV)
    if configured:
        folder = Path(configured).expanduser()
    else:
        folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "fedsynth"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()
