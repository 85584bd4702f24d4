"""The client side of every engine: load the node's own data and let the method answer a message.

The Flower ClientApp's ``@app.train``, ``@app.evaluate`` and ``@app.query`` functions and the
in-process engine's client workers all call :func:`answer_message` with the message type, the
message content (a Flower ``RecordDict``), the node's config and its persistent state; it calls
the method's handler of that name, ``method.<message type>(content, data, state)``, which replies
with a ``RecordDict`` of the same form (:mod:`fedsynth.methods.base`). It knows no specific
method: the method is built from the ``method`` config of the experiment the message carries
(:func:`fedsynth.federated.messages.with_experiment`).

Where a node's data comes from (its ``node_config``):

* ``data-file`` set (deployment): the node's own CSV file, encoded with the experiment's dataset
  spec and split into train/test with the experiment's seed; ``partition-id`` (required) is the
  client's id for its random streams and its reports;
* otherwise (simulation, in-process): part ``partition-id`` of the dataset partitioned into
  ``num-partitions`` clients, as Flower's simulation sets both for every SuperNode: the federation
  decides how many clients there are (``dataset.num_clients`` only where ``num-partitions`` is
  not set).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
import traceback
from typing import Any, Mapping

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedsynth.config import Experiment
from fedsynth.data import DataError, DatasetSpec, load_csv, load_partition, split_train_test
from fedsynth.data.types import ClientPartition
from fedsynth.federated.experiment import parse_experiment
from fedsynth.federated.messages import HARNESS, split_experiment
from fedsynth.methods import MESSAGE_TYPES, FederatedMethod, build_method, metrics_of
from fedsynth.methods.base import CONTENT_RECORDS, EVALUATE

log = logging.getLogger(__name__)

NODE_DATA_KEYS = ("partition-id", "num-partitions", "data-file")
"""The ``node_config`` keys that decide a node's data."""

STATE_METHOD = "fedsynth.method-state"
STATE_COMPUTE = "fedsynth.compute-s"
STATE_POINT = "fedsynth.point"
"""The node's ``Context.state`` records: the method's state, its compute seconds per message type,
and the point of the run they belong to (a new point starts with neither)."""

ERROR_CATEGORIES = {
    "data": "the node's data does not fit the experiment's dataset spec or split",
    "config": "the node cannot use the experiment's configuration",
    "numerics": "the client's computation became non-finite",
    "resources": "the node ran out of memory",
    "internal": "the client failed",
}
"""What a client's error reply says: a category and its fixed message. The exception's own text
(which may hold data values, sizes or paths) goes only to the client's log."""


class ClientError(Exception):
    """A client's failure as the server may see it: ``"<category>: <fixed message>"``."""

    def __init__(self, category: str) -> None:
        super().__init__(f"{category}: {ERROR_CATEGORIES[category]} (details in the client's log)")
        self.category = category


EXPLAINED = ("data", "numerics")
"""Categories whose exceptions name the cause and the fix (a data error, a non-finite objective with
"lower lr or raise lambda_theta / lambda_x"): the client logs their one line, not a traceback."""


def error_category(error: BaseException) -> str:
    """The :data:`ERROR_CATEGORIES` key of an exception raised while answering a message."""
    if isinstance(error, DataError):
        return "data"
    if isinstance(error, FloatingPointError):
        return "numerics"
    if isinstance(error, MemoryError):
        return "resources"
    if isinstance(error, (ValueError, KeyError, TypeError)):
        return "config"
    return "internal"


def answer_message(
    message_type: str,
    content: RecordDict,
    node_config: Mapping[str, Any],
    state: RecordDict,
) -> RecordDict:
    """Answer one message of ``message_type`` (one of :data:`~fedsynth.methods.base.MESSAGE_TYPES`)
    on a client and return the reply content: the method's handler of that name answers the
    method's part of ``content`` (the records of :data:`~fedsynth.methods.base.CONTENT_RECORDS`)
    for the experiment the message carries (:func:`~fedsynth.federated.messages.split_experiment`).

    The method (built from the experiment's ``method`` config) and the node's data
    (:func:`load_client_data`) are made once per process and reused by every later message (and
    every later point of a sweep that shares them). ``state`` is the node's ``Context.state``
    for the run: the method's state dict lives in it between the messages of one point, with the
    seconds the method spent per message type; a message of another point starts both afresh.
    The reply is the handler's, except for ``evaluate``: when ``federation.report_metrics`` is
    on, the harness adds a ``"harness"`` record (compute seconds per message type) to it so the
    server can report per client; when it is off, the client keeps its metrics (it logs them)
    and replies with an empty message. Any failure is logged on this node (in one line when its
    category is in :data:`EXPLAINED`, else with its traceback) and raised as a
    :class:`ClientError` that carries only its category.
    """
    try:
        if message_type not in MESSAGE_TYPES:
            raise ValueError(f"message type {message_type!r} is not one of {MESSAGE_TYPES}")
        experiment_json, point, content = split_experiment(content)
        experiment = parse_experiment(experiment_json)
        method = _method(json.dumps(experiment.method, sort_keys=True))
        data = _client_data(experiment, node_config)
        if STATE_POINT not in state or state.config_records[STATE_POINT].get("point") != point:
            for name in (STATE_METHOD, STATE_COMPUTE):
                state.pop(name, None)
            state[STATE_POINT] = ConfigRecord({"point": point})
        method_state = (
            {name: array.numpy() for name, array in state.array_records[STATE_METHOD].items()}
            if STATE_METHOD in state
            else {}
        )
        start = time.perf_counter()
        reply = getattr(method, message_type)(content, data, method_state)
        elapsed = time.perf_counter() - start
        if not isinstance(reply, RecordDict):
            raise TypeError(f"method {method.name!r} answered {message_type!r} with a {type(reply).__name__}, not a RecordDict")
    except Exception as error:  # every failure: the server gets its category only
        category = error_category(error)
        if category in EXPLAINED:  # the message says what to change: one line
            log.error("client failed on %r: %s: %s", message_type, type(error).__name__, str(error).splitlines()[0] if str(error) else "")
        else:
            log.error("client failed on %r: %s", message_type, "".join(traceback.format_exception(error)).rstrip())
        raise ClientError(category) from None

    state[STATE_METHOD] = ArrayRecord({name: Array(value) for name, value in method_state.items()})
    compute = state.metric_records[STATE_COMPUTE] if STATE_COMPUTE in state else MetricRecord()
    compute[message_type] = float(compute.get(message_type, 0.0)) + elapsed
    state[STATE_COMPUTE] = compute

    if message_type != EVALUATE:
        return reply
    if experiment.federation.report_metrics:
        reply[HARNESS] = MetricRecord({f"compute_s.{key}": value for key, value in compute.items()})
        return reply
    log.info("client %d: evaluation of θ on its test data: %s", data.client_id, metrics_of(reply))
    return RecordDict()


@functools.lru_cache(maxsize=8)
def _method(method_json: str) -> FederatedMethod:
    """The method of one ``method`` config (JSON text), built once per process."""
    return build_method(json.loads(method_json))


DATA_CONFIGS_KEPT = 4
"""How many data configurations (dataset, partition, seed, data directory) a client process keeps
the nodes' parts of: the points of a sweep on the same data reuse them, and the memory stays
bounded however many points one process serves (a Flower run serves a whole sweep)."""


def _client_data(experiment: Experiment, node_config: Mapping[str, Any]) -> ClientPartition:
    """:func:`load_client_data` once per process for one node of one data configuration: a
    node's messages of a run (and the sweep points that share its data) reuse its part."""
    data = {key: getattr(experiment, key) for key in ("dataset", "seed", "data_dir")}
    node = {key: node_config[key] for key in NODE_DATA_KEYS if key in node_config}
    parts = _parts_of(json.dumps({**data, "partition": dataclasses.asdict(experiment.partition)}, sort_keys=True))
    node_key = json.dumps(node, sort_keys=True)
    if node_key not in parts:
        parts[node_key] = load_client_data(experiment, node)
    return parts[node_key]


@functools.lru_cache(maxsize=DATA_CONFIGS_KEPT)
def _parts_of(data_json: str) -> dict[str, ClientPartition]:
    """The parts this process has loaded for one data configuration (JSON text), by node (filled
    by :func:`_client_data`); the least recently used configuration beyond
    :data:`DATA_CONFIGS_KEPT` is dropped."""
    return {}


def load_client_data(experiment: Experiment, node_config: Mapping[str, Any]) -> ClientPartition:
    """This node's train/test data (see the module docstring for where it comes from)."""
    spec = DatasetSpec.from_config(experiment.dataset)
    partition = experiment.partition
    if "partition-id" not in node_config:
        raise ValueError(f"node_config needs 'partition-id' (the client's id); got {dict(node_config)}")
    client_id = int(node_config["partition-id"])
    if node_config.get("data-file"):
        return split_train_test(
            load_csv(spec, str(node_config["data-file"])),
            seed=experiment.seed,
            test_fraction=partition.test_fraction,
            client_id=client_id,
        )
    num_partitions = int(node_config.get("num-partitions", spec.num_clients))
    try:
        return load_partition(
            dataclasses.replace(spec, num_clients=num_partitions),
            client_id,
            seed=experiment.seed,
            scheme=partition.scheme,
            test_fraction=partition.test_fraction,
            dirichlet_alpha=partition.dirichlet_alpha,
            data_dir=experiment.data_dir,
        )
    except DataError as error:
        if "num-partitions" not in node_config:
            raise
        raise DataError(
            f"{error}; the federation has {num_partitions} SuperNodes, one client each: use fewer "
            "(num-supernodes, e.g. flwr run . --federation-config 'num-supernodes=2'; the fedsynth "
            "command starts dataset.num_clients)"
        ) from None
