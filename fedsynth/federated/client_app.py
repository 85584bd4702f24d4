"""The Flower ClientApp: one function per message type, ``@app.train``, ``@app.evaluate`` and
``@app.query``, each handing its message to :func:`~fedsynth.federated.client_logic.answer_message`,
which calls the method's handler of the same name (``method.train(content, data, state)``, ...).

The method that answers is chosen by the experiment each message carries (its
``method._target_``), so this file names no method.

fedsynth's log records in the Flower apps' processes (Ray actors, ``flwr-clientapp``, and
``flwr-serverapp``, whose :mod:`fedsynth.app` imports this module), where fedsynth's loggers have
no handler, go to Flower's logger and are printed with Flower's own lines.

The client logic (torch, pandas: ≈ 2.5 s of imports) is imported with the first message, not
with this module: Flower's simulation process loads the ClientApp only to validate it before it
starts Ray, and the ServerApp's own imports then overlap Ray's start instead of preceding it.
"""

from __future__ import annotations

import logging

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp


class _ToFlowerLogger(logging.Handler):
    """Hands every record to Flower's logger (``flwr``) and its handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("flwr").handle(record)


app = ClientApp()
logging.getLogger("fedsynth").setLevel(logging.INFO)
logging.getLogger("fedsynth").addHandler(_ToFlowerLogger())
logging.getLogger("fedsynth").propagate = False  # Flower's handlers print it; the root logger's would print it twice


CLIENT_ERROR_CODE = 1001
"""The Flower error code of a fedsynth client's error reply (its reason: category and fixed text)."""


def _answer(message_type: str, message: Message, context: Context) -> Message:
    """Reply to one message of ``message_type`` with the method's answer; a failure becomes an
    error reply that carries its category only (the details go to this node's log)."""
    from fedsynth.federated.client_logic import ClientError, answer_message  # see the module docstring

    try:
        content = answer_message(message_type, message.content, context.node_config, context.state)
    except ClientError as error:
        return Message(Error(code=CLIENT_ERROR_CODE, reason=str(error)), reply_to=message)
    return Message(content, reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Handle a ``train`` message: the method's ``train``."""
    return _answer("train", message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Handle an ``evaluate`` message (θ delivery): the method's ``evaluate``."""
    return _answer("evaluate", message, context)


@app.query()
def query(message: Message, context: Context) -> Message:
    """Handle a ``query`` message: the method's ``query``."""
    return _answer("query", message, context)
