"""Privacy accounting: the noise a release needs for a budget (ε, δ), and the budget a sequence of
releases spends, both from Opacus's accountants (never a formula of our own).

Every mechanism in fedsynth is a (possibly Poisson-subsampled) Gaussian mechanism: a release adds
N(0, (z·Δ)²) noise to a sum of per-row contributions whose L2 norm is at most Δ, where z is the
*noise multiplier*; with sampling rate q each row joins each of the ``steps`` sums independently with
probability q. Opacus's accountants compose exactly this mechanism
(``PoissonSubsampledGaussianPRV``, ``compute_rdp``), for the add-or-remove-one-row relation between
neighbouring datasets. A release that is not subsampled has q = 1 and one step.

* ``prv``: the privacy-loss-random-variable accountant (Gopi, Lee & Wutschitz 2021), numerically
  tight; its ε is an upper bound (Opacus returns the upper end of its error interval).
* ``rdp``: the Rényi-DP accountant (Mironov 2017; Mironov, Talwar & Zhang 2019), looser.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fedsynth.privacy.budget import PrivacyBudget

NEIGHBOURING = "add or remove one row of the client's training data"
"""The neighbouring relation of every guarantee fedsynth states (Opacus's accountants')."""

EPSILON_TOLERANCE = 0.005
"""How far below the target ε the calibrated noise may land (Opacus's binary search)."""


@dataclass(frozen=True)
class Release:
    """One Gaussian mechanism as the accountant sees it: ``steps`` releases with noise multiplier
    ``noise_multiplier`` (noise std / L2 sensitivity), each on a Poisson sample of rate
    ``sample_rate`` (1: every row)."""

    name: str
    noise_multiplier: float
    sample_rate: float = 1.0
    steps: int = 1


def _accountant(name: str):
    """A fresh Opacus accountant called ``name`` (imported here: Opacus costs ≈ 2 s to import, paid
    only by the runs that ask for privacy)."""
    from opacus.accountants import create_accountant

    return create_accountant(mechanism=name)


def epsilon_spent(releases: tuple[Release, ...] | list[Release], delta: float, accountant: str = "prv") -> float:
    """The ε that the composition of ``releases`` spends at ``delta`` (Opacus's ``accountant``)."""
    if not releases:
        return 0.0
    ledger = _accountant(accountant)
    ledger.history = [(r.noise_multiplier, r.sample_rate, r.steps) for r in releases]
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        # q = 1 makes Opacus's PRV take log(1 - q) = -inf on a branch it then discards
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(ledger.get_epsilon(delta=delta))


@functools.lru_cache(maxsize=64)
def noise_multiplier(
    epsilon: float, delta: float, *, sample_rate: float = 1.0, steps: int = 1, accountant: str = "prv"
) -> float:
    """The smallest noise multiplier z (to Opacus's search tolerance, :data:`EPSILON_TOLERANCE`)
    with which ``steps`` Gaussian releases on Poisson samples of rate ``sample_rate`` spend at most
    (``epsilon``, ``delta``): Opacus's ``get_noise_multiplier``. Cached per process."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}")
    if not (0 < sample_rate <= 1) or steps < 1:
        raise ValueError(f"need 0 < sample_rate <= 1 and steps >= 1, got {sample_rate}, {steps}")
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(
            get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
                epsilon_tolerance=EPSILON_TOLERANCE,
            )
        )


@dataclass(frozen=True)
class PrivacyStatement:
    """What a client spent: its releases, the (ε, δ) their composition spends by ``accountant``, and
    the neighbouring relation. :meth:`to_record` is what a run reports per client."""

    budget: "PrivacyBudget"
    releases: tuple[Release, ...]

    @property
    def epsilon(self) -> float:
        """The ε the releases spend at the budget's δ (≤ the budget's ε by construction)."""
        return epsilon_spent(self.releases, self.budget.delta, self.budget.accountant)

    def to_record(self) -> dict[str, object]:
        """A JSON-ready summary: ``epsilon`` (spent), ``delta``, ``epsilon_budget``, ``accountant``,
        ``neighbouring``, ``noise`` (where the noise came from: a run with a ``noise_seed`` is not
        private) and each release's noise multiplier, sampling rate and steps."""
        seed = self.budget.noise_seed
        return {
            "epsilon": self.epsilon,
            "delta": self.budget.delta,
            "epsilon_budget": self.budget.epsilon,
            "accountant": f"opacus.{self.budget.accountant}",
            "neighbouring": NEIGHBOURING,
            "noise": "operating-system entropy" if seed is None else f"noise_seed {seed}: reproducible, NOT private",
            "releases": [
                {"name": r.name, "noise_multiplier": r.noise_multiplier, "sample_rate": r.sample_rate, "steps": r.steps}
                for r in self.releases
            ],
        }
