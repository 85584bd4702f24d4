"""The in-process engine's client processes: forked ready to work by one fork server, and
accounting for the CPU they use (a sweep's report adds it: the processes live across sweep
points, so the launcher never waits for them)."""

from __future__ import annotations

import logging
import os
import time

import pytest
from flwr.app import RecordDict

from fedsynth.checks import ConfigError
from fedsynth.federated import InProcessEngine
from fedsynth.federated.client_process import ClientRequest, ClientWorkers, call_in_client_process, client_cpu_seconds
from fedsynth.federated.messages import encode
from federated_support import tiny_experiment


def _unanswerable_request() -> ClientRequest:
    """A message the client rejects at once (it carries no experiment)."""
    return ClientRequest({"partition-id": 0}, "train", encode(RecordDict()), encode(RecordDict()), {})


def test_a_forked_client_answers_at_once_and_the_pool_sums_its_cpu_time() -> None:
    """A client process starts with torch and the client logic imported (its first answer takes
    far less than importing torch does), every answer carries the CPU time its process used
    since the previous one, and the pool sums them."""
    pool = ClientWorkers(1)
    try:
        pool.answer({1: _unanswerable_request()}, timeout=120)  # the fork server is up
        pool.close()
        start = time.perf_counter()
        first = pool.answer({1: _unanswerable_request()}, timeout=120)[1]  # a new process
        first_s = time.perf_counter() - start
        second = pool.answer({1: _unanswerable_request()}, timeout=120)[1]
    finally:
        pool.close()
    assert first.error and first.error.startswith("crashed: config:") and second.error == first.error
    assert first_s < 1.0, f"a fresh client process took {first_s:.2f} s to answer"
    assert first.cpu_seconds >= 0 and second.cpu_seconds >= 0
    assert pool.cpu_seconds > 0


def test_a_run_counts_its_clients_cpu_time() -> None:
    """The CPU time the clients report for a run is positive and no more than the cores could
    give in the run's wall time."""
    before = client_cpu_seconds()
    outcome = InProcessEngine().run(tiny_experiment())
    used = client_cpu_seconds() - before
    assert 0 < used <= outcome.timings["wall_s"] * (os.cpu_count() or 1) + 0.5


def _pid_after_logging(message: str) -> int:
    """(In a client process) log ``message`` and return this process's pid."""
    logging.getLogger("fedsynth.test").warning(message)
    return os.getpid()


def _reject(message: str) -> None:
    """(In a client process) fail as a config check does."""
    raise ConfigError(message)


def _run_in_process_engine(experiment: dict) -> object:
    """(In a client process) the in-process engine's run, with client processes of its own."""
    return InProcessEngine(workers=2).run(experiment)


def test_a_call_runs_in_a_client_process_with_its_logs_errors_and_cpu_time(caplog) -> None:
    """:func:`call_in_client_process` runs a function in another process and returns its result;
    its log records reach this process's loggers; its exception is raised here, same type and
    message, with the traceback from there as a note; an in-process engine run there (with its
    own fork server and clients) gives the numbers of a run here, and its CPU time is counted."""
    with caplog.at_level(logging.INFO):
        pid = call_in_client_process(_pid_after_logging, "hello from there")
    assert pid != os.getpid()
    assert any(r.name == "fedsynth.test" and r.getMessage() == "hello from there" for r in caplog.records)
    with pytest.raises(ConfigError) as raised:
        call_in_client_process(_reject, "dataset.x: wrong")
    assert str(raised.value) == "dataset.x: wrong"
    assert any("in client process" in note and "_reject" in note for note in raised.value.__notes__)
    before = client_cpu_seconds()
    there = call_in_client_process(_run_in_process_engine, tiny_experiment())
    assert client_cpu_seconds() - before > 0
    here = InProcessEngine(workers=2).run(tiny_experiment())
    assert there.theta == here.theta and there.metrics == here.metrics and there.failures == []
