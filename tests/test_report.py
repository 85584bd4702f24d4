"""``fedsynth-report``: fixed results.json files -> CSV, the Table 2 Markdown table, PNG figures."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pandas as pd
import pytest

from fedsynth.callbacks import count_sweep_jobs, progress_line, sweep_points, threads_per_job
from fedsynth.report import main
from fedsynth.reporting.collect import group_summary, load_runs, summarize
from fedsynth.reporting.report import build_report
from fedsynth.reporting.results import NoResultsError
from fedsynth.reporting.paper import SMALL_SIZES, TABLE2
from fedsynth.reporting.tables import format_mean_std, table2_markdown, target_checks
from omegaconf import OmegaConf

NUM_CLIENTS = {"law_school_race": 2, "law_school_gender": 2, "dutch_gender": 4, "synthetic": 3}
CONSTANT = {"law_school_race": 0.8897, "law_school_gender": 0.8897, "dutch_gender": 0.52, "synthetic": 0.5}
"""The constant classifier's accuracy the records carry (about the data's majority shares)."""


def record(dataset: str, *, rho_o: float, rho_s: float = 0.0, size="full", seed: int = 0,
           accuracy: float = 0.8, spd: float = 0.1, lambda_theta: float = 1e-3, study: str = "table2",
           fit_intercept: bool = True) -> dict:
    """A results.json as the fedsynth command writes it (the keys the report reads)."""
    labels = "copy" if size == "full" else "balanced"
    config = {
        "dataset": {"name": dataset, "num_clients": NUM_CLIENTS[dataset]},
        "method": {
            "name": "single_shot", "rho_o": rho_o, "rho_s": rho_s, "lambda_x": 1e-4, "lambda_theta": lambda_theta,
            "synthetic_size": size, "synthetic_labels": labels, "init": "gaussian", "k_max": 1000, "lr": 0.05,
            "inner_max_iter": 100, "fit_intercept": fit_intercept, "seed": seed,
        },
        "model": {"fit_intercept": fit_intercept},
        "partition": {"scheme": "iid"},
        "seed": seed,
        "study": {"name": study, "n_s": "full" if size == "full" else "small"},
    }
    return {
        "dataset": dataset, "method": "single_shot", "engine": "inprocess", "config": config, "seed": seed,
        "accuracy": accuracy, "balanced_accuracy": 0.6, "auc": 0.8, "auc_error_bound": 0.001,
        "spd": spd, "covariance": spd / 10, "eod": spd / 2, "min_distance": 0.5,
        "client_min": {"accuracy": accuracy - 0.01, "spd": spd - 0.02}, "client_max": {"accuracy": accuracy + 0.01, "spd": spd + 0.02},
        "reference": {"constant": {"accuracy": CONSTANT[dataset], "spd": 0.0, "balanced_accuracy": 0.5}},
        "per_client": [{"client_id": c} for c in range(NUM_CLIENTS[dataset])], "failures": [],
        "bytes_up": 1, "bytes_down": 1, "round_trips": 1, "wall_seconds": 2.0, "timings": {"compute_s": 0.5},
        "theta": [0.0],
    }


def reference_record(dataset: str, seed: int, accuracy: float = 0.9, spd: float = 0.2, fit_intercept: bool = True) -> dict:
    """A centralized plain run (+experiment=reference) of the same split."""
    run = record(dataset, rho_o=0.0, seed=seed, accuracy=accuracy, spd=spd, fit_intercept=fit_intercept, study="reference")
    run["method"] = "centralized"
    run["config"]["method"] = {"name": "centralized", "variant": "plain", "rho": 10.0, "lambda_theta": 1e-3,
                               "fit_intercept": fit_intercept}
    return run


def write(folder: Path, records: list[dict]) -> Path:
    for index, content in enumerate(records):
        path = folder / str(index) / "results.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(content))
    return folder


def table2_records() -> list[dict]:
    """Every Table 2 cell, two seeds: seed 0 the paper's value - 0.5 (acc.) / - 0.01 (SPD),
    seed 1 + 0.5 / + 0.01, so the mean is exactly the paper's number and the std 0.7071 / 0.01414."""
    records = []
    for kind, datasets in TABLE2.items():
        for dataset, cells in datasets.items():
            size = "full" if kind == "full" else SMALL_SIZES[dataset]
            for rho, (acc, spd) in cells.items():
                for seed, sign in ((0, -1), (1, 1)):
                    records.append(record(dataset, rho_o=rho, size=size, seed=seed,
                                          accuracy=(acc + sign * 0.5) / 100, spd=spd + sign * 0.01))
    return records


def figure2_records() -> list[dict]:
    grid = (0.0, 10.0, 100.0)
    return [
        record("law_school_race", rho_o=o, rho_s=s, seed=seed, lambda_theta=1e-4, study="figure2",
               accuracy=0.88 - 0.01 * math.log10(1 + o) - 0.02 * math.log10(1 + s) + 0.001 * seed,
               spd=0.45 / (1 + o) + 0.01 * seed)
        for o in grid for s in grid for seed in (0, 1)
    ]


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    width, height = struct.unpack(">II", data[16:24])
    return width > 200 and height > 200 and path.stat().st_size > 10_000


# ----------------------------------------------------------------------------- collecting


def test_runs_and_summary_over_seeds(tmp_path):
    write(tmp_path, table2_records())
    runs = load_runs([tmp_path])
    assert len(runs) == 2 * 3 * 5 * 2
    assert set(runs["n_s"]) == {"N", "800", "1200"} and set(runs["n_s_kind"]) == {"full", "small"}
    summary = summarize(runs)
    assert len(summary) == 2 * 3 * 5 and set(summary["runs"]) == {2}
    cell = summary[(summary["dataset"] == "dutch_gender") & (summary["n_s_kind"] == "small") & (summary["rho_o"] == 10)]
    assert cell["accuracy_mean"].item() == pytest.approx(0.7667)
    assert cell["accuracy_std"].item() == pytest.approx(0.005 * math.sqrt(2))
    assert cell["spd_mean"].item() == pytest.approx(0.0478)
    assert cell["seeds"].item() == "0 1"


def test_no_results_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(NoResultsError):
        load_runs([tmp_path])
    assert main([str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Table 2


def test_table2_markdown_puts_the_papers_numbers_beside_ours(tmp_path):
    write(tmp_path, table2_records())
    text = table2_markdown(summarize(load_runs([tmp_path])))
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:7] == ["N_s", "ρ_o", "Law School (race) acc. % (ours)", "paper", "bal. acc. %", "SPD (ours)", "paper"]
    assert "Law School (gender) acc. % (ours)" in header and "Dutch (gender) acc. % (ours)" in header
    assert len(lines) == 2 + 10  # header, separator, 2 sizes x 5 rho_o (no reference runs given)
    first = [cell.strip() for cell in lines[2].strip("|").split("|")]
    # the constant classifier (88.97 % on Law School) weakly dominates every Law School cell below it: ▽
    assert first == [
        "N^train", "0", "88.44 ± 0.71 ▽", "88.44", "60.00 ± 0.00", "0.4566 ± 0.0141", "0.4566",
        "87.04 ± 0.71 ▽", "87.04", "60.00 ± 0.00", "0.1320 ± 0.0141", "0.1320",
        "78.21 ± 0.71", "78.21", "60.00 ± 0.00", "0.2098 ± 0.0141", "0.2098",
    ]
    last = [cell.strip() for cell in lines[-1].strip("|").split("|")]
    assert last[:2] == ["N^train,small", "10000"] and last[2:4] == ["84.30 ± 0.71 ▽", "84.30"]
    assert last[10] == "0.0080 ± 0.0141"
    assert "▽: the constant classifier" in text
    # means equal the paper's: every target check passes
    assert text.count("✓") == 6 and "✗" not in text


def test_target_check_fails_when_worse_than_the_paper(tmp_path):
    records = [r for r in table2_records() if not (r["config"]["method"]["rho_o"] == 10 and r["dataset"] == "law_school_gender")]
    records += [record("law_school_gender", rho_o=10.0, seed=s, accuracy=0.90, spd=0.05) for s in (0, 1)]
    write(tmp_path, records)
    checks = {c["dataset"]: c for c in target_checks(summarize(load_runs([tmp_path])))}
    assert checks["law_school_gender"]["accuracy_ok"] and not checks["law_school_gender"]["spd_ok"]
    assert checks["law_school_race"]["accuracy_ok"] and checks["law_school_race"]["spd_ok"]


def test_variants_get_separate_tables(tmp_path):
    records = [record("law_school_race", rho_o=r, fit_intercept=f, accuracy=0.8 + 0.01 * f)
               for r in (0.0, 10.0) for f in (True, False)]
    write(tmp_path, records)
    text = table2_markdown(summarize(load_runs([tmp_path])))
    assert "fit_intercept = true" in text and "fit_intercept = false" in text
    assert "81.00" in text and "80.00" in text


def test_runs_that_differ_in_their_inner_solver_get_separate_tables(tmp_path):
    """Today's results carry the L-BFGS settings as the ``inner`` section of the method."""
    records = []
    for max_iter in (50, 100):
        for rho_o in (0.0, 10.0):
            run = record("law_school_race", rho_o=rho_o, accuracy=0.8 + max_iter / 10_000)
            del run["config"]["method"]["inner_max_iter"]
            run["config"]["method"]["inner"] = {"max_iter": max_iter, "tolerance_grad": 1e-7}
            records.append(run)
    write(tmp_path, records)
    text = table2_markdown(summarize(load_runs([tmp_path])))
    assert text.count("inner = ") == 2 and "80.50" in text and "81.00" in text


def test_binary_runs_get_no_per_group_table(tmp_path):
    """Per-group rows are for k > 2 groups: with two, SPD and EOD already are the two rates' gaps."""
    records = [record("law_school_race", rho_o=r) for r in (0.0, 10.0)]
    for run in records:
        run["groups"] = {g: {"n": 100.0, "positive_rate": 0.5, "true_positive_rate": 0.6, "accuracy": 0.8} for g in ("s1", "s0")}
    write(tmp_path / "sweep", records)
    runs = load_runs([tmp_path / "sweep"])
    assert "group_s1_accuracy" in runs.columns and group_summary(runs).empty
    build_report([tmp_path / "sweep"], tmp_path / "report", make_plots=False)
    assert not (tmp_path / "report" / "groups.csv").exists()
    assert "## Groups" not in (tmp_path / "report" / "report.md").read_text()


def test_formatting():
    assert format_mean_std(0.87912, 0.0012, 2, 100) == "87.91 ± 0.12"
    assert format_mean_std(0.5, math.nan, 3) == "0.500"
    assert format_mean_std(math.nan, math.nan, 3) == "—"


# ----------------------------------------------------------------------------- the whole report


def test_report_writes_tables_and_readable_pngs(tmp_path):
    sweep = write(tmp_path / "sweep", table2_records() + figure2_records())
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"runs.csv", "summary.csv", "table2.md", "report.md"} <= names
    pngs = sorted(out.glob("*.png"))
    kinds = {p.name.split("_")[0].split(".")[0] for p in pngs}
    assert kinds == {"heatmap", "trends", "tradeoff"}
    assert all(is_png(p) for p in pngs)
    heatmaps = [p for p in pngs if p.name.startswith("heatmap")]
    assert len(heatmaps) == 1 and "law_school_race" in heatmaps[0].name  # only the figure2 runs vary rho_s
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 60 + 18
    report = (out / "report.md").read_text()
    assert "## Table 2" in report and "## Figure 2" in report and "![heatmap" in report
    heading, table2 = (out / "table2.md").read_text().strip().split("\n\n", 1)
    assert heading == "### Table 2" and table2 in report  # the same table under the page's one heading
    assert report.count("Table 2\n") == 1


def test_report_default_folder_and_no_plots(tmp_path, capsys):
    sweep = write(tmp_path / "sweep", [record("synthetic", rho_o=r, size=80, study="smoke") for r in (0.0, 100.0)])
    assert main([str(sweep), "--no-plots"]) == 0
    out = sweep / "report"
    assert (out / "report.md").exists() and not list(out.glob("*.png")) and not (out / "table2.md").exists()
    printed = capsys.readouterr().out
    assert "| ρ_o |" in printed and str(out / "runs.csv") in printed


def test_build_report_on_result_files_directly(tmp_path):
    sweep = write(tmp_path / "sweep", [record("synthetic", rho_o=r, size=80) for r in (0.0, 10.0, 100.0)])
    result = build_report(sorted(sweep.rglob("results.json")), tmp_path / "out")
    assert len(result["runs"]) == 3 and any(p.name == "trends.png" for p in result["files"])


# ----------------------------------------------------------------------------- callbacks


def test_sweep_job_count_and_progress_line():
    config = OmegaConf.create(
        {"hydra": {"sweeper": {"params": {"method.rho_o": "0,10,100", "seed": "0,1,2"}},
                   "overrides": {"task": ["seed=0", "dataset=law_school_race", "+experiment=table2"]}}}
    )
    assert count_sweep_jobs(config) == 3  # the command line's seed=0 replaces the preset's seeds
    line = progress_line(3, 1, 8, 120.0)
    assert "4/8 points (50%)" in line and "1 failed" in line and "2m00s elapsed" in line and "~2m00s left" in line


def test_sweep_points_are_the_basic_sweepers_product():
    points = sweep_points(["method.rho_o=0,10", "seed=0,1", "dataset=dutch_gender", "seed=3", "+experiment=table2"])
    assert points == [
        ["method.rho_o=0", "seed=3", "dataset=dutch_gender", "+experiment=table2"],
        ["method.rho_o=10", "seed=3", "dataset=dutch_gender", "+experiment=table2"],
    ]  # a later seed replaces the earlier sweep; keys keep the order they first appeared in
    with pytest.raises(ValueError, match="cannot sweep method.rho_o"):
        sweep_points(["method.rho_o=interval(0,1)"])


def test_threads_per_job():
    sequential = OmegaConf.create({"hydra": {"launcher": {"_target_": "BasicLauncher"}}})
    assert threads_per_job(sequential, cpu_count=8) is None
    for n_jobs, threads in ((2, 4), (-1, 1), (16, 1), (-2, 1)):
        parallel = OmegaConf.create({"hydra": {"launcher": {"n_jobs": n_jobs}}})
        assert threads_per_job(parallel, cpu_count=8) == threads


def test_figure2_sweep_gets_heatmaps_and_the_papers_remark_but_no_table2(tmp_path):
    sweep = write(tmp_path / "sweep", figure2_records())
    out = tmp_path / "report"
    (out).mkdir()
    (out / "table2.md").write_text("stale")  # left by an earlier report: removed
    result = build_report([sweep], out)
    assert not result["table2"] and not (out / "table2.md").exists()
    assert [p.name for p in out.glob("heatmap_*.png")] == ["heatmap_law_school_race.png"]
    # (0, 0): 0.880 / 0.881 -> 0.8805; (10, 0): 0.88 - 0.01 log10(11) + 0.0005
    drop = 100 * 0.01 * math.log10(11)
    assert f"a drop of {drop:.2f} points (paper: 0.55%)" in result["report"]


def test_a_reused_sweep_folder_counts_only_the_current_multirun(tmp_path, capsys):
    from types import SimpleNamespace

    from fedsynth.reporting.report import sweep_timing
    from fedsynth.callbacks import SweepProgress

    sweep = tmp_path / "sweep"
    callback = SweepProgress()
    plan = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "sweeper": {"params": {"seed": "0,1"}},
                                       "overrides": {"task": []}}})
    done = SimpleNamespace(status=SimpleNamespace(name="COMPLETED"))
    for _ in range(2):  # two multiruns into the same folder (as conf/experiment/comparison.yaml does)
        callback.on_multirun_start(plan)
        for num in (0, 1):
            job = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "mode": "MULTIRUN", "job": {"num": num},
                                              "runtime": {"output_dir": str(sweep / str(num))}}})
            callback.on_job_start(job)
            callback.on_job_end(job, job_return=done)
    err = capsys.readouterr().err
    assert err.count("2/2 points (100%)") == 2 and "3/2" not in err and "4/2" not in err
    assert len((sweep / ".sweep" / "jobs.jsonl").read_text().splitlines()) == 4
    (timing,) = sweep_timing([sweep])
    assert (timing["planned"], timing["finished"], timing["failed"]) == (2, 2, 0)


def test_repeated_seeds_are_flagged(tmp_path):
    write(tmp_path / "a", [record("law_school_race", rho_o=0.0, seed=0)])
    write(tmp_path / "b", [record("law_school_race", rho_o=0.0, seed=0)])
    result = build_report([tmp_path], tmp_path / "out", make_plots=False)
    assert result["summary"]["repeated_seeds"].tolist() == [1]
    assert "repeat a seed" in result["report"]


# ----------------------------------------------------------------------------- issue 21 / 24: references, any method


def baseline_record(method: str, seed: int, accuracy: float, **settings) -> dict:
    """A results.json of a method the report has no code for: its settings are its config's keys."""
    run = record("law_school_race", rho_o=0.0, seed=seed, accuracy=accuracy, study="")
    run["method"] = method
    run["config"]["method"] = {"_target_": f"plugins.{method}.Method", "name": method, "seed": seed,
                               "fit_intercept": True, **settings}
    return run


def test_reference_rows_sit_beside_the_points_of_the_same_split_and_seeds(tmp_path):
    runs = [record("law_school_race", rho_o=r, seed=s, accuracy=0.885 + 0.01 * (r == 0), size=800)
            for r in (0.0, 10.0) for s in (0, 1)]
    runs += [reference_record("law_school_race", s, accuracy=0.90 + 0.002 * s) for s in (0, 1, 2)]  # seed 2: no point has it
    sweep = write(tmp_path / "sweep", runs)
    result = build_report([sweep], tmp_path / "out", make_plots=True)
    summary, references = result["summary"], result["references"]
    assert len(summary) == 2 and set(summary["method"]) == {"single_shot"}  # the reference runs are no setting
    constant = references[references["reference"] == "constant classifier"].iloc[0]
    plain = references[references["reference"] == "centralized plain"].iloc[0]
    assert constant["accuracy_mean"] == pytest.approx(0.8897) and constant["balanced_accuracy_mean"] == 0.5
    assert plain["runs"] == 2 and plain["accuracy_mean"] == pytest.approx(0.901)  # seeds 0 and 1 only
    assert summary.set_index("rho_o")["dominated"].to_dict() == {0.0: False, 10.0: True}  # 88.5 % <= 88.97 %
    report = result["report"]
    assert "| *constant classifier* |" in report and "| *centralized plain* |" in report
    assert "88.50 ± 0.00 ▽" in report and "no centralized plain reference" not in report
    assert "compute" in report and "0.5 s of the method's compute" in report
    trends = [f for f in result["files"] if f.name.startswith("trends")]
    assert trends and all(is_png(f) for f in trends)


def test_a_sweep_without_reference_runs_says_how_to_add_them(tmp_path, capsys):
    sweep = write(tmp_path / "sweep", [record("law_school_race", rho_o=r, seed=s, size=800) for r in (0.0, 10.0) for s in (0, 1)])
    assert main([str(sweep), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "warning: no centralized plain reference for law_school_race iid" in err
    assert "fedsynth -m +experiment=reference dataset=law_school_race seed=0,1 partition.scheme=iid model.fit_intercept=true" in err
    assert main(["--reference-overrides", str(sweep)]) == 0
    assert capsys.readouterr().out.strip() == "dataset=law_school_race seed=0,1 partition.scheme=iid model.fit_intercept=true"


def test_a_baseline_sweep_reports_its_own_settings_and_no_single_shot_fields(tmp_path, capsys):
    runs = [baseline_record("fedavg", s, 0.9, rounds=20, local_epochs=1, lr=0.1, batch_size=64, lambda_theta=1e-3) for s in (0, 1)]
    sweep = write(tmp_path / "sweep", runs)
    assert main([str(sweep), "--no-plots"]) == 0
    report = (sweep / "report" / "report.md").read_text()
    fixed = next(line for line in report.splitlines() if line.startswith("Fixed:"))
    assert "rounds = 20" in fixed and "batch_size = 64" in fixed
    for single_shot_field in ("N_s", "k_max", "inner_max_iter", "synthetic_labels", "ρ_o"):
        assert single_shot_field not in report


def test_a_plugin_sweep_is_grouped_by_its_own_knobs_and_short_points_are_flagged(tmp_path, capsys):
    """issue 24: a FedProx μ sweep was one row ("4 runs, seeds 0 0 1 1"); each μ is a setting, and
    a point with fewer seeds than the others is named."""
    runs = [baseline_record("fedprox", s, 0.9 - mu, mu=mu, rounds=20) for mu in (0.0, 0.1) for s in (0, 1, 2)]
    runs = [r for r in runs if not (r["config"]["method"]["mu"] == 0.1 and r["seed"] == 2)]  # μ = 0.1 lacks seed 2
    sweep = write(tmp_path / "sweep", runs)
    assert main([str(sweep), "--no-plots"]) == 0
    summary = pd.read_csv(sweep / "report" / "summary.csv")
    assert summary[["mu", "runs", "seeds"]].values.tolist() == [[0.0, 3, "0 1 2"], [0.1, 2, "0 1"]]
    err = capsys.readouterr().err
    assert "warning: settings have 2/3 seeds per point: 1 of 2 have fewer than 3 (fedprox mu=0.1" in err
    report = (sweep / "report" / "report.md").read_text()
    assert "| mu |" in report and "**Warning: settings have 2/3 seeds per point" in report
