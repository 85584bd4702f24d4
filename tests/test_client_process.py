"""The in-process engine's client processes account for the CPU they use (a sweep's report adds
it: the processes live across sweep points, so the launcher never waits for them)."""

from __future__ import annotations

from flwr.app import RecordDict

from fedsynth.federated.client_process import ClientRequest, ClientWorkers, client_cpu_seconds, client_workers
from fedsynth.federated.messages import encode


def _unanswerable_request() -> ClientRequest:
    """A message the client rejects at once (its run config holds no experiment)."""
    return ClientRequest({}, {"partition-id": 0}, "train", encode(RecordDict()), encode(RecordDict()), {})


def test_a_client_process_reports_its_cpu_time_with_every_answer() -> None:
    """The first answer carries the process's start-up (Python, torch and the client logic: far
    more than 0.2 s of CPU on any machine), a later one what came after it (the rest of the
    imports its background thread makes, and the message); the pool sums them."""
    pool = ClientWorkers(1)
    try:
        first = pool.answer({1: _unanswerable_request()}, timeout=120)[1]
        second = pool.answer({1: _unanswerable_request()}, timeout=120)[1]
    finally:
        pool.close()
    assert first.error and first.error.startswith("crashed: config:")
    assert first.cpu_seconds > 0.2
    assert second.error == first.error and second.cpu_seconds >= 0
    assert pool.cpu_seconds == first.cpu_seconds + second.cpu_seconds


def test_the_process_wide_total_counts_every_pool() -> None:
    before = client_cpu_seconds()
    pool = client_workers(5)  # this process's pool of five (created here: no other test uses it)
    try:
        answer = pool.answer({1: _unanswerable_request()}, timeout=120)[1]
    finally:
        pool.close()
    assert answer.cpu_seconds > 0.2
    assert client_cpu_seconds() - before == answer.cpu_seconds
