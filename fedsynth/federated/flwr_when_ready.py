"""Flower's ``flwr`` command, started before its SuperLink is up.

``python -m fedsynth.federated.flwr_when_ready URL ARGS...`` imports the ``flwr`` command line
(about 2 s), waits until ``URL`` (the SuperLink's ``/health``) answers, then runs ``flwr ARGS...``
exactly as the ``flwr`` executable would. The simulation engine starts it together with the
SuperLink, so the two start-ups overlap instead of adding up (``flwr`` itself does not retry a
refused connection).
"""

from __future__ import annotations

import sys

from flwr.cli.app import app as flwr_app

from fedsynth.federated.processes import wait_until_ready


def main(argv: list[str] | None = None) -> None:
    """Wait for ``argv[0]`` to answer, then run ``flwr`` with ``argv[1:]``."""
    url, *arguments = sys.argv[1:] if argv is None else argv
    wait_until_ready(url)
    sys.argv = ["flwr", *arguments]
    flwr_app()


if __name__ == "__main__":
    main()
