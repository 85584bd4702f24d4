"""docs/extending.md runs as written (issue 24): its files are written into an empty folder, its
`bash ci` blocks run there, and the toy method it builds is grouped by its own settings in
fedsynth-report and fedsynth-compare with no reporting code changed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str, str]]:
    """(language, info, body) of every fenced block of the guide, in order."""
    return [(language, info.strip(), body) for language, info, body in FENCE.findall(GUIDE.read_text(encoding="utf-8"))]


def guide_files() -> dict[str, str]:
    """The guide's files: the blocks whose info string says ``file=<path>``."""
    found = {}
    for _, info, body in blocks():
        match = re.match(r"file=(\S+)", info)
        if match:
            found[match.group(1)] = body
    return found


@pytest.mark.slow
def test_the_guides_method_and_dataset_run_and_are_reported_by_their_own_settings(tmp_path):
    for name, body in guide_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body, encoding="utf-8")
    commands = [body for language, info, body in blocks() if language == "bash" and info == "ci"]
    assert len(commands) == 2
    script = "set -euo pipefail\n" + "\n".join(commands)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    summary = pd.read_csv(tmp_path / "multirun" / "one_shot_average" / "report" / "summary.csv")
    assert set(summary["method"]) == {"one_shot_average"}
    assert sorted(summary["rho"]) == [0, 10] and set(summary["runs"]) == {2}
    report = (tmp_path / "multirun" / "one_shot_average" / "report" / "report.md").read_text()
    assert "| rho |" in report and "| *constant classifier* |" in report and "| *centralized plain* |" in report
    assert "no centralized plain reference" not in report
    comparison = (tmp_path / "comparison" / "comparison.md").read_text()
    for row in ("| one_shot_average rho=0 | 2 |", "| one_shot_average rho=10 | 2 |"):
        assert row in comparison
    assert "θ (1 reply per client)" in comparison and "num-examples" in comparison
    assert "Warning" not in comparison  # every point has both seeds
    assert (tmp_path / "outputs" / "toy_loans" / "results.json").exists()


def test_the_guides_fairness_measure(monkeypatch):
    """The measure of the guide: its gradient is autograd's and the sum of its per-row terms, its
    value the mean gap of its definition, the config finds it by name, and a penalized fit shrinks
    it."""
    from fedsynth.core import LogisticModel, fairness
    from fedsynth.data.types import TabularData

    module = types.ModuleType("mean_gap")
    monkeypatch.setitem(sys.modules, "mean_gap", module)  # a dataclass looks its module up
    exec(compile(guide_files()["measure/mean_gap.py"], "mean_gap.py", "exec"), module.__dict__)
    measure_class = module.MeanDecisionGap
    monkeypatch.setitem(fairness.FAIRNESS_MEASURES, "mean_gap", measure_class)
    measure = fairness.fairness_from_config("mean_gap")
    assert isinstance(measure, measure_class)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g, dtype=torch.float64)
    s = (torch.rand(400, generator=g) < 0.4).double()
    y = torch.where(x[:, 0] + s + 0.3 * torch.randn(400, generator=g, dtype=torch.float64) > 0.5, 1.0, -1.0).double()
    data = TabularData(x, s, y, ("a", "b", "c"))
    model = LogisticModel()
    a = model.design(data.x, data.s)
    theta = torch.randn(a.shape[1], generator=g, dtype=torch.float64, requires_grad=True)
    bound = measure.bind(a, s, y)
    value, gradient = bound(theta)
    (autograd,) = torch.autograd.grad(value, theta)
    torch.testing.assert_close(gradient, autograd)
    torch.testing.assert_close(bound.row_gradients(theta).sum(dim=0), gradient)
    decisions = a @ theta
    torch.testing.assert_close(value, decisions[s == 1].mean() - decisions[s == 0].mean())

    def gap(rho: float) -> float:
        fitted = model.fit(data, rho=rho, fairness=measure).theta
        return abs(float(bound(fitted)[0]))

    assert gap(100.0) < 0.2 * gap(0.0)
    one_group = measure.bind(a, torch.ones_like(s), y)(theta.detach())[0]
    assert float(one_group) == 0.0
