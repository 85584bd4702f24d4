"""Code the baseline methods share (fedavg, fairfed, centralized, local).

* :func:`local_sgd`: local training of the logistic model ℓ_r (eq. 11) by mini-batch SGD, the
  client step of FedAvg and FairFed;
* :class:`ExactFitMethod`: the settings of the ``centralized`` and ``local`` baselines, whose model
  is the exact minimizer of ℓ_r, or of ℓ_r + ρ/2·F² (Zafar et al. 2017 style, F a
  :mod:`fedsynth.core.fairness` measure, by default the covariance (2)), by :meth:`LogisticModel.fit`;
* :func:`cast_fields`: a method's settings (a dataclass) cast to their annotated types;

All models are the same :class:`~fedsynth.core.LogisticModel`, so the harness evaluates every
method the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from fedsynth.core import FairnessMeasure, InnerSolverConfig, LogisticModel, fairness_from_config
from fedsynth.data.types import TabularData
from fedsynth.methods.base import FederatedMethod

_CASTS = {"float": float, "int": int, "bool": bool, "str": str}


def cast_fields(settings: object) -> None:
    """Cast every init field of the dataclass ``settings`` that is annotated ``float``, ``int``,
    ``bool`` or ``str`` to that type in place (Hydra passes YAML numbers as written: ``rho=100``
    arrives as an int)."""
    for item in dataclasses.fields(settings):
        cast = _CASTS.get(str(item.type))
        if cast is not None and item.init:
            setattr(settings, item.name, cast(getattr(settings, item.name)))


def seed_for(*parts: int) -> int:
    """One 63-bit seed derived from several integers (e.g. run seed, round, client id)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


# ----------------------------------------------------------------------------- local training
def local_sgd(
    train: TabularData,
    theta: np.ndarray | None,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    model: LogisticModel,
    seed: int,
) -> np.ndarray:
    """``epochs`` passes of mini-batch SGD on ``model``'s ℓ_r (eq. 11) over ``train``, from ``theta``
    (zeros when None). Each epoch visits the rows in a fresh random order drawn from ``seed``; the same
    arguments always give the same θ."""
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    a = model.design(train.x, train.s, train.num_groups)
    y = train.y
    current = (
        torch.zeros(a.shape[1], dtype=torch.float64)
        if theta is None
        else torch.as_tensor(np.asarray(theta, dtype=np.float64)).clone()
    )
    if current.shape != (a.shape[1],):
        raise ValueError(f"θ has shape {tuple(current.shape)}, the data need ({a.shape[1]},)")
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(train), generator=generator).split(batch_size):
            current -= lr * model.objective(a[batch], y[batch]).at(current).gradient()
    return current.numpy()


@dataclass(kw_only=True, eq=False)
class ExactFitMethod(FederatedMethod):
    """The settings and the model the ``centralized`` and ``local`` baselines share: ℓ_r
    (``variant = "plain"``) or ℓ_r + ρ/2·F² (``"fair"``, F the measure ``fairness``), fitted
    exactly by :meth:`LogisticModel.fit` (L-BFGS to a gradient of 1e-9).

    Args:
        variant: one of :attr:`variants`.
        rho: ρ of the ``fair`` variant's penalty.
        fairness: the ``fair`` variant's measure F (:data:`fedsynth.core.FAIRNESS_MEASURES`:
            ``covariance``, ``eo_covariance``, ``dp_gap``, ``eo_gap``).
        fairness_temperature: τ of the ``dp_gap`` / ``eo_gap`` measures.
        lambda_theta: λ_θ of ℓ_r.
        max_iter: L-BFGS iterations.
        fit_intercept: model with an intercept column.
    """

    variants: ClassVar[tuple[str, ...]] = ("plain", "fair")
    variant: str = "plain"
    rho: float = 10.0
    fairness: str = "covariance"
    fairness_temperature: float = 1.0
    lambda_theta: float = 1e-3
    max_iter: int = 500
    fit_intercept: bool = True

    def __post_init__(self) -> None:
        if self.variant not in self.variants:
            raise ValueError(f"variant must be one of {self.variants}, got {self.variant!r}")
        cast_fields(self)
        fairness_from_config(self.fairness, self.fairness_temperature)  # names the key when invalid

    @property
    def model(self) -> LogisticModel:
        """The logistic model of ℓ_r, its L-BFGS run to a gradient of 1e-9 in ``max_iter`` iterations."""
        solver = InnerSolverConfig(max_iter=self.max_iter, tolerance_grad=1e-9)
        return LogisticModel(lambda_theta=self.lambda_theta, fit_intercept=self.fit_intercept, solver=solver)

    @property
    def measure(self) -> FairnessMeasure:
        """The ``fair`` variant's measure F, built from ``fairness`` and ``fairness_temperature``."""
        return fairness_from_config(self.fairness, self.fairness_temperature)

    def fairness_measures(self) -> dict[str, FairnessMeasure]:
        """The ``fair`` variant's measure under ``fairness`` (none for the others)."""
        return {"fairness": self.measure} if self.variant == "fair" else {}

    def fit(self, data: TabularData) -> np.ndarray:
        """θ of the ``plain`` or ``fair`` variant on ``data``."""
        rho = self.rho if self.variant == "fair" else 0.0
        return self.model.fit(data, rho=rho, fairness=self.measure).theta.numpy()
