"""Client-side synthesis, Algorithm 1 of the paper: learn synthetic features x̂ by minimizing the
penalty objective P of eq. (11)–(12) with Adam, the inner model θ(x̂) given by implicit
differentiation (eqs. (13)–(14))."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch

from fedsynth.core.fairness import BoundMeasure, FairnessMeasure, fairness_from_config
from fedsynth.core.implicit import CGConfig, ImplicitDiagnostics, cg, implicit_argmin
from fedsynth.core.model import (
    InnerSolution,
    InnerSolverConfig,
    LogisticModel,
    LogisticObjective,
    LogisticSolver,
    warm_start,
)
from fedsynth.core.targets import check_target, fit_to_target
from fedsynth.core.torch_compat import adam_step, allow_optimizer_setup_without_dynamo
from fedsynth.data.types import TabularData

LABEL_STRATEGIES = ("copy", "proportional", "noisy_proportional", "balanced")
INIT_STRATEGIES = ("gaussian", "subsample", "group_gaussian")
STOPPING_WINDOW = 50
"""Outer iterations over which the stopping rule measures P's progress (``SynthesisConfig.tolerance``)."""


def label_pairs(num_groups: int) -> tuple[tuple[float, float], ...]:
    """The (s, y) pairs of a sensitive attribute with ``num_groups`` groups, group by group, y = −1
    first: :data:`GROUPS` for two groups, 2k pairs for k."""
    return tuple((float(group), label) for group in range(num_groups) for label in (-1.0, 1.0))


GROUPS = label_pairs(2)
"""The four (s, y) pairs of a binary attribute: (0, −1), (0, 1), (1, −1), (1, 1)."""


def default_synthetic_size(num_features: int) -> int:
    """N_s for ``method.synthetic_size: auto``, a rule of the width alone: 10 rows per weight of
    a_i = (x_i, s_i) (n = d + 1), at least 200: 200 for the paper's 10-feature tables, 600 for
    Dutch one-hot (d = 59), 1010 for 100 features. Fewer rows than ~10 per weight make the synthetic
    problem nearly separable in many dimensions (θ(x̂) grows without bound and the server's union
    loses its curvature); the rule does not depend on N, so the row count reveals nothing of it
    (docs/method.md, "Defaults")."""
    return max(200, 10 * (num_features + 1))


@dataclass(frozen=True)
class SynthesisConfig:
    """Parameters of Algorithm 1 (lines 3–7).

    Attributes:
        rho_o: penalty ρ_o on the fairness measure over the real data, eq. (11).
        rho_s: penalty ρ_s on the fairness measure over the synthetic data, eq. (11).
        fairness: the name of the measure F that both penalties square (``covariance``, eq. 2,
            the paper's; ``eo_covariance``, ``dp_gap`` or ``eo_gap``); with
            ``fairness_temperature`` (τ of ``dp_gap`` / ``eo_gap``, smaller is sharper) it is the
            config form of :attr:`measure`, the object the math uses.
        lambda_x: regularization λ_x̂ of the synthetic features (paper: 1e-4).
        lambda_theta: regularization λ_θ of the inner problem (paper: 1e-4 or 1e-3).
        synthetic_size: N_s, or ``None`` for N_s = N.
        synthetic_labels: how (ŝ, ŷ) are chosen: ``copy`` (N_s = N, the client's own),
            ``proportional`` (the client's (s, y) proportions), ``noisy_proportional`` (those
            proportions from ε-differentially private counts, ``label_epsilon``) or ``balanced``
            (25% per pair).
        label_epsilon: ε of ``noisy_proportional``: Laplace(2/ε) noise on each (s, y) count.
        init: initial x̂: ``gaussian`` (each feature from N(mean, std) of the client's data, as in
            the paper), ``subsample`` (real rows of the same (s, y) group) or ``group_gaussian``
            (each (ŝ, ŷ) group's rows from the normal distribution with the mean and covariance of
            the client's rows of that group, :func:`initial_features`).
        keep_group_means: keep, at every outer step, each (ŝ, ŷ) group's mean of x̂ equal to the
            mean of the client's rows of that (s, y) group, and x̂ inside the affine hull of the
            client's rows (their exact linear relations, e.g. one-hot blocks summing to 1)
            (:class:`GroupMeans`): then the union of clients' rows, weighted by their sizes, has
            the pooled data's group means, and the server's covariance (2) on it is the pooled one.
        k_max: outer iterations (paper: 1000); the most, with ``tolerance``.
        tolerance: the stopping rule: stop once the best P of the last :data:`STOPPING_WINDOW`
            iterations improves on the best before them by less than ``tolerance`` · |P| (0: run
            ``k_max`` iterations, the paper).
        lr: Adam learning rate of the outer problem.
        fairness_target: instead of ``rho_o``, the target |G| ≤ fairness_target of eq. (8) on the
            client's training rows: ρ_o is the smallest penalty weight whose fit on those rows meets
            it (:func:`~fedsynth.core.targets.fit_to_target`); ``None``: ``rho_o`` as given.
        target_metric: G: ``spd``, ``eod`` (of the hard predictions) or ``measure`` (F itself).
        fit_intercept: append a constant feature to a_i (off reproduces the paper's aᵀθ).
        warm_start: start each inner solve from the previous θ and L-BFGS curvature memory
            (off: every outer step solves (11) from θ = 0, the naive variant).
        inner: L-BFGS settings of the inner solve (paper: at most 100 iterations).
        cg: conjugate-gradient settings of the implicit backward solve.
    """

    rho_o: float = 10.0
    rho_s: float = 0.0
    fairness: str = "covariance"
    fairness_temperature: float = 1.0
    lambda_x: float = 1e-4
    lambda_theta: float = 1e-3
    synthetic_size: int | None = None
    synthetic_labels: str = "copy"
    label_epsilon: float = 1.0
    init: str = "gaussian"
    keep_group_means: bool = False
    k_max: int = 1000
    tolerance: float = 0.0
    lr: float = 0.05
    fairness_target: float | None = None
    target_metric: str = "spd"
    fit_intercept: bool = True
    warm_start: bool = True
    inner: InnerSolverConfig = InnerSolverConfig()
    cg: CGConfig = CGConfig()

    def __post_init__(self) -> None:
        for name in ("rho_o", "rho_s", "lambda_x"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.lambda_theta) and self.lambda_theta > 0):
            raise ValueError(
                f"lambda_theta must be > 0 (it makes the inner problem strongly convex), got {self.lambda_theta}"
            )
        fairness_from_config(self.fairness, self.fairness_temperature)  # names the key when invalid
        if not (self.label_epsilon > 0 and math.isfinite(self.label_epsilon)):
            raise ValueError(f"label_epsilon must be a finite number > 0, got {self.label_epsilon}")
        if self.synthetic_size is not None and self.synthetic_size < 4:
            raise ValueError(f"synthetic_size must be at least 4 (or None for N), got {self.synthetic_size}")
        if self.synthetic_labels not in LABEL_STRATEGIES:
            raise ValueError(f"synthetic_labels must be one of {LABEL_STRATEGIES}, got {self.synthetic_labels!r}")
        if self.init not in INIT_STRATEGIES:
            raise ValueError(f"init must be one of {INIT_STRATEGIES}, got {self.init!r}")
        if self.k_max < 0:
            raise ValueError(f"k_max must be >= 0, got {self.k_max}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"tolerance must be a finite number >= 0, got {self.tolerance}")
        check_target(self.fairness_target, self.target_metric)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")

    @property
    def model(self) -> LogisticModel:
        """The inner (and server) model: ℓ_r with ``lambda_theta``, ``fit_intercept``, ``inner``."""
        return LogisticModel(lambda_theta=self.lambda_theta, fit_intercept=self.fit_intercept, solver=self.inner)

    @property
    def measure(self) -> FairnessMeasure:
        """The fairness measure F of both penalties (and of the server's ``server_rho``), built from
        ``fairness`` and ``fairness_temperature`` (:func:`~fedsynth.core.fairness.fairness_from_config`)."""
        return fairness_from_config(self.fairness, self.fairness_temperature)


@dataclass
class SynthesisHistory:
    """What happened during synthesis: P per outer iteration, inner L-BFGS iterations per outer
    step, how many inner solves missed their gradient tolerance, and the implicit backward's CG
    record."""

    objective: list[float] = field(default_factory=list)
    inner_iterations: list[int] = field(default_factory=list)
    inner_unconverged: int = 0
    implicit: ImplicitDiagnostics = field(default_factory=ImplicitDiagnostics)
    rho_o: float = 0.0
    """The ρ_o the synthesis used: ``config.rho_o``, or the one ``config.fairness_target`` asked for."""
    target_achieved: float | None = None
    """With a target: the targeted quantity of the client's own fit at that ρ_o, on its training rows."""


@dataclass(frozen=True)
class SynthesisResult:
    """The synthetic dataset {(x̂_i, ŝ_i, ŷ_i)}, the inner model θ(x̂) it induces, and the history."""

    data: TabularData
    theta: torch.Tensor
    history: SynthesisHistory


def choose_synthetic_labels(
    train: TabularData, size: int, strategy: str, generator: torch.Generator, *, epsilon: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose (ŝ_i, ŷ_i) for N_s = ``size`` synthetic rows (Algorithm 1, line 4).

    ``copy`` returns the client's own (s_i, y_i) and needs N_s = N; ``proportional`` keeps the
    client's (s, y) group proportions (largest-remainder rounding); ``noisy_proportional`` takes the
    proportions from the four (s, y) counts plus Laplace(2/``epsilon``) noise each (clipped at 0),
    which makes them ε-differentially private (changing one row moves two counts by 1: L1
    sensitivity 2); ``balanced`` gives each of the four (s, y) pairs 25% of N_s, as in the paper's
    small-N_s experiments.
    """
    if strategy == "copy":
        if size != len(train):
            raise ValueError(f"synthetic_labels='copy' needs synthetic_size = N = {len(train)}, got {size}")
        return train.s.clone(), train.y.clone()
    pairs = label_pairs(train.num_groups)
    if strategy == "balanced":
        return labels_from_counts(None, size, generator, train.num_groups)
    if strategy in ("proportional", "noisy_proportional"):
        counts = torch.tensor([float(((train.s == s) & (train.y == y)).sum()) for s, y in pairs])
        if strategy == "noisy_proportional":
            counts = (counts.double() + laplace_noise(2.0 / epsilon, len(pairs), generator)).clamp(min=0.0)
            if float(counts.sum()) == 0:
                counts = torch.ones(len(pairs), dtype=torch.float64)
        return labels_from_counts(counts, size, generator, train.num_groups)
    raise ValueError(f"synthetic_labels must be one of {LABEL_STRATEGIES}, got {strategy!r}")


def labels_from_counts(
    counts: torch.Tensor | None, size: int, generator: torch.Generator, num_groups: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` labels (ŝ_i, ŷ_i) in a random order, the (s, y) pairs of :func:`label_pairs` (the
    four of :data:`GROUPS` for two groups) in the proportions of ``counts`` (largest-remainder
    rounding), or in equal shares when ``counts`` is None (balanced over groups × labels)."""
    pairs = label_pairs(num_groups)
    shares = torch.full((len(pairs),), 1.0 / len(pairs), dtype=torch.float64) if counts is None else counts / counts.sum()
    quotas = torch.floor(shares * size).long()
    remainders = shares * size - quotas
    for index in torch.argsort(remainders, descending=True)[: size - int(quotas.sum())]:
        quotas[index] += 1
    s_hat = torch.cat([torch.full((int(q),), s, dtype=torch.float64) for (s, _), q in zip(pairs, quotas)])
    y_hat = torch.cat([torch.full((int(q),), y, dtype=torch.float64) for (_, y), q in zip(pairs, quotas)])
    order = torch.randperm(size, generator=generator)
    return s_hat[order], y_hat[order]


def laplace_noise(scale: float, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` draws of Laplace(0, ``scale``) by inverting the distribution function of uniform
    draws from ``generator``: −scale · sign(u) · log(1 − 2|u|), u ~ U(−½, ½)."""
    uniform = torch.rand(count, generator=generator, dtype=torch.float64) - 0.5
    return -scale * uniform.sign() * torch.log1p(-2.0 * uniform.abs())


SIZE_NOISE_STREAM = 7919
"""Mixed into a client's seed for the noise of its reported size (apart from its synthesis's draws)."""


def noisy_count(count: int, epsilon: float, *, seed: int) -> float:
    """A client's row count N + Laplace(1/ε), at least 1: ε-differentially private (adding or
    removing one row moves N by 1), seeded by ``seed`` (the client's synthesis seed) on a stream of
    its own. What ``union_weights: noisy`` reports for the server's weighing of clients."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"size_epsilon must be a finite number > 0, got {epsilon}")
    generator = torch.Generator().manual_seed(seed * 10007 + SIZE_NOISE_STREAM)
    return max(1.0, float(count) + float(laplace_noise(1.0 / epsilon, 1, generator)[0]))


def initial_features(
    train: TabularData, s_hat: torch.Tensor, y_hat: torch.Tensor, init: str, generator: torch.Generator
) -> torch.Tensor:
    """Initial synthetic features x̂_0 (Algorithm 1, line 5).

    ``gaussian``: each feature drawn from N(mean, std²) of the client's training features (the
    paper). ``subsample``: for each synthetic row, a real row of the same (s, y) group (any row if
    the client has none of that group), drawn with replacement. ``group_gaussian``: the rows of
    each (ŝ, ŷ) group are normal draws made to have exactly the mean μ_g and covariance Σ_g of the
    client's rows of that group (shrunk towards those of all its rows with the weight of n = d + 1
    rows, :func:`group_moments`): the draws are centred and whitened by their own sample covariance,
    then coloured by Σ_g (within the draws' span when a group has no more rows than features).
    Realistic rows whose first two moments per group are the client's and whose loss and curvature
    are those of its data's normal model, none of them a copy of a real row; unions of such sets,
    weighted by the clients' sizes, have the pooled data's group moments (docs/method.md).
    """
    if init == "group_gaussian":
        x = torch.empty(len(s_hat), train.num_features, dtype=train.x.dtype)
        for (s, y), (mean, covariance) in zip(label_pairs(train.num_groups), group_moments(train)):
            wanted = ((s_hat == s) & (y_hat == y)).nonzero().squeeze(1)
            noise = torch.randn(len(wanted), train.num_features, generator=generator, dtype=train.x.dtype)
            x[wanted] = mean + _whitened(noise) @ _symmetric_root(covariance)
        return x
    if init == "gaussian":
        return gaussian_features(train.x.mean(dim=0), train.x.std(dim=0), len(s_hat), generator)
    if init == "subsample":
        rows = torch.empty(len(s_hat), dtype=torch.long)
        for s, y in label_pairs(train.num_groups):
            wanted = ((s_hat == s) & (y_hat == y)).nonzero().squeeze(1)
            pool = ((train.s == s) & (train.y == y)).nonzero().squeeze(1)
            if len(pool) == 0:
                pool = torch.arange(len(train))
            rows[wanted] = pool[torch.randint(len(pool), (len(wanted),), generator=generator)]
        return train.x[rows].clone()
    raise ValueError(f"init must be one of {INIT_STRATEGIES}, got {init!r}")


def gaussian_features(mean: torch.Tensor, std: torch.Tensor, rows: int, generator: torch.Generator) -> torch.Tensor:
    """``rows`` feature vectors drawn from N(mean, diag(std²)) (the ``gaussian`` x̂_0)."""
    noise = torch.randn(rows, len(mean), generator=generator, dtype=torch.float64)
    return mean + noise * std


class RealDataSummary(Protocol):
    """What the synthesis learns about a client's real rows when it must not read them (the
    differentially private synthesis, :mod:`fedsynth.privacy.synthesis`): everything
    :func:`synthesize` takes from the rows, as functions of a summary of them."""

    def group_counts(self) -> torch.Tensor:
        """The four (s, y) counts in the order of :data:`GROUPS` (``proportional`` labels)."""

    def feature_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each feature's mean and standard deviation (the ``gaussian`` x̂_0)."""

    def real_terms(self, config: SynthesisConfig) -> tuple[Any, BoundMeasure]:
        """The real-data terms of P for ``config``'s model and measure: a loss with the
        :meth:`LogisticObjective.at` interface (``at(θ).value()``, ``.gradient(plus=)``) and the
        measure F bound to the summary."""


def _symmetric_root(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0.0).sqrt()) @ vectors.T


def _whitened(draws: torch.Tensor) -> torch.Tensor:
    """``draws`` centred and multiplied by the inverse root of their sample covariance (1/n): rows
    of mean 0 and covariance I within their span (the projection onto it when n ≤ d). One row (or
    none) comes back as zeros: the group's rows are then its mean."""
    if len(draws) < 2:
        return torch.zeros_like(draws)
    centred = draws - draws.mean(dim=0)
    values, vectors = torch.linalg.eigh(centred.T @ centred / len(draws))
    kept = values > 1e-10 * values.max()
    return centred @ ((vectors[:, kept] / values[kept].sqrt()) @ vectors[:, kept].T)


def group_moments(train: TabularData) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per (s, y) pair of :func:`label_pairs` (the four of :data:`GROUPS` for two groups), the
    mean and covariance of the client's rows of that group, each shrunk towards the mean and
    covariance of all its rows with the weight of m = d + 1 rows: μ_g = (N_g m_g + m μ)/(N_g + m), Σ_g likewise (Σ itself shrunk towards the
    identity, the standardized features' scale, with the same weight). A large group keeps its own
    moments; a group of a handful of rows (or none) gets nearly the client's, so no synthetic group
    is centred on a few real rows."""
    x = train.x
    d = train.num_features
    prior = float(d + 1)
    identity = torch.eye(d, dtype=x.dtype)
    mean = x.mean(dim=0)
    scatter = (x - mean).T @ (x - mean)
    covariance = (scatter + prior * identity) / (len(x) + prior)
    moments = []
    for s, y in label_pairs(train.num_groups):
        rows = x[(train.s == s) & (train.y == y)]
        count = float(len(rows))
        if count == 0:
            moments.append((mean, covariance))
            continue
        group_mean = rows.mean(dim=0)
        centred = rows - group_mean
        moments.append(
            (
                (count * group_mean + prior * mean) / (count + prior),
                (centred.T @ centred + prior * covariance) / (count + prior),
            )
        )
    return moments


class GroupMeans:
    """The linear constraints ``keep_group_means`` keeps x̂ on (:meth:`project`, after every Adam
    step): each (ŝ, ŷ) group's mean of x̂ is the client's (shrunk) group mean of
    :func:`group_moments`, and x̂ lies in the affine hull of the client's rows when it has at least
    2n of them (n = d + 1; fewer rows span too few directions to tell a structural linear relation,
    such as a one-hot block summing to 1, from a lack of data)."""

    def __init__(self, train: TabularData, s_hat: torch.Tensor, y_hat: torch.Tensor) -> None:
        pairs = label_pairs(train.num_groups)
        self.members = [((s_hat == s) & (y_hat == y)).nonzero().squeeze(1) for s, y in pairs]
        self.means = [mean for mean, _ in group_moments(train)]
        self.centre = train.x.mean(dim=0)
        self.basis: torch.Tensor | None = None
        if len(train) >= 2 * (train.num_features + 1):
            _, singular, right = torch.linalg.svd(train.x - self.centre, full_matrices=False)
            kept = singular > 1e-9 * singular[0]
            if not bool(kept.all()):
                self.basis = right[kept].T  # d × r, orthonormal columns spanning the hull's directions

    @torch.no_grad()
    def project(self, x_hat: torch.Tensor) -> None:
        """Move ``x_hat`` (in place) onto the constraints: into the hull, then each group's rows by
        one shift to the group's mean (the hull holds every group mean, so the shift keeps the rows
        in it)."""
        if self.basis is not None:
            x_hat.copy_(self.centre + ((x_hat - self.centre) @ self.basis) @ self.basis.T)
        for rows, mean in zip(self.members, self.means):
            if len(rows):
                x_hat[rows] += mean - x_hat[rows].mean(dim=0)


class _RealDataTerms(torch.autograd.Function):
    """ℓ({d_i}, θ) + ρ_o/2 · F(θ)², the real-data part of P (eq. 11), with its gradient in θ
    computed in the forward pass in closed form: (1/N) Aᵀ(−y ⊙ σ(z)) + ρ_o F(θ) ∇_θF(θ),
    z = −y ⊙ Aθ, where ℓ is the :class:`LogisticObjective` of the real rows and F the fairness
    measure bound to them (eq. (2) by default)."""

    @staticmethod
    def forward(ctx, theta, loss, fairness, rho_o):  # type: ignore[override]
        point = loss.at(theta)
        measure, measure_grad = fairness(theta)
        value = point.value() + 0.5 * rho_o * measure * measure
        ctx.save_for_backward(point.gradient(plus=(measure_grad, rho_o * float(measure))))
        return value

    @staticmethod
    def backward(ctx, grad_value):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_value, None, None, None


class _SquaredNorm(torch.autograd.Function):
    """‖x‖² = Σ x_ij² in one pass, with the one-operation backward 2x."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        flat = x.reshape(-1)
        return flat.dot(flat)

    @staticmethod
    def backward(ctx, grad_value):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return x * (2.0 * grad_value)


class PenaltyObjective:
    """The outer objective P(x̂; θ) of eq. (11), with the real-data terms precomputed.

    P = ℓ({d_i}, θ) + ρ_o/2 · F(θ; d)² + ρ_s/2 · F(θ; d̂(x̂))² + λ_x/(2(N_s n)²) Σ_i ‖x̂_i‖²,

    F = ``config.measure`` (:mod:`fedsynth.core.fairness`); with the default ``covariance``,
    F(θ; d) = (1/N) Σ_i (s_i − s̄) a_iᵀθ and this is the paper's eq. (11) exactly.
    ``real_loss`` (ℓ on the real rows) and ``real_measure`` (F bound to them) are the real-data
    terms; their :meth:`~fedsynth.core.model.LogisticPoint.row_gradients` and
    :meth:`~fedsynth.core.fairness.BoundMeasure.row_gradients` give their per-row θ-gradients. With
    a ``summary`` (:class:`RealDataSummary`) they are the summary's, and ``train``'s rows are not
    read (only its column count).
    """

    def __init__(
        self,
        train: TabularData,
        s_hat: torch.Tensor,
        y_hat: torch.Tensor,
        config: SynthesisConfig,
        *,
        summary: RealDataSummary | None = None,
    ) -> None:
        self.config = config
        self.model = config.model
        self.measure = config.measure
        self.n = self.model.paper_n(train.num_features, train.num_groups)
        self.num_groups = train.num_groups
        self.s_hat = s_hat
        self.y_hat = y_hat
        if summary is not None:  # the rows stay unread: the terms come from the summary
            self.real_loss, self.real_measure = summary.real_terms(config)
            return
        real_a = self.model.design(train.x, train.s, train.num_groups)
        self.real_loss = LogisticObjective(real_a, train.y)
        self.real_measure: BoundMeasure = self.measure.bind(real_a, train.s, train.y)

    def synthetic_fairness(self, x_hat: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The fairness measure F(θ) on the synthetic data (depends on x̂ directly, through â)."""
        a = self.model.design(x_hat, self.s_hat, self.num_groups)
        return self.measure.bind(a, self.s_hat, self.y_hat)(theta)[0]

    def __call__(self, x_hat: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """P(x̂; θ), differentiable in both (the real-data terms and ‖x̂‖² have closed-form
        backward passes; the ρ_s term, which depends on x̂ directly, goes through autograd)."""
        cfg = self.config
        value = _RealDataTerms.apply(theta, self.real_loss, self.real_measure, cfg.rho_o)
        if cfg.rho_s > 0:
            value = value + 0.5 * cfg.rho_s * self.synthetic_fairness(x_hat, theta) ** 2
        scale = 2.0 * (len(x_hat) * self.n) ** 2
        return value + cfg.lambda_x / scale * _SquaredNorm.apply(x_hat)


class InnerModel:
    """θ(x̂) = argmin_θ ℓ_r(x̂, θ) (eq. 11) as a differentiable function of x̂ (Algorithm 1,
    line 9; its backward is line 10, eq. (14), by CG on the closed-form Hessian-vector product and
    design vector-Jacobian product of :meth:`LogisticObjective.at`, from the solve's σ(z)).

    The model solves a sequence of inner problems, one per outer step: with
    ``config.warm_start`` it keeps one :class:`LogisticSolver` (its L-BFGS curvature memory) and
    its last two solutions, and hands :func:`implicit_argmin` the start θ_0 of each solve
    (:func:`warm_start`) explicitly; the solve's :class:`InnerSolution` comes back as the aux
    output and gives the backward σ(z) at θ*.

    One call builds the design matrix â = (x̂, ŝ[, 1]) once; the forward solve and the backward
    share it. With ``design``, a preallocated â (its ŝ and intercept columns already written),
    each call copies x̂ into its first columns instead of allocating a new â: then the backward
    of one call must run before the next call, as in ``synthesize``.
    """

    def __init__(
        self,
        s_hat: torch.Tensor,
        y_hat: torch.Tensor,
        config: SynthesisConfig,
        history: SynthesisHistory,
        *,
        num_groups: int = 2,
        design: torch.Tensor | None = None,
    ) -> None:
        self.s_hat = s_hat
        self.y_hat = y_hat
        self.num_groups = num_groups
        self.config = config
        self.model = config.model
        self.history = history
        # ℓ_r on the preallocated â: one objective for every call (â changes in place)
        self.design_objective = None if design is None else self.model.objective(design, y_hat)
        self.linear_solve = cg(config.cg, history.implicit)
        self.solver: LogisticSolver | None = None
        self.latest: torch.Tensor | None = None  # θ_k, the last solution (warm start)
        self.previous: torch.Tensor | None = None  # θ_{k−1}

    def _objective(self, x_hat: torch.Tensor) -> LogisticObjective:
        """ℓ_r on â = (x̂, ŝ[, 1]): the preallocated â with x̂ copied in when there is one."""
        shared = self.design_objective
        if shared is not None and not (x_hat.requires_grad and torch.is_grad_enabled()):
            columns = shared.a[:, : x_hat.shape[1]]
            if columns.shape == x_hat.shape and shared.a.dtype == x_hat.dtype:
                columns.copy_(x_hat)
                return shared
        return self.model.objective(self.model.design(x_hat, self.s_hat, self.num_groups), self.y_hat)

    def start(self) -> torch.Tensor | None:
        """θ_0 of the next solve: :func:`warm_start` of the last two solutions, or ``None`` (zero)
        without ``config.warm_start``."""
        if not self.config.warm_start:
            return None
        return warm_start(self.latest, self.previous, self.config.inner.extrapolate)

    def solve_objective(self, objective: LogisticObjective, theta0: torch.Tensor | None) -> InnerSolution:
        """Solve the inner problem ``objective`` (ℓ_r on â) from ``theta0`` (no gradient) and
        record it (history, last solutions)."""
        if self.solver is None or not self.config.warm_start:
            num_features = objective.a.shape[1] - self.model.num_weights(0, self.num_groups)  # â = (x̂, ŝ[, 1])
            self.solver = self.model.inner_solver(num_features, dtype=objective.a.dtype, num_groups=self.num_groups)
        solution = self.solver.solve(objective, theta0)
        self.history.inner_iterations.append(solution.iterations)
        self.history.inner_unconverged += not solution.converged
        self.previous, self.latest = self.latest, solution.theta
        return solution

    def solve(self, x_hat: torch.Tensor) -> torch.Tensor:
        """Solve the inner problem at ``x_hat`` (no gradient) from :meth:`start`; return θ."""
        return self.solve_objective(self._objective(x_hat.detach()), self.start()).theta

    def __call__(self, x_hat: torch.Tensor) -> torch.Tensor:
        """θ(x̂), differentiable in ``x_hat`` by :func:`implicit_argmin`."""
        objective = self._objective(x_hat.detach())
        columns = x_hat.shape[1]

        def solver(theta0: torch.Tensor | None, x: torch.Tensor) -> tuple[torch.Tensor, InnerSolution]:
            solution = self.solve_objective(objective, theta0)
            return solution.theta, solution

        def linearize(theta: torch.Tensor, params: Sequence[torch.Tensor], solution: InnerSolution):
            point = objective.at(theta, sigmoid_z=solution.sigmoid_z)
            return point.hvp, lambda u: (point.design_vjp(u, columns),)

        theta, _ = implicit_argmin(solver, self.start(), [x_hat], linearize=linearize, solve=self.linear_solve)
        return theta


SUMMARY_LABELS = ("balanced", "proportional")
"""The label strategies a :class:`RealDataSummary` supports."""


def summary_synthetic_size(config: SynthesisConfig) -> int:
    """N_s of a synthesis from a summary; ``ValueError`` naming the key for the settings that need
    the rows themselves (N_s = N; ``copy`` / ``noisy_proportional`` labels; ``subsample``, which
    copies real rows; ``group_gaussian`` and ``keep_group_means``, which send each (s, y) group's
    exact feature moments; a ``fairness_target``, which is searched on the rows)."""
    if config.init != "gaussian" or config.keep_group_means or config.fairness_target is not None:
        raise ValueError(
            "privacy on needs init=gaussian, keep_group_means=false and no fairness_target (group_gaussian and "
            "keep_group_means send each (s, y) group's exact feature moments, subsample copies real rows, a "
            f"target is searched on the rows), got init={config.init!r}, keep_group_means={config.keep_group_means}, "
            f"fairness_target={config.fairness_target}: use method=single_shot_paper or method=dp_suffstats"
        )
    if config.synthetic_size is None:
        raise ValueError("synthetic_size must be an integer with privacy on (full, N_s = N, reveals N)")
    if config.synthetic_labels not in SUMMARY_LABELS:
        raise ValueError(
            f"synthetic_labels must be one of {SUMMARY_LABELS} with privacy on, got {config.synthetic_labels!r} "
            "(proportional takes the (s, y) counts from the private release: no separate label_epsilon)"
        )
    return config.synthetic_size


def converged(objective: Sequence[float], tolerance: float, window: int = STOPPING_WINDOW) -> bool:
    """The outer problem's stopping rule: after each full window of ``window`` iterations, whether
    the best P of the last window improved on the best P before it by less than ``tolerance`` · |P|
    (Adam's P is not monotone, so the best values are compared). Never with ``tolerance`` = 0."""
    k = len(objective)
    if tolerance <= 0 or k < 2 * window or k % window:
        return False
    before, recent = min(objective[: k - window]), min(objective[k - window :])
    return before - recent < tolerance * abs(recent)


def synthesize(
    train: TabularData,
    config: SynthesisConfig,
    *,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
    summary: RealDataSummary | None = None,
) -> SynthesisResult:
    """Learn a client's synthetic dataset, Algorithm 1 lines 2–16.

    Chooses (ŝ, ŷ) and x̂_0 (seeded), then runs at most ``k_max`` Adam steps on P(x̂) of eq. (12)
    (fewer when ``config.tolerance`` > 0 says P has converged). The gradient is the exact gradient
    of P: the path through θ(x̂) by implicit differentiation plus the direct dependence of the λ_x
    and ρ_s terms on x̂ (the paper's eq. (13) writes only the λ_x one). With
    ``config.keep_group_means`` every step is followed by the projection onto :class:`GroupMeans`;
    with ``config.fairness_target``, ρ_o is the smallest penalty weight whose fit on the client's
    rows meets the target (eq. (8)'s constraint). ``progress(k, P_k)`` is called after every outer
    step. N_s may exceed N (the rows then stand for a distribution, not for single rows), except
    for ``copy`` labels, which are the client's own.

    With a ``summary`` (:class:`RealDataSummary`, the private path) the (s, y) counts of
    ``proportional`` labels, the moments of the ``gaussian`` x̂_0 and the real-data terms of P all
    come from it, and ``train``'s rows are not read (pass a table without rows); N_s must be
    given and the settings that need the rows (``copy``, ``noisy_proportional``, ``subsample``,
    ``group_gaussian``, ``keep_group_means``, ``fairness_target``) are refused.
    """
    generator = torch.Generator().manual_seed(seed)
    if summary is None:
        if len(train) == 0:
            raise ValueError("cannot synthesize from an empty training set")
        size = len(train) if config.synthetic_size is None else config.synthetic_size
        s_hat, y_hat = choose_synthetic_labels(train, size, config.synthetic_labels, generator, epsilon=config.label_epsilon)
        x_hat = initial_features(train, s_hat, y_hat, config.init, generator)
    else:
        size = summary_synthetic_size(config)
        counts = summary.group_counts() if config.synthetic_labels == "proportional" else None
        s_hat, y_hat = labels_from_counts(counts, size, generator)
        x_hat = gaussian_features(*summary.feature_moments(), size, generator)
    x_hat.requires_grad_(True)

    history = SynthesisHistory(rho_o=config.rho_o)
    if config.fairness_target is not None:
        target = fit_to_target(train, config.model, config.measure, config.fairness_target, metric=config.target_metric)
        history.rho_o, history.target_achieved = target.rho, target.achieved
        config = dataclasses.replace(config, rho_o=target.rho)
    constraints = GroupMeans(train, s_hat, y_hat) if config.keep_group_means else None
    if constraints is not None:
        constraints.project(x_hat.data)
    objective = PenaltyObjective(train, s_hat, y_hat, config, summary=summary)
    # x̂ stays its own contiguous tensor: torch 2.13's fused CPU Adam mis-updates a strided
    # parameter (such as a column view of â), so â is a buffer x̂ is copied into
    design = config.model.design(x_hat.detach(), s_hat, train.num_groups)
    inner = InnerModel(s_hat, y_hat, config, history, design=design, num_groups=train.num_groups)
    allow_optimizer_setup_without_dynamo()
    optimizer = torch.optim.Adam([x_hat], lr=config.lr, fused=True)  # one kernel; same update rule
    for k in range(config.k_max):
        optimizer.zero_grad(set_to_none=True)
        value = objective(x_hat, inner(x_hat))
        value.backward()
        adam_step(optimizer)
        if constraints is not None:
            constraints.project(x_hat.data)
        history.objective.append(float(value.detach()))
        if not math.isfinite(history.objective[-1]):
            raise FloatingPointError(
                f"the objective P became {history.objective[-1]} at outer iteration {k + 1}; "
                "lower lr or raise lambda_theta / lambda_x"
            )
        if progress is not None:
            progress(k, history.objective[-1])
        if converged(history.objective, config.tolerance):
            break

    x_final = x_hat.detach()
    theta = inner.solve(x_final)
    return SynthesisResult(TabularData(x_final, s_hat, y_hat, train.feature_names, train.num_groups), theta, history)
