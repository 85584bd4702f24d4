"""fedsynth's log records in the Flower apps' processes (Ray actors, ``flwr-serverapp``,
``flwr-clientapp``), where fedsynth's loggers have no handler, go to Flower's logger and are
printed with Flower's own lines.
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
