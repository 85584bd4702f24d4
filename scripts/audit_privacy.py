"""Statistical privacy audit of the private single_shot client (issue 22): empirical ε lower bounds.

For each setting: insert a canary row into one client's training rows, run the client's mechanism
many times without and with it, attack its output, and turn the attack's error rates into a lower
bound on ε with Clopper–Pearson confidence intervals (fedsynth.privacy.audit; Jagielski et al. 2020,
Nasr et al. 2021). Two attacks:

* ``release``: white box on the release itself (the noisy Σ āāᵀ, Σ yā), the strongest attack any
  output admits: the projection on the canary's clipped contribution (the Neyman–Pearson test of the
  Gaussian mechanism). Everything the client sends is computed from this release.
* ``theta``: black box on what the server receives: the client synthesizes N_s = 50 rows from the
  release (k_max = 30, ρ_o = 3; a fixed synthesis seed: the server knows it), the server fits θ on
  them, and the score is the canary's margin y·aᵀθ.

Each audited setting runs the honest mechanism at the claimed ε, and a deliberately broken one
(``noise-off``: no noise; ``no-clip``: the noise calibrated to the clip but rows not clipped),
which a correct audit must flag (lower bound > claimed ε).

    .venv/bin/python scripts/audit_privacy.py                 # the full audit (minutes)
    .venv/bin/python scripts/audit_privacy.py --quick         # fewer runs
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedsynth.core import SynthesisConfig, fit_server_model  # noqa: E402
from fedsynth.data import DatasetSpec, load_partition  # noqa: E402
from fedsynth.data.types import TabularData  # noqa: E402
from fedsynth.paths import data_directory  # noqa: E402
from fedsynth.privacy import statistics  # noqa: E402
from fedsynth.privacy.accounting import noise_multiplier  # noqa: E402
from fedsynth.privacy.audit import AuditResult, audit  # noqa: E402
from fedsynth.privacy.statistics import NoisyStatistics, release_statistics  # noqa: E402
from fedsynth.privacy.synthesis import synthesize_from_release  # noqa: E402

DELTA = 1e-5
CLIP = 3.0


def client_rows(rows: int) -> TabularData:
    """The first ``rows`` training rows of Law School (race) client 0 (a small client makes one row
    matter more to the black-box attack; the guarantee does not depend on N)."""
    import yaml

    spec = DatasetSpec.from_config(yaml.safe_load((ROOT / "conf/dataset/law_school_race.yaml").read_text()))
    train = load_partition(spec, 0, seed=0, data_dir=data_directory(None)).train
    return train.subset(torch.arange(min(rows, len(train))))


def canary(data: TabularData) -> TabularData:
    """An outlier: every feature at +10 standard scores (norm far beyond the clip), s = 0 (the
    minority group), y = −1 (a fail where the features say pass)."""
    x = torch.full((1, data.num_features), 10.0, dtype=torch.float64)
    return TabularData(x, torch.zeros(1, dtype=torch.float64), -torch.ones(1, dtype=torch.float64), data.feature_names)


def flat(stats: NoisyStatistics) -> torch.Tensor:
    """The release as one vector (both blocks)."""
    return torch.cat([stats.second.flatten(), stats.label])


def release(data: TabularData, z: float, generator: torch.Generator, broken: str) -> NoisyStatistics:
    """The client's release, honest or broken (``noise-off``: z = 0; ``no-clip``: rows unclipped,
    noise as calibrated for the clip)."""
    if broken == "no-clip":
        unclipped = statistics.clip_rows
        statistics.clip_rows = lambda x, clip: x  # the bug: the clip is skipped
        try:
            return release_statistics(data, clip=CLIP, noise_multiplier=z, generator=generator)
        finally:
            statistics.clip_rows = unclipped
    return release_statistics(data, clip=CLIP, noise_multiplier=0.0 if broken == "noise-off" else z, generator=generator)


def run_audit(data: TabularData, epsilon: float, attack: str, broken: str, runs: int) -> AuditResult:
    """One audited setting: ``runs`` runs per arm of the client's mechanism at ``epsilon``."""
    with_canary = TabularData.concat([data, canary(data)])
    z = noise_multiplier(epsilon, DELTA)
    base = flat(release(data, 0.0, torch.Generator(), "none"))
    direction = flat(release_statistics(canary(data), clip=CLIP, noise_multiplier=0.0, generator=torch.Generator()))
    direction = direction / direction.norm()
    config = SynthesisConfig(rho_o=3.0, synthetic_size=50, synthetic_labels="balanced", k_max=30)
    target = canary(data)
    model = config.model

    def score(canary_in: bool, trial: int) -> float:
        generator = torch.Generator().manual_seed(2 * trial + int(canary_in) + 12345)
        released = release(with_canary if canary_in else data, z, generator, broken)
        if attack == "release":
            return float((flat(released) - base) @ direction)
        rows = synthesize_from_release(released, config, data.feature_names, seed=0).data
        theta = fit_server_model([rows], model).theta
        return float(target.y[0] * model.decision(theta, target)[0])  # the canary's margin

    return audit(score, runs=runs, delta=DELTA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a few minutes)")
    parser.add_argument("--rows", type=int, default=300, help="the audited client's training rows")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data = client_rows(args.rows)
    release_runs, theta_runs = (1000, 100) if args.quick else (5000, 300)
    settings = [
        ("release", 1.0, "none", release_runs),
        ("release", 4.0, "none", release_runs),
        ("release", 1.0, "noise-off", 200),
        ("release", 1.0, "no-clip", release_runs),
        ("theta", 1.0, "none", theta_runs),
        ("theta", 4.0, "none", theta_runs),
        ("theta", 1.0, "noise-off", 100),
    ]
    print(f"client: Law School (race) client 0, first {len(data)} training rows; δ = {DELTA}; clip {CLIP}; "
          "95 % Clopper–Pearson bounds, threshold chosen on the first half of the runs")
    print(f"| attack | mechanism | claimed ε | runs per arm (evaluated) | FPR | FNR | ε lower bound (95 %) | ε point | flagged | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for attack, epsilon, broken, runs in settings:
        start = time.perf_counter()
        result = run_audit(data, epsilon, attack, broken, runs)
        seconds = time.perf_counter() - start
        point = "∞" if math.isinf(result.epsilon_point) else f"{result.epsilon_point:.2f}"
        print(
            f"| {attack} | {'honest' if broken == 'none' else broken} | {epsilon:g} | {runs} ({result.runs_per_arm}) | "
            f"{result.false_positive_rate:.3f} | {result.false_negative_rate:.3f} | {result.epsilon_lower:.2f} | {point} | "
            f"{'**yes**' if result.flags(epsilon) else 'no'} | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
