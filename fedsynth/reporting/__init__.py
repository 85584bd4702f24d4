"""Reporting on fedsynth runs, for ``fedsynth-report`` and ``fedsynth-compare`` alike: the one
``results.json`` schema (:mod:`.results`, what the ``fedsynth`` command writes and every reader
reads), runs and per-setting summaries as tables (:mod:`.collect`), the paper's numbers
(:mod:`.paper`), Markdown tables (:mod:`.tables`), PNG figures (:mod:`.plots`), the sweep report
(:mod:`.report`) and the method comparison (:mod:`.comparison`). The command-line entry points are
:mod:`fedsynth.report` and :mod:`fedsynth.comparison`. Nothing is imported here, so the
``fedsynth`` command can use :mod:`.results` without pandas."""
