"""The Flower ClientApp: every message goes to :func:`~fedsynth.federated.client_logic.handle_client_message`.

The method that answers is chosen by the run config (``method._target_`` of the experiment), so
this file names no method. Registered message types: ``train``, ``evaluate`` and ``query``.

The client logic (torch, pandas: ≈ 2.5 s of imports) is imported with the first message, not
with this module: Flower's simulation process loads the ClientApp only to validate it before it
starts Ray, and the ServerApp's own imports then overlap Ray's start instead of preceding it.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedsynth.federated.app_logging import forward_logs_to_flower
from fedsynth.federated.experiment import experiment_from_run_config

app = ClientApp()
forward_logs_to_flower()


def _answer(message: Message, context: Context) -> Message:
    """Reply to one message with the method's answer; exceptions become Flower error replies."""
    from fedsynth.federated.client_logic import handle_client_message  # see the module docstring

    content = handle_client_message(
        message.metadata.message_type,
        message.content,
        experiment_from_run_config(context.run_config),
        context.node_config,
        context.state,
    )
    return Message(content, reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Handle a ``train`` message."""
    return _answer(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Handle an ``evaluate`` message (θ delivery)."""
    return _answer(message, context)


@app.query()
def query(message: Message, context: Context) -> Message:
    """Handle a ``query`` message."""
    return _answer(message, context)
