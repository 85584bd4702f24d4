"""results.json (issue 21 item 1, issue 24 item 5): the new keys, the constant reference, and
strict JSON — a value that is not a finite number is null, listed and logged once."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fedsynth.core import LogisticModel
from fedsynth.data.types import ClientPartition, TabularData
from fedsynth.outcome import RunOutcome
from fedsynth.io import write_json_atomic
from fedsynth.metrics import metrics_from_counts, report_counts, sum_counts
from fedsynth.reporting import results
from fedsynth.reporting.results import headline, results_record

CONFIG = {"dataset": {"name": "synthetic"}, "method": {"name": "single_shot"}, "seed": 0}


def partition(k: int, rows: int, groups: tuple[float, ...]) -> ClientPartition:
    """A client whose rows all have s in ``groups`` (one group: SPD and EOD are undefined for it)."""
    g = torch.Generator().manual_seed(k)
    x = torch.randn(rows, 3, generator=g, dtype=torch.float64)
    s = torch.tensor([groups[i % len(groups)] for i in range(rows)], dtype=torch.float64)
    y = torch.where(x[:, 0] > 0, 1.0, -1.0).double()
    data = TabularData(x, s, y, ("a", "b", "c"))
    return ClientPartition(k, data.subset(torch.arange(rows // 2)), data.subset(torch.arange(rows // 2, rows)))


def outcome_of(parts: list[ClientPartition]) -> RunOutcome:
    theta = np.array([1.0, 0.2, -0.1, 0.3, 0.05])
    counts = [report_counts(LogisticModel(), theta, p) for p in parts]
    return RunOutcome(
        engine="test", theta=theta.tolist(), metrics=metrics_from_counts(sum_counts(counts)),
        clients=[{"client_id": k, "node": k + 1, "metrics": metrics_from_counts(c), "counts": c,
                  "bytes_up": {"train": 10}, "bytes_down": {"train": 5}} for k, c in enumerate(counts)],
    )


def strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_client_with_one_group_gives_null_not_nan_a_warning_and_strict_json(tmp_path, monkeypatch):
    """As a Dirichlet client holding rows of one (s, y) group: its SPD and EOD are undefined; the
    file says null, lists each such value under ``warnings`` and the run logs one warning line."""
    outcome = outcome_of([partition(0, 60, (0.0, 1.0)), partition(1, 40, (1.0,))])
    assert math.isnan(outcome.clients[1]["metrics"]["spd"])
    logged = []
    monkeypatch.setattr(results.log, "warning", lambda message, *args: logged.append(message % args))
    record = results_record(CONFIG, outcome, 1.0)
    written = strict(write_json_atomic(tmp_path / "results.json", record).read_text())
    assert written["per_client"][1]["spd"] is None and written["per_client"][1]["eod"] is None
    assert "per_client[1].spd was nan, written as null" in written["warnings"]
    assert len(logged) == 1 and "per_client[1].spd (nan); per_client[1].eod (nan)" in logged[0]
    # the range over clients takes the clients that have the value
    assert written["client_min"]["spd"] == written["client_max"]["spd"] == written["per_client"][0]["spd"]
    assert math.isfinite(written["spd"])


def test_an_honest_run_has_no_warnings_and_carries_every_new_key():
    record = results_record(CONFIG, outcome_of([partition(0, 60, (0.0, 1.0)), partition(1, 80, (0.0, 1.0))]), 1.0)
    assert "warnings" not in record
    for key in ("balanced_accuracy", "auc", "auc_error_bound"):
        assert 0 <= record[key] <= 1
    assert set(record["client_min"]) == set(record["client_max"]) == {"accuracy", "balanced_accuracy", "spd", "eod", "auc"}
    assert record["client_min"]["accuracy"] <= record["accuracy"] <= record["client_max"]["accuracy"]
    constant = record["reference"]["constant"]
    assert constant["balanced_accuracy"] == 0.5 and constant["spd"] == 0.0 and constant["label"] in (1.0, -1.0)
    line = headline(record)
    assert line.startswith("accuracy=") and "balanced_accuracy=" in line and "constant classifier: accuracy=" in line


def test_without_the_harness_report_there_is_no_reference_and_the_metrics_are_null():
    """federation.report_metrics=false: nothing to measure, null by design (no warning)."""
    record = results_record(CONFIG, RunOutcome(engine="test", theta=[0.0]), 1.0)
    assert record["reference"] == {} and record["accuracy"] is None and "warnings" not in record
    assert "accuracy=n/a" in headline(record)


def test_private_training_rows_send_no_training_counts_and_the_constant_takes_the_test_majority():
    """A client whose training rows are under a privacy budget (the dp_* methods, private
    single_shot) reports no statistic of them; the constant classifier is then the test rows'
    majority, and says so."""
    from fedsynth.methods.base import FederatedMethod, make_content
    from fedsynth.metrics import constant_classifier
    from fedsynth.privacy.budget import PrivacyBudget

    class Private(FederatedMethod):
        model = LogisticModel()

        def __init__(self, epsilon: float | None) -> None:
            self.budget = PrivacyBudget(epsilon=epsilon)

        def run_server(self, comm):  # not used here
            raise NotImplementedError

    part = partition(0, 80, (0.0, 1.0))
    theta = make_content(arrays={"theta": np.array([1.0, 0.2, -0.1, 0.3, 0.05])})
    private = dict(Private(1.0).evaluate(theta, part, {}).metric_records["metrics"])
    public = dict(Private(None).evaluate(theta, part, {}).metric_records["metrics"])
    assert "train_n" not in private and "train_n_y1" not in private
    assert public["train_n"] == 40 and {k: v for k, v in public.items() if not k.startswith("train_")} == private
    constant = constant_classifier(private)
    assert constant["majority_of"] == "test rows" and constant_classifier(public)["majority_of"] == "training rows"
    positives = private["n_y1_s1"] + private["n_y1_s0"]
    assert constant["accuracy"] == max(positives, private["n"] - positives) / private["n"]
