"""The private methods end to end on the in-process engine: single_shot with ``method.privacy`` and
the private alternatives (dp_suffstats, dp_fedavg, dp_mst), their per-client privacy statements, and
the settings a private run refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedsynth.core import SynthesisConfig
from fedsynth.data.types import TabularData
from fedsynth import api
from fedsynth.api import InProcessEngine
from fedsynth.methods import build_method, make_content, metrics_of
from fedsynth.metrics.privacy import PRIVACY_KEYS
from fedsynth.privacy.accounting import NEIGHBOURING
from fedsynth.privacy.budget import ClippedBudget
from fedsynth.privacy.synthesis import private_synthesize

SMALL = ["dataset=synthetic", "dataset.generator.num_rows=1200"]  # 3 clients, 320 training rows each
PRIVATE = ["method.privacy.epsilon=1.0", "method.privacy.noise_seed=7"]


def compose_experiment(overrides: list[str]) -> api.Experiment:
    return api.check(api.compose(overrides))


def run(method: str, *overrides: str):
    config = compose_experiment([*SMALL, f"method={method}", *overrides])
    return config, InProcessEngine().run(config)


def _check_statements(outcome, epsilon: float) -> None:
    statements = outcome.info["privacy"]
    assert len(statements) == 3
    for record in statements.values():
        assert epsilon - 0.01 <= record["epsilon"] <= epsilon and record["delta"] == 1e-5
        assert record["neighbouring"] == NEIGHBOURING and record["accountant"] == "opacus.prv"
        assert record["noise"] == "noise_seed 7: reproducible, NOT private"


def test_private_single_shot_end_to_end():
    _, outcome = run(
        "single_shot_paper", "method.synthetic_size=40", "method.k_max=30", "method.rho_o=3", *PRIVATE
    )
    assert outcome.failures == [] and outcome.round_trips == 1
    assert outcome.metrics["accuracy"] > 0.7
    _check_statements(outcome, 1.0)
    assert outcome.info["synthetic_rows"] == {"1": 40, "2": 40, "3": 40}
    # the harness's report of a private client carries its test counts only: no privacy report
    assert not set(PRIVACY_KEYS) & {key.split(".", 1)[-1] for key in outcome.info["harness_statistics"]}


def test_privacy_off_is_the_plain_synthesis():
    plain = build_method(compose_experiment([*SMALL, "method.k_max=5"]).method)
    off = build_method(compose_experiment([*SMALL, "method.k_max=5", "method.privacy.epsilon=null"]).method)
    assert not off.privacy.enabled and off.synthesis_request().config == plain.synthesis_request().config


def _train() -> TabularData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    s = (torch.rand(300, generator=g, dtype=torch.float64) < 0.5).double()
    y = torch.where(x[:, 0] + s > 0.5, 1.0, -1.0).double()
    return TabularData(x, s, y, ("a", "b", "c"))


def test_private_synthesis_sends_fixed_size_rows_from_the_release():
    config = SynthesisConfig(synthetic_size=24, synthetic_labels="proportional", k_max=10)
    budget = ClippedBudget(epsilon=1.0, noise_seed=1)
    result, statement = private_synthesize(_train(), config, budget, seed=0, client_id=0)
    assert result.data.x.shape == (24, 3) and torch.isfinite(result.data.x).all()
    assert set(result.data.y.tolist()) <= {-1.0, 1.0} and set(result.data.s.tolist()) <= {0.0, 1.0}
    assert statement.epsilon <= 1.0
    # a seeded release is reproducible; the same settings without a seed are not
    again, _ = private_synthesize(_train(), config, budget, seed=0, client_id=0)
    assert torch.equal(again.data.x, result.data.x)
    fresh = [private_synthesize(_train(), config, ClippedBudget(epsilon=1.0), seed=0, client_id=0)[0].data.x for _ in range(2)]
    assert not torch.equal(*fresh)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["method.synthetic_size=full"], "synthetic_size must be an integer with privacy on"),
        (["method.synthetic_labels=copy"], "synthetic_labels must be one of"),
        (["method.synthetic_labels=noisy_proportional"], "synthetic_labels must be one of"),
        (["method.init=subsample"], "needs init=gaussian"),
        (["method.init=group_gaussian"], "needs init=gaussian"),
        (["method.keep_group_means=true"], "send each \\(s, y\\) group's exact feature moments"),
        (["method.fairness_target=0.05"], "a target is searched on the rows"),
        (["method.union_weights=noisy"], "union_weights='noisy' sends the client's size outside the privacy budget"),
        (["method.fairness=dp_gap"], "fairness must be one of"),
        (["method.privacy.clip=0"], "privacy.clip"),
        (["method.privacy.delta=2"], "privacy.delta"),
    ],
)
def test_settings_a_private_synthesis_cannot_honour_are_refused(overrides, message):
    """Under ``method.privacy`` nothing exact leaves a client beside its DP release: the settings
    that need the rows or send more (exact group moments, a size, a target searched on the rows)
    are refused, each naming its key."""
    with pytest.raises(ValueError, match=message):
        build_method(compose_experiment([*SMALL, "method=single_shot_paper", "method.privacy.epsilon=1", *overrides]).method)


def test_private_client_evaluation_reports_test_counts_only():
    method = build_method(
        compose_experiment([*SMALL, "method=single_shot_paper", "method.synthetic_size=20", "method.k_max=3", *PRIVATE]).method
    )
    from fedsynth.data import DatasetSpec, load_partition

    spec = DatasetSpec.from_config(compose_experiment(SMALL).dataset)
    data = load_partition(spec, 0, seed=0)
    state: dict[str, np.ndarray] = {}
    method.train(make_content(config=method.synthesis_request().to_config()), data, state)
    reply = method.evaluate(
        make_content(arrays={"theta": np.zeros(7)}, config=method.evaluation_config()), data, state
    )
    assert set(metrics_of(reply)).isdisjoint(PRIVACY_KEYS)


# ----------------------------------------------------------------------------- the private alternatives
def test_dp_suffstats_end_to_end_and_its_noise_free_limit():
    _, outcome = run("dp_suffstats", "method.rho=3", *PRIVATE)
    assert outcome.failures == [] and outcome.round_trips == 1 and outcome.metrics["accuracy"] > 0.7
    _check_statements(outcome, 1.0)
    assert outcome.info["client_arrays"] == ["label", "second"]


def test_dp_fedavg_end_to_end():
    _, outcome = run("dp_fedavg", "method.rounds=2", "method.sample_rate=0.1", *PRIVATE)
    assert outcome.failures == [] and outcome.round_trips == 2 and outcome.metrics["accuracy"] > 0.6
    _check_statements(outcome, 1.0)
    record = outcome.info["privacy"]["1"]
    assert record["releases"][0]["steps"] == 2 * 10 and record["releases"][0]["sample_rate"] == 0.1
    assert 0.99 <= record["epsilon"] <= 1.0
    # equal weights: no client's N leaves it
    assert outcome.info["client_statistic_values"] == 6


@pytest.mark.slow
def test_dp_mst_end_to_end():
    pytest.importorskip("mbi")
    _, outcome = run("dp_mst", "method.synthetic_size=50", "method.mst.iterations=50", "method.mst.bins=4", *PRIVATE)
    assert outcome.failures == [] and outcome.round_trips == 1 and outcome.metrics["accuracy"] > 0.6
    _check_statements(outcome, 1.0)
    assert outcome.info["privacy"]["1"]["releases"][0]["steps"] == 3


@pytest.mark.parametrize("method", ["dp_suffstats", "dp_fedavg", "dp_mst"])
def test_private_alternatives_need_an_epsilon(method):
    with pytest.raises(ValueError, match="method.privacy.epsilon must be set: .* is private only"):
        build_method(compose_experiment([*SMALL, f"method={method}", "method.privacy.epsilon=null"]).method)


def test_a_private_setting_error_is_one_line_exit_2(tmp_path):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "fedsynth.cli", f"hydra.run.dir={tmp_path}", "method.privacy.epsilon=1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    # single_shot's defaults send each (s, y) group's exact moments: refused under a privacy budget
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fedsynth: error: method (single_shot): privacy on needs init=gaussian, keep_group_means=false")
    assert "use method=single_shot_paper or method=dp_suffstats" in last

