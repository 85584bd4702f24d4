"""Reporting for fedsynth sweeps: collect ``results.json`` files (:mod:`.collect`), the paper's
numbers (:mod:`.paper`), Markdown tables (:mod:`.tables`), PNG figures (:mod:`.plots`) and Hydra
callbacks for long sweeps (:mod:`.callbacks`). The ``fedsynth-report`` command is
:func:`fedsynth.report.main`."""

from fedsynth.reporting.collect import load_runs, summarize

__all__ = ["load_runs", "summarize"]
