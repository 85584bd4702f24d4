"""fedsynth's log records in the Flower apps' processes go to Flower's logger.

The ClientApp and ServerApp run in processes that Flower configures (Ray actors in simulation,
``flwr-serverapp`` / ``flwr-clientapp`` in a deployment). There fedsynth's own loggers (the
clients' progress, k/k_max and P, every 10 % of the outer iterations; the server's warnings) have
no handler; handing their records to Flower's logger (``flwr``) prints them with Flower's, and on
the simulation engine Ray forwards a client's output to the simulation's process, which shows it.
"""

from __future__ import annotations

import logging

LOGGER_NAME = "flwr"
PACKAGE_LOGGER = "fedsynth"


class _ToFlowerLogger(logging.Handler):
    """Hands every record to Flower's logger and its handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(LOGGER_NAME).handle(record)


def forward_logs_to_flower() -> None:
    """Send fedsynth's INFO and higher records to Flower's logger, once per process."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    if any(isinstance(handler, _ToFlowerLogger) for handler in logger.handlers):
        return
    logger.setLevel(logging.INFO)
    logger.addHandler(_ToFlowerLogger())
    logger.propagate = False  # Flower's handlers print it; the root logger's would print it twice
