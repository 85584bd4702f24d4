"""The paper's central claim on real data (issue 3): on Law School (race), Table 1 split, N_s = 800
balanced, ρ_s = 0, λ_θ = 1e-3, λ_x = 1e-4, k_max = 1000, ρ_o = 10 cuts the clients' pooled test |SPD| to at
most a third of its ρ_o = 0 value while losing at most 2 accuracy points (paper: 0.436 → 0.082, −0.65)."""

from __future__ import annotations

import pytest
import yaml

from fedsynth.core import SynthesisConfig, fit_server_model, synthesize
from fedsynth.data import DatasetSpec, load_dataset, partition_clients
from fedsynth.metrics import evaluation_counts, metrics_from_counts, sum_counts
from fedsynth.cli import CONFIG_DIR


def run_law_school(rho_o: float, clients) -> dict[str, float]:
    config = SynthesisConfig(
        rho_o=rho_o,
        rho_s=0.0,
        lambda_x=1e-4,
        lambda_theta=1e-3,
        synthetic_size=800,
        synthetic_labels="balanced",
        k_max=1000,
        lr=0.05,
    )
    synthetic = [synthesize(c.train, config, seed=c.client_id).data for c in clients]
    theta = fit_server_model(synthetic, config.model).theta
    return metrics_from_counts(sum_counts([evaluation_counts(config.model, theta, c.test) for c in clients]))


@pytest.mark.slow
def test_rho_o_10_cuts_spd_on_law_school_race(data_dir):
    spec = DatasetSpec.from_config(yaml.safe_load((CONFIG_DIR / "dataset" / "law_school_race.yaml").read_text()))
    clients = partition_clients(load_dataset(spec, data_dir), spec.num_clients, seed=0)
    assert [len(c.train) for c in clients] == [8319, 8319]
    unfair = run_law_school(0.0, clients)
    fair = run_law_school(10.0, clients)
    print(f"rho_o=0: {unfair}\nrho_o=10: {fair}")
    assert abs(unfair["spd"]) > 0.1, unfair
    assert abs(fair["spd"]) <= abs(unfair["spd"]) / 3, (unfair, fair)
    assert fair["accuracy"] >= unfair["accuracy"] - 0.02, (unfair, fair)
