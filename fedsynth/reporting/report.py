"""``fedsynth-report``'s work: the ``results.json`` files of one or more runs / sweeps as tables
and figures a person can read at a glance (:func:`build_report`).

Writes into the output folder:

* ``runs.csv``: one row per run (settings, seed, metrics, path);
* ``summary.csv``: one row per setting, mean and std over seeds; ``references.csv``: the reference
  rows (the constant classifier, the centralized plain model) of each dataset and split;
* ``groups.csv`` (runs on a sensitive attribute of k > 2 groups): per setting and group, its
  accuracy, positive rate and true-positive rate (SPD and EOD are then the largest gaps over the groups);
* ``table2.md``: the paper's Table 2 layout with the paper's numbers beside ours (when the runs
  include Table 2 settings: Law School race / gender or Dutch, rho_s = 0, N_s = N or N^small);
* ``heatmap_*.png`` (Figure 2 style; needs >= 2 rho_o and >= 2 rho_s values),
  ``trends*.png`` (Figure 3 style; needs >= 2 rho_o values), ``tradeoff*.png`` (accuracy vs |SPD|);
* ``report.md``: all of it on one page, with the sweep's wall time when the sweep ran with the
  presets' progress callback.

The centralized plain runs among the results (``+experiment=reference``) are the reference rows,
not settings of the sweep; a dataset and split without one is named, with the command that adds it
(:func:`reference_overrides`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from fedsynth.sweep_state import JOBS_FILE, PLAN_FILE, STATE_DIR, format_duration, read_jobs
from fedsynth.reporting import plots
from fedsynth.reporting.collect import (
    group_summary,
    load_runs,
    missing_references,
    reference_rows,
    seeds_warning,
    summarize,
    varying,
)
from fedsynth.reporting.tables import figure2_markdown, groups_markdown, summary_markdown, table2_markdown


def sweep_timing(paths: Sequence[Path]) -> list[dict]:
    """Wall time and job counts of the sweeps under ``paths`` that recorded their progress
    (``.sweep/plan.json`` and ``.sweep/jobs.jsonl``, written by the SweepProgress callback)."""
    found = []
    for path in paths:
        plans = [path / STATE_DIR / PLAN_FILE] if (path / STATE_DIR / PLAN_FILE).exists() else []
        if path.is_dir() and not plans:
            plans = sorted(path.rglob(f"{STATE_DIR}/{PLAN_FILE}"))
        for plan_file in plans:
            plan = json.loads(plan_file.read_text())
            jobs = read_jobs(plan_file.parent / JOBS_FILE, since=plan["start"])
            end = max((job.get("end", plan["start"]) for job in jobs), default=plan["start"])
            found.append(
                {
                    "sweep": str(plan_file.parent.parent),
                    "planned": plan.get("total"),
                    "finished": sum(1 for job in jobs if job["status"] == "COMPLETED"),
                    "failed": sum(1 for job in jobs if job["status"] == "FAILED"),
                    "wall_seconds": end - plan["start"],
                    "job_seconds": sum(job.get("seconds", 0.0) for job in jobs),
                    "cpu_seconds": sum(job.get("cpu_seconds", 0.0) for job in jobs),
                }
            )
    return found


def reference_overrides(runs: pd.DataFrame) -> list[str]:
    """The Hydra overrides of ``fedsynth -m +experiment=reference`` that cover the data settings of
    the non-reference ``runs``: their datasets, seeds, split scheme (and Dirichlet α, test
    fraction) and ``model.fit_intercept``, each a comma-separated sweep when it varies."""
    points = runs[runs["reference"] == ""]
    if points.empty:
        return []

    def values(column: str) -> str:
        return ",".join(str(v) for v in sorted(set(points[column])))

    overrides = [f"dataset={values('dataset')}", f"seed={values('seed')}"]
    schemes = sorted({p.split(" ")[0] for p in points["partition"]})
    overrides.append(f"partition.scheme={','.join(schemes)}")
    alphas = sorted({p.split("=")[1] for p in points["partition"] if p.startswith("dirichlet")})
    if alphas:
        overrides.append(f"partition.dirichlet_alpha={','.join(alphas)}")
    overrides.append(f"model.fit_intercept={','.join(str(v).lower() for v in sorted(set(points['fit_intercept'])))}")
    return overrides


def build_report(paths: Sequence[str | Path], out_dir: str | Path, make_plots: bool = True) -> dict[str, object]:
    """Collect the runs under ``paths`` and write the report into ``out_dir``; return a dict
    with the frames (``runs``, ``summary``, ``references``), the Markdown texts, the written
    ``files`` and the ``warnings`` the report states (too few seeds at some points, repeated seeds,
    points without a centralized reference)."""
    paths = [Path(p) for p in paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(paths)
    for stale in [out / "table2.md", out / "groups.csv", *out.glob("heatmap_*.png"), *out.glob("trends*.png"), *out.glob("tradeoff*.png")]:
        stale.unlink(missing_ok=True)  # from an earlier report of this folder
    points = runs[runs["reference"] == ""]
    if points.empty:  # a folder of reference runs only: they are the settings
        points = runs
    summary = summarize(points)
    references = reference_rows(runs, points)
    files: list[Path] = []

    runs.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    references.to_csv(out / "references.csv", index=False)
    files += [out / "runs.csv", out / "summary.csv", out / "references.csv"]

    groups = group_summary(points)
    if not groups.empty:
        groups.to_csv(out / "groups.csv", index=False)
        files.append(out / "groups.csv")

    table2 = table2_markdown(summary, references=references)
    if table2:
        (out / "table2.md").write_text(table2 + "\n")
        files.append(out / "table2.md")

    figures: list[Path] = []
    penalized = summary[summary["rho_o"].notna()] if "rho_o" in summary else summary.iloc[0:0]
    if make_plots and not penalized.empty:  # the figures are over rho_o (single_shot runs)
        figures += plots.heatmaps(penalized, out)
        figures += plots.trends(penalized, out, references=references)
        figures += plots.tradeoff(penalized, out, references=references)
    files += figures

    timings = sweep_timing(paths)
    sections = [f"# fedsynth report\n\n{len(points)} runs, {len(summary)} settings, from: "
                + ", ".join(f"`{p}`" for p in paths)]
    warnings = []
    short = seeds_warning(summary)
    if short:
        warnings.append(short)
    repeated = int(summary["repeated_seeds"].sum())
    if repeated:
        warnings.append(
            f"{repeated} runs repeat a seed of their setting (several sweeps of the same points?); "
            "the means and stds count them as separate runs. Report one sweep at a time to avoid this"
        )
    lacking = missing_references(references)
    if lacking and not (points is runs):
        warnings.append(
            f"no centralized plain reference for {', '.join(lacking)}: add it with `fedsynth -m +experiment=reference "
            + " ".join(reference_overrides(runs)) + f" hydra.sweep.dir=<a folder under {paths[0]}>`"
        )
    sections += [f"**Warning: {warning}.**" for warning in warnings]
    if int(points["failures"].sum()):
        sections.append(f"**{int(points['failures'].sum())} client failures** in these runs (see runs.csv).")
    if timings:
        lines = ["Sweep wall time (from the SweepProgress callback):", ""]
        for t in timings:
            lines.append(
                f"- `{t['sweep']}`: {t['finished']}/{t['planned'] or '?'} points done"
                + (f", {t['failed']} failed" if t["failed"] else "")
                + f", wall {format_duration(t['wall_seconds'])}, sum of job times {format_duration(t['job_seconds'])}, "
                f"CPU time {format_duration(t['cpu_seconds'])}"
            )
        sections.append("\n".join(lines))
    sections.append(
        f"Per run: {points['compute_seconds'].mean():.1f} s of the method's compute (the slowest client of each "
        f"exchange plus the server's own work, `timings.compute_s`), {points['wall_seconds'].mean():.1f} s of the "
        "engine's wall time (which adds starting Flower or the client processes and moving the messages); "
        f"total {format_duration(points['wall_seconds'].sum())} of wall time."
    )
    if table2:
        sections.append("## Table 2\n\n" + table2_markdown(summary, title="", level=3, references=references))
    if "rho_s" in varying(summary):
        sections.append("## Figure 2\n\n" + figure2_markdown(summary))
    sections.append("## All settings\n\n" + summary_markdown(summary, references=references))
    if not groups.empty:
        sections.append("## Groups\n\n" + groups_markdown(groups))
    if figures:
        sections.append("## Figures\n\n" + "\n\n".join(f"![{f.stem}]({f.name})" for f in figures))
    report = "\n\n".join(sections) + "\n"
    (out / "report.md").write_text(report)
    files.append(out / "report.md")
    return {"runs": runs, "summary": summary, "references": references, "table2": table2, "report": report,
            "files": files, "warnings": warnings}
