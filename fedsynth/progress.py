"""How a client shows its outer iterations (no torch: the commands set it before any import of
the math).

:data:`MODES`: ``bar`` (tqdm), ``log`` (a line every 10 %), ``off``, ``auto`` (a bar when stderr
is a terminal, else log lines). A process starts in ``auto``; the in-process engine gives its
client processes its own mode (``engine.progress``), and a sweep's parallel workers, which share
one terminal, set ``log`` (:class:`fedsynth.callbacks.SweepProgress`).
"""

from __future__ import annotations

import sys

MODES = ("auto", "bar", "log", "off")
_mode = "auto"


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else ``ValueError``."""
    if mode not in MODES:
        raise ValueError(f"progress must be one of {list(MODES)}, got {mode!r}")
    return mode


def set_mode(mode: str) -> None:
    """Show this process's progress as ``mode``."""
    global _mode
    _mode = check_mode(mode)


def mode() -> str:
    """This process's mode as set (``auto`` not resolved)."""
    return _mode


def shown_as() -> str:
    """This process's mode with ``auto`` resolved: ``bar``, ``log`` or ``off``."""
    if _mode == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return _mode
