"""Issue 11 end to end on small synthetic data: FAIR-FATE (λ0 = 0 is FedAvg, its validation
privilege and ledger), the server's fairness penalty and the new measures in single_shot, on the
in-process engine and (slow) on Flower's simulation engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsynth.data import DatasetSpec, hold_out, load_dataset, partition_clients
from fedsynth.data.errors import DataError
from fedsynth.api import InProcessEngine, RunOutcome
from fedsynth import api
from fedsynth.methods import build_method

ROWS = 1200  # 3 clients of 400 rows: 320 train / 80 test each
SMALL = ["dataset=synthetic", f"dataset.generator.num_rows={ROWS}"]
TINY_SINGLE_SHOT = [*SMALL, "method.k_max=5", "method.synthetic_size=40", "method.synthetic_labels=proportional"]


def experiment(*overrides: str) -> api.Experiment:
    return api.check(api.compose(list(overrides)))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def fedavg_run() -> RunOutcome:
    return InProcessEngine().run(experiment(*SMALL, "method=fedavg", "method.rounds=4", "partition.scheme=dirichlet"))


@pytest.fixture(scope="module")
def fair_fate_run() -> tuple[dict, RunOutcome]:
    config = experiment(*SMALL, "method=fair_fate", "method.rounds=4", "partition.scheme=dirichlet", "method.lambda0=0.8")
    return config, InProcessEngine().run(config)


# ----------------------------------------------------------------------------- FAIR-FATE
def test_fair_fate_without_its_fairness_term_is_fedavg(fedavg_run) -> None:
    off = InProcessEngine().run(
        experiment(*SMALL, "method=fair_fate", "method.rounds=4", "partition.scheme=dirichlet",
                   "method.lambda0=0", "method.validation_fraction=0")
    )
    assert np.array_equal(off.theta, fedavg_run.theta)
    assert off.metrics == fedavg_run.metrics
    assert off.bytes_up == fedavg_run.bytes_up and off.round_trips == fedavg_run.round_trips
    assert off.info["server_validation_rows"] == 0 and off.info["server_privileges"] == []


def test_fair_fate_end_to_end(fair_fate_run, fedavg_run) -> None:
    config, outcome = fair_fate_run
    assert outcome.failures == [] and outcome.round_trips == 4
    assert outcome.metrics["accuracy"] > 0.7
    assert not np.array_equal(outcome.theta, fedavg_run.theta)
    # the server validates on 10% of every client's training rows: a privilege no client statistic shows
    spec = DatasetSpec.from_config(config.dataset)
    parts = partition_clients(load_dataset(spec), spec.num_clients, seed=0, scheme="dirichlet")
    held = sum(round(0.1 * len(p.train)) for p in parts)
    assert outcome.info["server_validation_rows"] == held
    assert outcome.info["server_privileges"] == [f"validation rows (x, s, y): {held}"]
    # its clients reveal what FedAvg's do: θ_k and n_k every round
    assert outcome.info["client_statistics"] == fedavg_run.info["client_statistics"] == ["metrics.num-examples"]
    assert outcome.info["client_statistic_values"] == 4 * 3
    rounds = outcome.info["fair_fate_rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    assert [r["lambda"] for r in rounds] == pytest.approx([min(0.8 * 1.05**t, 1.0) for t in (1, 2, 3, 4)])
    assert rounds[-1]["beta"] == 0.0  # β_t decays to 0 at the last round


def test_fair_fate_needs_a_validation_set_and_known_settings() -> None:
    base = experiment(*SMALL, "method=fair_fate").method
    with pytest.raises(ValueError, match="validation_fraction > 0"):
        build_method({**base, "validation_fraction": 0.0})
    with pytest.raises(ValueError, match="fairness_metric must be one of"):
        build_method({**base, "fairness_metric": "parity"})
    with pytest.raises(ValueError, match="max_lambda"):
        build_method({**base, "max_lambda": 2.0})


def test_hold_out_is_a_seeded_disjoint_split() -> None:
    spec = DatasetSpec.from_config(experiment(*SMALL).dataset)
    train = partition_clients(load_dataset(spec), spec.num_clients, seed=0)[0].train
    kept, held = hold_out(train, 0.25, seed=3, client_id=1)
    assert len(held) == 80 and len(kept) == 240
    rows = {tuple(r) for r in torch.cat([kept.x, held.x]).tolist()}
    assert rows == {tuple(r) for r in train.x.tolist()}
    again = hold_out(train, 0.25, seed=3, client_id=1)[1]
    assert torch.equal(again.x, held.x)
    assert not torch.equal(hold_out(train, 0.25, seed=4, client_id=1)[1].x, held.x)
    with pytest.raises(DataError, match="validation_fraction"):
        hold_out(train, 1.0, seed=0, client_id=0)


# ----------------------------------------------------------------------------- single_shot
@pytest.mark.parametrize("fairness", ["eo_covariance", "dp_gap", "eo_gap"])
def test_single_shot_runs_every_measure_with_a_fair_server(fairness) -> None:
    plain = InProcessEngine().run(experiment(*TINY_SINGLE_SHOT, f"method.fairness={fairness}"))
    served = InProcessEngine().run(
        experiment(*TINY_SINGLE_SHOT, f"method.fairness={fairness}", "method.server_rho=50", "method.fairness_temperature=0.5")
    )
    assert plain.failures == served.failures == []
    assert served.round_trips == plain.round_trips == 1
    # the server's penalty needs no message of its own: the rows and the noisy size, as without it
    assert served.info["client_statistics"] == plain.info["client_statistics"] == ["metrics.num-examples"]
    assert served.info["client_arrays"] == ["s", "x", "y"]
    assert not np.array_equal(served.theta, plain.theta)


def test_bad_fairness_settings_fail_clearly() -> None:
    base = experiment(*TINY_SINGLE_SHOT).method
    with pytest.raises(ValueError, match="fairness must be one of"):
        build_method({**base, "fairness": "parity"})
    with pytest.raises(ValueError, match="server_rho"):
        build_method({**base, "server_rho": -1.0})
    with pytest.raises(ValueError, match="fairness_temperature"):
        build_method({**base, "fairness_temperature": 0.0})


# ----------------------------------------------------------------------------- Flower simulation
@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["method=fair_fate", "method.rounds=2", "partition.scheme=dirichlet", *SMALL],
        [*TINY_SINGLE_SHOT, "method.fairness=eo_gap", "method.server_rho=10", "method.fairness_temperature=0.5"],
    ],
    ids=["fair_fate", "single_shot_eo_gap_server_rho"],
)
def test_new_settings_on_the_flower_simulation_engine(overrides) -> None:
    from fedsynth.api import SimulationEngine

    config = experiment(*overrides)
    simulation = SimulationEngine().run(config)
    in_process = InProcessEngine().run(config)
    assert simulation.engine == "simulation" and simulation.failures == []
    assert simulation.round_trips == in_process.round_trips
    # Flower delivers replies in an order of its own: θ agrees to rounding
    np.testing.assert_allclose(simulation.theta, in_process.theta, rtol=1e-7, atol=1e-9)
    assert simulation.info["client_statistics"] == in_process.info["client_statistics"]
    assert simulation.metrics["accuracy"] == pytest.approx(in_process.metrics["accuracy"], abs=1e-9)
