"""``fedsynth-report``'s work: the ``results.json`` files of one or more runs / sweeps as tables
and figures a person can read at a glance (:func:`build_report`).

Writes into the output folder:

* ``runs.csv``: one row per run (settings, seed, metrics, path);
* ``summary.csv``: one row per setting, mean and std over seeds;
* ``table2.md``: the paper's Table 2 layout with the paper's numbers beside ours (when the runs
  include Table 2 settings: Law School race / gender or Dutch, rho_s = 0, N_s = N or N^small);
* ``heatmap_*.png`` (Figure 2 style; needs >= 2 rho_o and >= 2 rho_s values),
  ``trends*.png`` (Figure 3 style; needs >= 2 rho_o values), ``tradeoff*.png`` (accuracy vs |SPD|);
* ``report.md``: all of it on one page, with the sweep's wall time when the sweep ran with the
  presets' progress callback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from fedsynth.callbacks import JOBS_FILE, PLAN_FILE, STATE_DIR, format_duration, read_jobs
from fedsynth.reporting import plots
from fedsynth.reporting.collect import load_runs, summarize, varying
from fedsynth.reporting.tables import figure2_markdown, summary_markdown, table2_markdown


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


def build_report(paths: Sequence[str | Path], out_dir: str | Path, make_plots: bool = True) -> dict[str, object]:
    """Collect the runs under ``paths`` and write the report into ``out_dir``; return a dict
    with the frames (``runs``, ``summary``), the Markdown texts and the written ``files``."""
    paths = [Path(p) for p in paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(paths)
    for stale in [out / "table2.md", *out.glob("heatmap_*.png"), *out.glob("trends*.png"), *out.glob("tradeoff*.png")]:
        stale.unlink(missing_ok=True)  # from an earlier report of this folder
    summary = summarize(runs)
    files: list[Path] = []

    runs.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    files += [out / "runs.csv", out / "summary.csv"]

    table2 = table2_markdown(summary)
    if table2:
        (out / "table2.md").write_text(table2 + "\n")
        files.append(out / "table2.md")

    figures: list[Path] = []
    penalized = summary[summary["rho_o"].notna()]  # the figures are over rho_o (single_shot runs)
    if make_plots and not penalized.empty:
        figures += plots.heatmaps(penalized, out)
        figures += plots.trends(penalized, out)
        figures += plots.tradeoff(penalized, out)
    files += figures

    timings = sweep_timing(paths)
    sections = [f"# fedsynth report\n\n{len(runs)} runs, {len(summary)} settings, from: "
                + ", ".join(f"`{p}`" for p in paths)]
    repeated = int(summary["repeated_seeds"].sum())
    if repeated:
        sections.append(
            f"**Warning: {repeated} runs repeat a seed of their setting** (several sweeps of the same points?); "
            "the means and stds count them as separate runs. Report one sweep at a time to avoid this."
        )
    if int(runs["failures"].sum()):
        sections.append(f"**{int(runs['failures'].sum())} client failures** in these runs (see runs.csv).")
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
        f"Mean run time {runs['wall_seconds'].mean():.1f} s, total {format_duration(runs['wall_seconds'].sum())} "
        "of run time (the engine's wall time per run)."
    )
    if table2:
        sections.append("## Table 2\n\n" + table2_markdown(summary, title="", level=3))
    if "rho_s" in varying(summary):
        sections.append("## Figure 2\n\n" + figure2_markdown(summary))
    sections.append("## All settings\n\n" + summary_markdown(summary))
    if figures:
        sections.append("## Figures\n\n" + "\n\n".join(f"![{f.stem}]({f.name})" for f in figures))
    report = "\n\n".join(sections) + "\n"
    (out / "report.md").write_text(report)
    files.append(out / "report.md")
    return {"runs": runs, "summary": summary, "table2": table2, "report": report, "files": files}
