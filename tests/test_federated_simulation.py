"""The Flower apps on Flower's simulation engine (a private SuperLink on 127.0.0.1, Ray, one CPU
per client). Each run costs 20-60 s, so the runs are module fixtures shared by the assertions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fedsynth import api
from fedsynth.api import InProcessEngine, RunOutcome, SimulationEngine
from fedsynth.federated.messages import record_nbytes
from fedsynth.methods import make_content
from fedsynth.methods.single_shot import NUM_EXAMPLES
from federated_support import SYNTHETIC_ROWS, faulty_experiment, tiny_experiment

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def plugin_on_pythonpath():
    """The fault-injecting plugin lives in tests/: the simulated clients and the ServerApp find
    it through PYTHONPATH, like any method module outside the app bundle."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
        yield


@pytest.fixture(scope="module")
def same_run() -> tuple[RunOutcome, RunOutcome]:
    """One experiment on both engines."""
    experiment = tiny_experiment()
    return SimulationEngine().run(experiment), InProcessEngine().run(experiment)


@pytest.fixture(scope="module")
def faulty_run() -> RunOutcome:
    """4 simulated clients: client 1 crashes, client 2 answers after the timeout, client 3 sends
    NaN features; reporting off, so nothing but synthetic data and θ moves. A warm-up round
    first, so that only the sleeper misses the 10 s timeout of ``train``."""
    experiment = faulty_experiment(
        {"1": "crash", "2": "sleep", "3": "garbage"},
        "federation.timeout_s=10",
        "federation.report_metrics=false",
        sleep_s=15.0,
        warmup_timeout_s=600.0,
    )
    return SimulationEngine().run(experiment)


def test_both_engines_give_the_same_numbers(same_run: tuple[RunOutcome, RunOutcome]) -> None:
    simulation, in_process = same_run
    assert simulation.engine == "simulation" and in_process.engine == "inprocess"
    assert simulation.failures == in_process.failures == []
    # The server concatenates the clients' data in node order (random in Flower), so θ agrees
    # to rounding, and the metrics derived from it exactly or to rounding.
    np.testing.assert_allclose(simulation.theta, in_process.theta, rtol=1e-9, atol=1e-12)
    assert simulation.metrics.keys() == in_process.metrics.keys()
    for key in simulation.metrics:
        assert simulation.metrics[key] == pytest.approx(in_process.metrics[key], rel=1e-9, abs=1e-12)
    # client ids are ranks in each server's node table (Flower's node ids are random), so the
    # clients are compared as a set: the same per-client counts and bytes on both engines
    def per_client(outcome: RunOutcome) -> list:
        return sorted(
            (c["counts"]["n"], c["counts"]["correct"], sorted(c["bytes_up"].items()), sorted(c["bytes_down"].items()))
            for c in outcome.clients
        )

    assert [c["client_id"] for c in simulation.clients] == [c["client_id"] for c in in_process.clients] == [0, 1, 2]
    assert per_client(simulation) == per_client(in_process)
    assert simulation.round_trips == in_process.round_trips == 1
    assert simulation.bytes_up == in_process.bytes_up and simulation.bytes_down == in_process.bytes_down


def test_simulation_reports_engine_timings(same_run: tuple[RunOutcome, RunOutcome]) -> None:
    timings = same_run[0].timings
    assert timings["wall_s"] > timings["server_s"] > 0
    assert timings["overhead_s"] == pytest.approx(timings["wall_s"] - timings["compute_s"])


def test_faults_are_reported_and_the_run_goes_on(faulty_run: RunOutcome) -> None:
    reasons = sorted(f["reason"] for f in faulty_run.failures)
    assert len(reasons) == 3, reasons
    assert reasons[0].startswith("invalid payload: x must hold finite numbers")
    # the client's own message stays in its log: the server gets the category only
    assert reasons[1] == "train: crashed: internal: the client failed (details in the client's log)"
    assert reasons[2] == "train: no reply within 10 s"
    assert len(faulty_run.clients) == 4 and len(faulty_run.info["synthetic_rows"]) == 1


def test_only_synthetic_arrays_leave_a_simulated_client(faulty_run: RunOutcome) -> None:
    """Byte for byte: the valid client sent exactly an (N_s, d) x̂ with ŝ, ŷ and its noisy size
    (``num-examples``, the default ``union_weights: noisy``), and nothing in reply to the warm-up
    or to θ (its metrics stay local)."""
    num_features = faulty_experiment({}).dataset["generator"]["num_features"]
    expected = record_nbytes(
        make_content(
            arrays={
                "x": np.zeros((SYNTHETIC_ROWS, num_features)),
                "s": np.zeros(SYNTHETIC_ROWS),
                "y": np.zeros(SYNTHETIC_ROWS),
            },
            metrics={NUM_EXAMPLES: 0.0},
        )
    )
    valid_node = int(next(iter(faulty_run.info["synthetic_rows"])))
    client = next(c for c in faulty_run.clients if c["node"] == valid_node)
    assert client["bytes_up"] == {"query": 0, "train": expected, "evaluate": 0}
    assert faulty_run.metrics == {} and faulty_run.info["harness_statistics"] == []
    assert [c["client_id"] for c in faulty_run.clients] == [0, 1, 2, 3]  # from the server's node table


def test_a_failed_run_fails_the_engine_with_the_servers_line() -> None:
    """Every client crashes, fewer than min_clients remain: the ServerApp's one-line reason is
    what the run raises (each reason once, with the nodes it hit), not Flower's log."""
    experiment = faulty_experiment({"0": "crash", "1": "crash", "2": "crash", "3": "crash"})
    with pytest.raises(api.RunFailed) as error:
        api.run(experiment, SimulationEngine())
    message = str(error.value)
    assert "\n" not in message and message.startswith("only 0 of 4 clients gave a valid reply, min_clients=1")
    assert "nodes " in message and message.count("train: crashed: internal: the client failed") == 1
