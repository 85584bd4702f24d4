"""fedsynth.reporting.fronts: points from results records, non-dominated fronts, the best
accuracy under an |SPD| bound, the Markdown table and the figure."""

from __future__ import annotations

import math

import pytest

from fedsynth.reporting.fronts import best_accuracy_at, front_points, front_row, fronts_markdown, pareto_front, plot_fronts


def record(method: str, accuracy: float, spd: float, eod: float = 0.1, seed: int = 0, split: str = "iid", **knobs) -> dict:
    config = {
        "method": {"name": method, **knobs},
        "partition": {"scheme": split, "dirichlet_alpha": 0.5},
        "dataset": {"name": "law_school_race"},
        "seed": seed,
    }
    return {"dataset": "law_school_race", "method": method, "seed": seed, "config": config,
            "accuracy": accuracy, "spd": spd, "eod": eod}


def test_front_row_names_the_method_and_its_knobs() -> None:
    row = front_row(record("single_shot", 0.9, -0.05, rho_o=10.0, fairness="dp_gap", fairness_temperature=0.1,
                           server_rho=0.0, synthetic_labels="balanced", synthetic_size=800, k_max=1000))
    assert row["method"] == "single_shot" and row["abs_spd"] == 0.05
    assert row["setting"] == "fairness=dp_gap fairness_temperature=0.1 rho_o=10.0 server_rho=0.0 synthetic_labels=balanced synthetic_size=800 k_max=1000"
    assert front_row(record("centralized", 0.9, 0.1, variant="exponentiated_gradient", eg_eps=0.01))["method"] == "centralized EG"
    assert front_row(record("centralized", 0.9, 0.1, variant="plain", fairness="covariance", rho=10.0))["setting"] == "rho=0.0"
    assert front_row(record("fedavg", 0.9, 0.1, split="dirichlet"))["split"] == "dirichlet α=0.5"


def test_points_average_seeds_and_the_front_keeps_the_non_dominated() -> None:
    runs = [
        record("fairfed", 0.90, 0.10, seed=0, beta=0.0), record("fairfed", 0.88, 0.12, seed=1, beta=0.0),  # (0.89, 0.11)
        record("fairfed", 0.86, 0.04, beta=1.0),   # on the front
        record("fairfed", 0.85, 0.05, beta=2.0),   # dominated by beta=1
        record("fairfed", 0.80, 0.01, beta=5.0),   # on the front
        record("fairfed", 0.80, 0.02, beta=9.0),   # dominated (equal accuracy, less fair)
    ]
    points = front_points(runs)
    zero = points[points["setting"] == "beta=0.0"].iloc[0]
    assert zero["accuracy_mean"] == pytest.approx(0.89) and zero["abs_spd_mean"] == pytest.approx(0.11)
    assert zero["seeds"] == 2 and zero["accuracy_std"] == pytest.approx(math.sqrt(2) * 0.01)
    front = pareto_front(points)
    assert list(front["setting"]) == ["beta=5.0", "beta=1.0", "beta=0.0"]
    best = best_accuracy_at(points, 0.05)
    assert list(best["setting"]) == ["beta=1.0"]
    assert best_accuracy_at(points, 0.001).empty


def test_markdown_and_figure(tmp_path) -> None:
    runs = [
        record("single_shot", 0.88, 0.015, rho_o=10.0), record("single_shot", 0.89, 0.04, rho_o=1.0),
        record("fedavg", 0.90, 0.10),
        record("fedavg", 0.87, 0.12, split="dirichlet"),
    ]
    points = front_points(runs)
    table = fronts_markdown(points)
    assert "### Law School (race), iid" in table and "### Law School (race), dirichlet α=0.5" in table
    assert "| single_shot | 88.00 (\\|SPD\\| 0.015; rho_o=10.0) | 89.00 (\\|SPD\\| 0.040; rho_o=1.0) |" in table
    assert "| fedavg | — | — |" in table
    path = plot_fronts(points, tmp_path / "fronts.png")
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no runs"):
        front_points([])


def test_knobs_without_effect_make_one_setting() -> None:
    runs = [
        record("centralized", 0.90, 0.20, variant="fair", fairness=f, fairness_temperature=0.1, rho=0.0)
        for f in ("covariance", "dp_gap")
    ] + [record("centralized", 0.88, 0.05, variant="fair", fairness="covariance", fairness_temperature=t, rho=10.0) for t in (0.1, 1.0)]
    points = front_points(runs)
    assert sorted(points["setting"]) == ["fairness=covariance rho=10.0", "rho=0.0"]
    assert list(points["seeds"]) == [1, 1]


def test_fedsynth_compare_draws_the_fronts(tmp_path) -> None:
    import json

    from fedsynth.comparison import main

    runs = [record("single_shot", 0.88, 0.015, seed=s, rho_o=10.0, fairness="dp_gap", fairness_temperature=0.1) for s in (0, 1)]
    runs += [record("fedavg", 0.90, 0.10, seed=s) for s in (0, 1)]
    for index, run in enumerate(runs):
        folder = tmp_path / "runs" / str(index)
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(run))
    assert main(["--fronts", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out"), "--name", "fronts"]) == 0
    table = (tmp_path / "out" / "fronts.md").read_text(encoding="utf-8")
    assert "| single_shot | 88.00 ± 0.00 (\\|SPD\\| 0.015; fairness=dp_gap fairness_temperature=0.1 rho_o=10.0) |" in table
    assert (tmp_path / "out" / "fronts.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "fronts.csv").read_text().count("\n") == 1 + 2


def test_comparison_labels_and_statistics_of_the_new_settings() -> None:
    from fedsynth.federated.experiment import compose_experiment
    from fedsynth.reporting.results import client_statistics, method_setting

    def setting(*overrides: str) -> str:
        return method_setting({"dataset": "law_school_race", "seed": 0, "config": compose_experiment(list(overrides))})

    assert setting("method.synthetic_size=800") == "single_shot ρ_o=10 N_s=small k_max=1000"  # the paper's, unchanged
    assert (setting("method.synthetic_size=800", "method.fairness=dp_gap", "method.fairness_temperature=0.1", "method.server_rho=10")
            == "single_shot dp_gap τ=0.1 ρ_o=10 server_rho=10 N_s=small k_max=1000")
    assert setting("method=centralized", "method.variant=fair", "method.fairness=eo_covariance") == "centralized fair eo_covariance ρ=10"
    assert setting("method=fair_fate") == "fair_fate λ0=0.5 β0=0.9 R=20"
    info = {"client_statistics": ["metrics.num-examples"], "rounds": 20, "server_privileges": ["validation rows (x, s, y): 96"]}
    assert client_statistics({"method": "fair_fate", "info": info, "config": {}}) == (
        "num-examples (every round, 20×); server holds validation rows (x, s, y): 96"
    )
