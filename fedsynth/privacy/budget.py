"""A client's privacy settings as a method receives them (``method.privacy``): the budget (ε, δ),
the accountant, the clipping bound of the methods that clip, and where the noise comes from."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from fedsynth.schema import from_mapping

ACCOUNTANTS = ("prv", "rdp")
"""The Opacus accountants a budget may name (:mod:`fedsynth.privacy.accounting`)."""


@dataclass(frozen=True)
class PrivacyBudget:
    """(ε, δ)-differential privacy per client with respect to one row of its training data
    (:data:`fedsynth.privacy.accounting.NEIGHBOURING`), accounted by Opacus's ``accountant``.

    Attributes:
        epsilon: ε, or ``None``: privacy off (no mechanism runs; the method is as without it).
        delta: δ.
        accountant: ``prv`` (tight, the default) or ``rdp``.
        noise_seed: ``None`` (the default): every release draws its noise from a generator seeded
            by the operating system's entropy, unknown to anyone. An integer seeds it from this
            value and the client's id instead, for reproducible experiments and tests: whoever
            knows the seed can subtract the noise, so a run with a ``noise_seed`` is NOT private
            (its privacy statement says so).
    """

    epsilon: float | None = None
    delta: float = 1e-5
    accountant: str = "prv"
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        if self.epsilon is not None and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ValueError(f"privacy.epsilon must be a finite number > 0 (or null: privacy off), got {self.epsilon}")
        if not (0 < self.delta < 1):
            raise ValueError(f"privacy.delta must be in (0, 1), got {self.delta}")
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"privacy.accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")

    @property
    def enabled(self) -> bool:
        """Whether a mechanism runs (ε is set)."""
        return self.epsilon is not None

    def noise_generator(self, client_id: int) -> torch.Generator:
        """The generator of this client's noise: OS entropy, or ``noise_seed`` and the client id
        (reproducible, not private)."""
        if self.noise_seed is None:
            return torch.Generator().manual_seed(secrets.randbits(63))
        state = np.random.SeedSequence([int(self.noise_seed), int(client_id)]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state >> np.uint64(1)))


def required_budget(kind: type[PrivacyBudget], privacy: Mapping[str, Any], method: str) -> PrivacyBudget:
    """``method.privacy`` (a mapping) as a budget of ``kind``; ``ValueError`` naming the key when a
    value is wrong or ε is not set (``method``, a method with no non-private mode, needs it)."""
    budget = from_mapping(kind, dict(privacy), "method.privacy")
    if not budget.enabled:
        raise ValueError(f"method.privacy.epsilon must be set: {method} is private only")
    return budget


@dataclass(frozen=True)
class ClippedBudget(PrivacyBudget):
    """A :class:`PrivacyBudget` for a mechanism that bounds each row's contribution by clipping
    (``clip`` > 0: a feature-vector norm for the released statistics, a per-example gradient norm
    for DP-SGD; its unit is the method's)."""

    clip: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise ValueError(f"privacy.clip must be a finite number > 0, got {self.clip}")
