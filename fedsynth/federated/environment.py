"""The environment Flower's and Ray's processes need, for the engines and for a plain ``flwr run .``.

:data:`FLOWER_DEFAULTS`: telemetry and update checks off; runtime dependency installation off
(the SuperLink would otherwise ``uv sync`` the app's dependencies, a multi-GB CUDA torch, for every
run); Ray's services on 127.0.0.1 only, no usage statistics, no accelerator override warnings, no
merging of similar client log lines (each client's progress line is shown), and Ray's workers (the
client actors) at the normal scheduling priority: Ray's default ``nice`` of 15 lets every other
process on the machine take their CPU first (the in-process engine's clients run at 0).

``flwr run .`` starts its SuperLink, the simulation and Ray from the ``flwr`` process, before any
app code runs, so these values must be in that process's environment. :func:`install_site_hook`
(run by ``scripts/bootstrap.sh``) writes a ``.pth`` file into the virtual environment that sets
them, unless already set, in every Python process of that environment, and puts its ``bin``
folder first on ``PATH`` (the SuperLink starts ``flwr-simulation`` by name): ``.venv/bin/flwr run .``
needs no exports.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from typing import MutableMapping

FLOWER_DEFAULTS = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_worker_niceness": "0",
}
BIN_DIR = Path(sys.executable).parent
SITE_HOOK = "fedsynth-flower-env.pth"


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """Set every :data:`FLOWER_DEFAULTS` entry ``environ`` lacks and put :data:`BIN_DIR` first on
    ``PATH``; return ``environ``."""
    for key, value in FLOWER_DEFAULTS.items():
        environ.setdefault(key, value)
    path = environ.get("PATH", "")
    if path.split(os.pathsep)[0] != str(BIN_DIR):
        environ["PATH"] = f"{BIN_DIR}{os.pathsep}{path}" if path else str(BIN_DIR)
    return environ


def install_site_hook() -> Path:
    """Write :data:`SITE_HOOK` into this interpreter's ``site-packages``: one line that applies
    :data:`FLOWER_DEFAULTS` and the ``PATH`` entry at every interpreter start (self-contained, it
    imports nothing of fedsynth). Return its path."""
    line = (
        "import os; "
        f"[os.environ.setdefault(k, v) for k, v in {FLOWER_DEFAULTS!r}.items()]; "
        f"os.environ['PATH'] = os.pathsep.join([{str(BIN_DIR)!r}] + "
        f"[p for p in os.environ.get('PATH', '').split(os.pathsep) if p and p != {str(BIN_DIR)!r}])\n"
    )
    path = Path(sysconfig.get_paths()["purelib"]) / SITE_HOOK
    path.write_text(line, encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"wrote {install_site_hook()}")
