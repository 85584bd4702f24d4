"""fedsynth.reporting.fronts: points from results records, non-dominated fronts, the best
accuracy under an |SPD| bound, the Markdown table and the figure."""

from __future__ import annotations

import json
import math

import pytest

from fedsynth.reporting.fronts import (
    best_accuracy_at, front_points, front_references, front_row, fronts_markdown, pareto_front, plot_fronts,
)


def record(method: str, accuracy: float, spd: float, eod: float = 0.1, seed: int = 0, split: str = "iid",
           constant: float | None = None, **knobs) -> dict:
    config = {
        "method": {"name": method, **knobs},
        "partition": {"scheme": split, "dirichlet_alpha": 0.5},
        "dataset": {"name": "law_school_race"},
        "seed": seed,
    }
    run = {"dataset": "law_school_race", "method": method, "seed": seed, "config": config,
           "accuracy": accuracy, "balanced_accuracy": accuracy - 0.2, "spd": spd, "eod": eod}
    if constant is not None:
        run["reference"] = {"constant": {"accuracy": constant}}
    return run


def test_front_row_names_the_method_and_its_knobs() -> None:
    row = front_row(record("single_shot", 0.9, -0.05, rho_o=10.0, fairness="dp_gap", fairness_temperature=0.1,
                           server_rho=0.0, synthetic_labels="balanced", synthetic_size=800, k_max=1000, label_epsilon=1.0))
    assert row["method"] == "single_shot" and row["abs_spd"] == 0.05
    assert json.loads(row["knobs"]) == {"fairness": "dp_gap", "fairness_temperature": 0.1, "rho_o": 10.0, "server_rho": 0.0,
                                        "synthetic_labels": "balanced", "synthetic_size": 800, "k_max": 1000}
    assert front_row(record("centralized", 0.9, 0.1, variant="exponentiated_gradient", eg_eps=0.01))["method"] == "centralized exponentiated_gradient"
    assert json.loads(front_row(record("centralized", 0.9, 0.1, variant="fair", fairness="covariance", rho=0.0))["knobs"]) == {"rho": 0.0}
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
    zero = points[points["setting"] == "beta=0"].iloc[0]
    assert zero["accuracy_mean"] == pytest.approx(0.89) and zero["abs_spd_mean"] == pytest.approx(0.11)
    assert zero["seeds"] == 2 and zero["accuracy_std"] == pytest.approx(math.sqrt(2) * 0.01)
    front = pareto_front(points)
    assert list(front["setting"]) == ["beta=5", "beta=1", "beta=0"]
    best = best_accuracy_at(points, 0.05)
    assert list(best["setting"]) == ["beta=1"]
    assert best_accuracy_at(points, 0.001).empty


def test_markdown_and_figure_with_the_references(tmp_path) -> None:
    runs = [
        record("single_shot", 0.88, 0.015, rho_o=10.0, constant=0.885), record("single_shot", 0.89, 0.04, rho_o=1.0, constant=0.885),
        record("fedavg", 0.90, 0.10, constant=0.885),
        record("fedavg", 0.87, 0.12, split="dirichlet"),
        record("centralized", 0.905, 0.2, variant="plain", rho=10.0),  # the reference, not a point
    ]
    points = front_points(runs)
    references = front_references(runs)
    assert set(points["method"]) == {"single_shot", "fedavg"}
    assert list(references["method"]) == ["constant classifier", "centralized plain"]  # iid only: dirichlet has neither
    table = fronts_markdown(points, references=references)
    assert "### Law School (race), iid" in table and "### Law School (race), dirichlet α=0.5" in table
    # single_shot's 88.00 % at |SPD| 0.015 is below the constant classifier's 88.50 % at |SPD| 0: ▽
    assert "| single_shot | 88.00 ▽ (\\|SPD\\| 0.015; rho_o=10) | 89.00 (\\|SPD\\| 0.040; rho_o=1) |" in table
    assert "| *constant classifier* | 88.50 (\\|SPD\\| 0.000) | 88.50 (\\|SPD\\| 0.000) |" in table
    assert "| *centralized plain* | — | — |" in table  # |SPD| 0.2 meets neither bound
    assert "| *constant classifier* | 50.00 (\\|SPD\\| 0.000) | 50.00 (\\|SPD\\| 0.000) |" in table  # balanced accuracy
    assert "| fedavg | — | — |" in table and "best balanced accuracy at" in table
    path = plot_fronts(points, tmp_path / "fronts.png", references)
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no runs"):
        front_points([])


def test_knobs_without_effect_make_one_setting() -> None:
    runs = [
        record("centralized", 0.90, 0.20, variant="fair", fairness=f, fairness_temperature=0.1, rho=0.0)
        for f in ("covariance", "dp_gap")
    ] + [record("centralized", 0.88, 0.05, variant="fair", fairness="covariance", fairness_temperature=t, rho=10.0) for t in (0.1, 1.0)]
    points = front_points(runs)
    assert sorted(points["setting"]) == ["fairness=covariance rho=10", "rho=0"]
    assert list(points["seeds"]) == [1, 1] and set(points["method"]) == {"centralized fair"}


def test_a_plugin_method_is_one_front_of_its_own_knobs() -> None:
    """A method the reports never heard of: its points are its own settings that vary."""
    runs = [record("fedprox", 0.9 - mu / 10, 0.1 - mu / 20, seed=s, mu=mu, rounds=20) for mu in (0.0, 0.1, 1.0) for s in (0, 1)]
    points = front_points(runs)
    assert sorted(points["setting"]) == ["mu=0", "mu=0.1", "mu=1"] and set(points["seeds"]) == {2}


def test_fedsynth_compare_draws_the_fronts_and_warns_of_missing_seeds(tmp_path, capsys) -> None:
    from fedsynth.comparison import main

    runs = [record("single_shot", 0.88, 0.015, seed=s, rho_o=10.0, fairness="dp_gap", fairness_temperature=0.1) for s in (0, 1)]
    runs += [record("fedavg", 0.90, 0.10, seed=s) for s in (0, 1, 2)]
    for index, run in enumerate(runs):
        folder = tmp_path / "runs" / str(index)
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(run))
    assert main(["--fronts", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out"), "--name", "fronts"]) == 0
    table = (tmp_path / "out" / "fronts.md").read_text(encoding="utf-8")
    assert "| single_shot | 88.00 ± 0.00 (\\|SPD\\| 0.015; default) |" in table
    assert table.startswith("**Warning: points have 2/3 seeds: 1 of 2 have fewer than 3 (single_shot default")
    assert "warning: points have 2/3 seeds" in capsys.readouterr().err
    assert (tmp_path / "out" / "fronts.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "fronts.csv").read_text().count("\n") == 1 + 2


def test_method_settings_come_from_the_methods_own_config() -> None:
    """The method's keys, minus those mirroring the run's seed and the shared model and federation
    settings; nothing per method in the reporting code."""
    from fedsynth import api
    from fedsynth.reporting.results import client_statistics, method_settings

    def settings(*overrides: str) -> dict:
        config = api.check(api.compose(list(overrides))).to_dict()
        return method_settings({"dataset": "law_school_race", "config": config})

    single_shot = settings("method=single_shot_paper", "method.synthetic_size=800", "seed=3")
    assert single_shot["synthetic_size"] == 800 and single_shot["rho_o"] == 10.0
    assert not {"seed", "fit_intercept", "min_clients", "_target_", "name"} & set(single_shot)
    assert set(settings("method=fair_fate")) >= {"lambda0", "beta0", "rounds", "lr", "validation_fraction"}
    assert "fit_intercept" in settings("method=fedavg", "method.fit_intercept=false")  # set apart from model's: a knob
    info = {"client_statistics": ["metrics.num-examples"], "client_messages": 40, "server_privileges": ["validation rows (x, s, y): 96"]}
    per_client = [{"client_id": 0}, {"client_id": 1}]
    assert client_statistics({"method": "fair_fate", "info": info, "config": {}, "per_client": per_client}) == (
        "num-examples (in each of 20 replies per client); server holds validation rows (x, s, y): 96"
    )


def test_fronts_split_by_a_nested_method_setting(tmp_path) -> None:
    from fedsynth.reporting.fronts import fronts_by_markdown, setting_value, write_fronts

    def private(method: str, accuracy: float, spd: float, epsilon, seed: int = 0, **knobs) -> dict:
        return record(method, accuracy, spd, seed=seed, constant=0.889, privacy={"epsilon": epsilon, "delta": 1e-5}, **knobs)

    runs = [
        private("single_shot", 0.890, 0.04, 1.0, rho_o=3.0), private("single_shot", 0.894, 0.07, 1.0, seed=1, rho_o=3.0),
        private("single_shot", 0.880, 0.01, 1.0, rho_o=30.0),
        private("single_shot", 0.885, 0.03, None, rho_o=300.0),
        private("dp_suffstats", 0.892, 0.045, 1.0, rho=1.0), private("dp_suffstats", 0.900, 0.20, 4.0, rho=0.0),
        record("fedavg", 0.90, 0.15, constant=0.889),
    ]
    assert setting_value(runs[0], "privacy.epsilon") == 1.0 and setting_value(runs[-1], "privacy.epsilon") == "—"
    row = front_row(runs[3], "privacy.epsilon")
    assert row["split"] == "iid, privacy.epsilon=null" and json.loads(row["by"]) is None
    points = front_points(runs, "privacy.epsilon")
    assert set(points["split"]) == {"iid, privacy.epsilon=1", "iid, privacy.epsilon=4", "iid, privacy.epsilon=null",
                                    "iid, privacy.epsilon=—"}
    table = fronts_by_markdown(points, "privacy.epsilon").splitlines()
    header = next(line for line in table if line.startswith("| method"))
    assert header == "| method | privacy.epsilon=1 | privacy.epsilon=4 | privacy.epsilon=— | privacy.epsilon=null |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in table if line.startswith("| ") and "---" not in line}
    assert rows["single_shot"][0] == "88.00 (0.010)"  # ρ_o = 3 averages |SPD| 0.055 over its two seeds
    assert rows["dp_suffstats"][0] == "89.20 (0.045)" and rows["dp_suffstats"][1] == "— (fairest: 90.00 at 0.200)"
    assert rows["dp_suffstats"][2].strip() == "" and rows["single_shot"][3].startswith("88.50")
    assert rows["*constant classifier*"][0] == "88.90 (0)"
    paths = write_fronts(runs, tmp_path, "fronts", by="privacy.epsilon")
    assert "### Law School (race): best accuracy at" in paths["markdown"].read_text(encoding="utf-8").split("### Law School (race), iid")[0]
