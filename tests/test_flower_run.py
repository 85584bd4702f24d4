"""A plain ``flwr run . --stream`` on Flower's default local federation (2 simulated SuperNodes),
as docs/deployment.md tells a user to run it: the virtual environment's ``bin`` first on
``PATH`` and the documented Flower settings exported (nothing else sets them), a SuperLink that
``flwr`` starts itself, results in the documented default place; and federations the experiment
cannot run on, which fail at once with a message naming ``num-supernodes``.

Each test gets Flower's state in a temporary ``FLWR_HOME`` and the local SuperLink on free ports
(``FLWR_LOCAL_SUPERLINK_HTTP_API_PORT``, ``FLWR_LOCAL_CONTROL_API_PORT``); the SuperLink ``flwr``
leaves running is stopped by its PID afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from fedsynth.api import RunOutcome
from fedsynth.deploy import orchestration as processes
from fedsynth.deploy.orchestration import BIN_DIR, FLOWER_SETTINGS
from fedsynth.federated.experiment import APP_ROOT

pytestmark = pytest.mark.slow

TINY = "method.k_max=10 method.synthetic_size=30 method.synthetic_labels=proportional dataset.generator.num_rows=600"


@pytest.fixture
def flower_home(tmp_path: Path):
    """A private FLWR_HOME and local-SuperLink ports; afterwards the SuperLink ``flwr run``
    started (its command line names this FLWR_HOME) is stopped with all it started."""
    home = tmp_path / "flwr-home"
    home.mkdir()
    ray_tmpdir = Path(tempfile.mkdtemp(prefix="ray-"))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FLWR_", "RAY_"))}
    env.update(
        {
            **FLOWER_SETTINGS,  # docs/deployment.md: the settings to export
            "FLWR_HOME": str(home),
            "RAY_TMPDIR": str(ray_tmpdir),
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(processes.free_port()),
            "FLWR_LOCAL_CONTROL_API_PORT": str(processes.free_port()),
            "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",  # the environment activated
        }
    )
    yield env
    for pid in [pid for pid, args in _command_lines().items() if "flower-superlink" in args and str(home) in args]:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for member in family:
            with contextlib.suppress(psutil.Error):
                member.kill()
        psutil.wait_procs(family, timeout=15)
    assert not [args for args in _command_lines().values() if str(home) in args]


def _command_lines() -> dict[int, str]:
    """``{pid: command line}`` of the live processes."""
    lines = {}
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines[int(entry.parent.name)] = entry.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return lines


def flwr_run(env: dict[str, str], app: Path, *options: str) -> tuple[subprocess.CompletedProcess, float]:
    """``flwr run APP --stream OPTIONS`` with ``env``; the completed process and its wall time."""
    start = time.perf_counter()
    completed = subprocess.run(
        [str(BIN_DIR / "flwr"), "run", str(app), "--stream", *options],
        env=env, capture_output=True, text=True, timeout=600, cwd=app,
    )
    return completed, time.perf_counter() - start


def run_status(env: dict[str, str], output: str) -> str:
    """The status of the run ``output`` (``flwr run``'s) reports, from the local SuperLink."""
    run_id = int(re.search(r"Successfully started run (\d+)", output).group(1))
    return processes.run_status(None, run_id, env)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    """The app as ``flwr run .`` bundles it (staged: the checkout's .venv would cost seconds)."""
    return processes.stage_app(APP_ROOT, tmp_path_factory.mktemp("app"))


def test_flwr_run_on_flowers_default_federation(flower_home: dict[str, str], app: Path) -> None:
    completed, _ = flwr_run(flower_home, app, "--run-config", f'overrides="{TINY}"')
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert "(2 simulated SuperNodes)" in output and "2 clients (one per SuperNode)" in output
    assert re.search(r"client 0: outer iteration 10/10, P = \d", output), output[-3000:]
    assert re.search(r"client 1: outer iteration 10/10, P = \d", output), output[-3000:]
    summary = re.search(r"fedsynth: accuracy=0\.\d+, spd=-?\d\.\d+, eod=-?\d\.\d+; results: (\S+)", output)
    assert summary, output[-3000:]
    results = Path(summary.group(1))
    assert results.parent.parent == Path(flower_home["FLWR_HOME"]) / "fedsynth-results"
    outcome = RunOutcome.read_json(results)
    assert [client["client_id"] for client in outcome.clients] == [0, 1] and outcome.failures == []
    assert run_status(flower_home, output) == "finished:completed"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (  # fewer SuperNodes than the server needs
            ("--run-config", f'overrides="{TINY} federation.min_clients=3"'),
            "the federation has 2 SuperNode(s) but federation.min_clients=3",
        ),
        (  # more SuperNodes than the data can be split into
            ("--run-config", 'overrides="method.k_max=3 dataset.generator.num_rows=8"',
             "--federation-config", "num-supernodes=5 client-resources-num-cpus=1"),
            "the federation has 5 SuperNodes, one client each: use fewer (num-supernodes",
        ),
    ],
    ids=["too-few-nodes", "too-many-nodes"],
)
def test_a_federation_that_cannot_work_fails_at_once_naming_num_supernodes(
    flower_home: dict[str, str], app: Path, options: tuple[str, ...], message: str
) -> None:
    completed, seconds = flwr_run(flower_home, app, *options)
    output = completed.stdout + completed.stderr
    assert message in output, output[-3000:]
    assert run_status(flower_home, output) == "finished:failed"
    print(f"failed after {seconds:.1f} s (flwr run, SuperLink start included)")
