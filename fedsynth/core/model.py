"""The linear logistic model of the paper: loss (9), regularized loss (11), the one L-BFGS solver, and
:class:`LogisticModel`, which owns them."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fedsynth.core.fairness import BoundMeasure, fairness_measure
from fedsynth.data.types import TabularData


def design_matrix(x: torch.Tensor, s: torch.Tensor, fit_intercept: bool) -> torch.Tensor:
    """The paper's feature vectors a_i = (x_i, s_i), with a trailing column of ones when
    ``fit_intercept`` (the paper's model d_θ(a) = aᵀθ has no intercept)."""
    columns = [x, s.unsqueeze(1).to(x.dtype)]
    if fit_intercept:
        columns.append(torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device))
    return torch.cat(columns, dim=1)


def logistic_loss(a: torch.Tensor, y: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss, eq. (9): (1/N) Σ log(1 + exp(−y_i a_iᵀθ))."""
    return F.softplus(-y * (a @ theta)).mean()


def regularization_weight(lambda_theta: float, n: int) -> float:
    """The coefficient c of c‖θ‖² in ℓ_r, eq. (11): λ_θ / (2 n²)."""
    return lambda_theta / (2.0 * n * n)


def regularized_loss(
    a: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, lambda_theta: float, n: int
) -> torch.Tensor:
    """The inner objective ℓ_r of eq. (11): logistic loss (9) + λ_θ/(2n²)‖θ‖².

    ``n`` is the paper's feature count (the columns of a_i = (x_i, s_i), intercept not counted); with an intercept the
    whole of θ, intercept included, is regularized so that ℓ_r stays strongly convex.
    """
    return logistic_loss(a, y, theta) + regularization_weight(lambda_theta, n) * theta.dot(theta)


def regularized_loss_grad(
    a: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, lambda_theta: float, n: int
) -> torch.Tensor:
    """∇_θ ℓ_r of eq. (11) in closed form: −(1/N) Aᵀ(y ⊙ σ(−y ⊙ Aθ)) + (λ_θ/n²) θ.

    It is the optimality condition whose root is the inner solution θ(x̂); it is differentiable
    in both ``theta`` and ``a``, which implicit differentiation (eq. 14) relies on.
    """
    weights = y * torch.sigmoid(-y * (a @ theta))
    return -(a.T @ weights) / a.shape[0] + 2.0 * regularization_weight(lambda_theta, n) * theta


def regularized_loss_and_grad(
    a: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, lambda_theta: float, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """ℓ_r (eq. 11) and its gradient ∇_θ ℓ_r together, sharing the one product Aθ.

    The same values as :func:`regularized_loss` and :func:`regularized_loss_grad` (to rounding);
    this is what the L-BFGS closure evaluates. With z = −y ⊙ Aθ:
    ℓ_r = mean(softplus(z)) + c‖θ‖² and ∇_θ ℓ_r = (1/N) Aᵀ(−y ⊙ σ(z)) + 2cθ, c = λ_θ/(2n²).
    """
    loss, grad, _ = _scaled_loss_and_grad(a, -y, theta, regularization_weight(lambda_theta, n), 1.0 / a.shape[0])
    return loss, grad


def _scaled_loss_and_grad(
    a: torch.Tensor, neg_y: torch.Tensor, theta: torch.Tensor, ridge: float, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """α Σ softplus(z) + c‖θ‖², its gradient α Aᵀ(−y ⊙ σ(z)) + 2cθ, and σ(z), for z = −y ⊙ Aθ:
    ``s · ℓ_r`` and ``s · ∇_θ ℓ_r`` with α = s/N and c = s λ_θ/(2n²). Seven tensor operations."""
    z = neg_y * (a @ theta)
    prob = torch.sigmoid(z)
    loss = F.softplus(z).sum().mul_(alpha).add_(theta.dot(theta), alpha=ridge)
    grad = torch.addmv(theta, a.T, neg_y * prob, beta=2.0 * ridge, alpha=alpha)
    return loss, grad, prob


@dataclass(frozen=True)
class InnerSolverConfig:
    """Settings of the L-BFGS inner solver (strong Wolfe line search).

    Attributes:
        max_iter: iteration cap per solve (the paper uses 100).
        tolerance_grad: stop when max_j |∂ℓ_r/∂θ_j| falls to this value (torch's LBFGS criterion,
            applied to the gradient of ℓ_r itself whatever ``objective_scale``).
        tolerance_change: stop when the step or the change of the (scaled) loss falls below this
            value.
        history_size: number of curvature pairs L-BFGS keeps.
        objective_scale: L-BFGS minimizes ``objective_scale · ℓ_r`` (same argmin). torch's LBFGS
            drops every curvature pair with sᵀy ≤ 1e-10, an absolute threshold: near the solution
            (a warm start) the steps are so short that it would drop them all and fall back to
            steepest descent. Scaling the objective scales sᵀy and keeps those pairs.
        extrapolate: in a sequence of problems, start each solve from the secant prediction
            2θ_k − θ_{k−1} of the last two solutions instead of θ_k (:func:`warm_start`; no
            effect on a single solve).
    """

    max_iter: int = 100
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-15
    history_size: int = 20
    objective_scale: float = 1e6
    extrapolate: bool = True

    def __post_init__(self) -> None:
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if self.tolerance_grad <= 0 or self.tolerance_change <= 0:
            raise ValueError("tolerance_grad and tolerance_change must be positive")
        if self.history_size < 1:
            raise ValueError(f"history_size must be >= 1, got {self.history_size}")
        if not (self.objective_scale > 0 and self.objective_scale < float("inf")):
            raise ValueError(f"objective_scale must be a finite number > 0, got {self.objective_scale}")


DENSE_HESSIAN_MAX_COLUMNS = 64
"""Widest design matrix for which :class:`LogisticDerivatives` forms the Hessian (cost 2Nd² once,
against 4Nd per product for the matrix-free form; a backward takes ~10 products)."""


class LogisticDerivatives:
    """The derivatives of ∇_θ ℓ_r (eq. 11) at (θ, A) that implicit differentiation (eq. 14)
    needs, in closed form and sharing one product Aθ: with z = −y ⊙ Aθ, r = −y ⊙ σ(z) and
    w = σ(z) σ(−z),

    * the Hessian-vector product  H v = (1/N) Aᵀ(w ⊙ A v) + (λ_θ/n²) v  (:meth:`hvp`);
    * the vector-Jacobian product of the optimality condition F = ∇_θ ℓ_r = (1/N) Aᵀ r + (λ_θ/n²) θ
      in A:  (∂⟨u, F⟩/∂A) = (1/N) [r uᵀ + (w ⊙ A u) θᵀ]  (:meth:`design_vjp`).

    For a narrow A (d ≤ :data:`DENSE_HESSIAN_MAX_COLUMNS`, e.g. the paper's datasets) the d × d
    Hessian H = (1/N) Aᵀ diag(w) A + (λ_θ/n²) I is formed once (one pass, 2Nd² flops) and each
    product is a d × d one: a backward's CG takes ~10 products, each of which would otherwise cost two
    passes over A (4Nd flops) and dispatch two N-long operations. Wider designs use the matrix-free
    product. The labels must be ±1 (y² = 1), as everywhere in the model. ``sigmoid_z``, if given, must be σ(z) at exactly
    this (θ, A) (:attr:`InnerSolution.sigmoid_z` of a solve); it saves the pass Aθ.
    """

    def __init__(
        self,
        a: torch.Tensor,
        y: torch.Tensor,
        theta: torch.Tensor,
        lambda_theta: float,
        n: int,
        *,
        sigmoid_z: torch.Tensor | None = None,
    ) -> None:
        self.a = a.detach()
        self.theta = theta.detach()
        neg_y = -y.detach()
        # σ(z) at this θ, unless the caller already has it (the inner solver's last evaluation)
        prob = torch.sigmoid(neg_y * (self.a @ self.theta)) if sigmoid_z is None else sigmoid_z.detach()
        inv_n = 1.0 / self.a.shape[0]
        self.residual = neg_y.mul(prob).mul_(inv_n)  # r / N
        self.weights = prob.mul(1.0 - prob).mul_(inv_n)  # σ(z) σ(−z) / N
        self.ridge = 2.0 * regularization_weight(lambda_theta, n)
        self.hessian: torch.Tensor | None = None
        if self.a.shape[1] <= DENSE_HESSIAN_MAX_COLUMNS:
            self.hessian = (self.a * self.weights.unsqueeze(1)).T @ self.a
            self.hessian.diagonal().add_(self.ridge)

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H v, the Hessian of ℓ_r in θ times ``v``."""
        if self.hessian is not None:
            return self.hessian @ v
        return torch.addmv(v, self.a.T, self.weights * (self.a @ v), beta=self.ridge)

    def design_vjp(self, u: torch.Tensor, columns: int | None = None) -> torch.Tensor:
        """(∂⟨u, ∇_θ ℓ_r⟩/∂A), an N × d matrix, or only its first ``columns`` columns."""
        k = self.a.shape[1] if columns is None else columns
        through_margin = self.weights * (self.a @ u)
        # r uᵀ + (w ⊙ A u) θᵀ; addcmul_ with a broadcast column is faster on CPU than addr_
        return torch.outer(self.residual, u[:k]).addcmul_(through_margin.unsqueeze(1), self.theta[:k])


def regularized_loss_hvp(
    a: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, lambda_theta: float, n: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The Hessian of ℓ_r (eq. 11) at θ as a product v ↦ H v, in closed form:
    H v = (1/N) Aᵀ(σ(m) σ(−m) ⊙ A v) + (λ_θ/n²) v with m = Aθ (:class:`LogisticDerivatives`: the
    d × d H is formed once for a narrow A, else the product is matrix-free)."""
    return LogisticDerivatives(a, y, theta, lambda_theta, n).hvp


@dataclass(frozen=True)
class InnerSolution:
    """The result of one inner solve: θ*, the iterations used, the final gradient max-norm,
    whether it met ``tolerance_grad``, and σ(z), z = −y ⊙ Aθ*, when the solver's last evaluation
    was at θ* (else ``None``), for :class:`LogisticDerivatives`."""

    theta: torch.Tensor
    iterations: int
    grad_norm: float
    converged: bool
    sigmoid_z: torch.Tensor | None = None


def warm_start(latest: torch.Tensor | None, previous: torch.Tensor | None, extrapolate: bool) -> torch.Tensor | None:
    """The start θ_0 of the next solve in a sequence of slowly changing problems (Algorithm 1
    solves (11) for a slowly changing x̂): the latest solution θ_k, or with ``extrapolate`` and two
    solutions the secant prediction 2θ_k − θ_{k−1}; ``None`` (the solver's own start) before the
    first."""
    if latest is None:
        return None
    if extrapolate and previous is not None:
        return latest.mul(2.0).sub_(previous)
    return latest


OPTIMIZER_SETUP_METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
"""The ``torch.optim.Optimizer`` methods torch wraps in ``torch._disable_dynamo``."""


def skip_dynamo_import_of_optimizer_setup() -> None:
    """Let ``torch.optim.Optimizer``'s set-up methods run without importing ``torch._dynamo``.

    torch wraps :data:`OPTIMIZER_SETUP_METHODS` in ``torch._disable_dynamo``, whose first call
    imports ``torch._dynamo`` (≈ 1.6 s on one core, paid by every process that builds an
    optimizer: the server's fit waited for it) only to mark the method as not to be compiled. The
    wrapper caches that marked function on the wrapped one (attribute ``__dynamo_disable``);
    caching the plain function there instead makes the first call as cheap as the later ones.
    fedsynth compiles no optimizer; once ``torch._dynamo`` is imported (``torch.compile``), the
    wrappers are left as torch made them.
    """
    if "torch._dynamo" in sys.modules:
        return
    for name in OPTIMIZER_SETUP_METHODS:
        function = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if function is not None and getattr(function, "__dynamo_disable", None) is None:
            setattr(function, "__dynamo_disable", function)


class LogisticSolver:
    """Solves a sequence of inner problems argmin_θ ℓ_r(A_k, y, θ) (eq. 11) with one
    ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``, the one L-BFGS set-up of fedsynth.

    Each solve starts from the given θ_0 (e.g. :func:`warm_start`), else from where the previous
    one ended (zero at first), and keeps the L-BFGS curvature pairs gathered so far: Algorithm 1
    solves (11) for slowly changing x̂, so the previous curvature is a good first guess.
    The one pair that would straddle two different problems is dropped. L-BFGS minimizes
    ``solver.objective_scale · ℓ_r`` (see :class:`InnerSolverConfig`); the objective and gradient
    are evaluated together in closed form (as :func:`regularized_loss_and_grad`), so no autograd
    graph is built.
    """

    def __init__(
        self,
        num_weights: int,
        lambda_theta: float,
        n: int,
        solver: InnerSolverConfig = InnerSolverConfig(),
        *,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.lambda_theta = lambda_theta
        self.n = n
        self.solver = solver
        self.theta = torch.zeros(num_weights, dtype=dtype).requires_grad_(True)
        skip_dynamo_import_of_optimizer_setup()
        self.optimizer = torch.optim.LBFGS(
            [self.theta],
            lr=1.0,
            max_iter=solver.max_iter,
            tolerance_grad=solver.tolerance_grad * solver.objective_scale,
            tolerance_change=solver.tolerance_change,
            history_size=solver.history_size,
            line_search_fn="strong_wolfe",
        )

    def solve(
        self,
        a: torch.Tensor,
        y: torch.Tensor,
        theta0: torch.Tensor | None = None,
        *,
        penalty: tuple[float, BoundMeasure] | None = None,
    ) -> InnerSolution:
        """Minimize ℓ_r(a, y, ·) (eq. 11), or with ``penalty = (ρ, F)`` ℓ_r + ρ/2·F(θ)² (F a
        :mod:`fedsynth.core.fairness` measure bound to the rows), from ``theta0`` (default: where
        the previous solve ended, zero at first) and return the solution (a detached copy)."""
        a = a.detach()
        neg_y = -y.detach()
        state = self.optimizer.state[self.theta]
        if "d" in state:
            # torch's LBFGS would pair the last step of the previous problem with a gradient of
            # this one; a zero step length makes it skip that pair and keep the others.
            state["t"] = 0.0
        iterations_before = state.get("n_iter", 0)
        theta = self.theta
        if theta0 is not None:
            with torch.no_grad():
                theta.copy_(theta0)
        scale = self.solver.objective_scale
        ridge = scale * regularization_weight(self.lambda_theta, self.n)
        alpha = scale / a.shape[0]
        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            # scale · ℓ_r and its gradient (regularized_loss_and_grad, scaled, −y precomputed)
            with torch.no_grad():
                point = theta.detach()
                loss, grad, prob = _scaled_loss_and_grad(a, neg_y, point, ridge, alpha)
                if penalty is not None:
                    rho, measure = penalty
                    value, measure_grad = measure(point)
                    loss = loss + (0.5 * scale * rho) * value * value
                    grad = grad.add_(measure_grad, alpha=scale * rho * float(value))
                theta.grad = grad
                last["theta"], last["grad"], last["prob"] = point.clone(), grad, prob
            return loss

        self.optimizer.step(closure)
        with torch.no_grad():
            solution = theta.detach().clone()
            if torch.equal(last["theta"], solution):
                grad, sigmoid_z = last["grad"], last["prob"]  # the last evaluation was at the accepted point
            else:
                grad, sigmoid_z = regularized_loss_grad(a, -neg_y, solution, self.lambda_theta, self.n) * scale, None
                if penalty is not None:
                    value, measure_grad = penalty[1](solution)
                    grad.add_(measure_grad, alpha=scale * penalty[0] * float(value))
            scaled_norm = float(grad.abs().max())
        return InnerSolution(
            theta=solution,
            iterations=int(state.get("n_iter", 0)) - iterations_before,
            grad_norm=scaled_norm / scale,
            converged=scaled_norm <= self.solver.tolerance_grad * scale,
            sigmoid_z=sigmoid_z,
        )


@dataclass(frozen=True)
class LogisticModel:
    """The paper's linear logistic model d_θ(a) = aᵀθ over a_i = (x_i, s_i) (eq. 9), L2-regularized
    as ℓ_r (eq. 11): the one owner of the layout of θ, the paper's n, the design matrix, the fit and
    the predictions. The clients' inner problem, the server (eq. 15) and the baselines all use it.

    Parameters are stored as given (scikit-learn style); ``fit`` and ``decision`` validate their
    data. θ itself is not stored: a fit returns it (an :class:`InnerSolution`), and ``decision`` /
    ``predict`` take it, so one model describes the θ a server sends and every client evaluates.

    Attributes:
        lambda_theta: λ_θ of ℓ_r (eq. 11), > 0 (it makes ℓ_r strongly convex).
        fit_intercept: append a column of ones to a_i (off: the paper's aᵀθ exactly).
        solver: the L-BFGS settings of :meth:`fit` (:class:`InnerSolverConfig`).
    """

    lambda_theta: float = 1e-3
    fit_intercept: bool = True
    solver: InnerSolverConfig = InnerSolverConfig()

    def paper_n(self, num_features: int) -> int:
        """The paper's n for data with ``num_features`` columns of x: the entries of a_i = (x_i, s_i),
        the intercept not counted (it scales λ_θ in eq. (11) and λ_x in eq. (12))."""
        return num_features + 1

    def num_weights(self, num_features: int) -> int:
        """The length of θ: n, plus one with ``fit_intercept``."""
        return self.paper_n(num_features) + int(self.fit_intercept)

    def design(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The design matrix A with rows a_i = (x_i, s_i[, 1]) (:func:`design_matrix`)."""
        return design_matrix(x, s, self.fit_intercept)

    def inner_solver(self, num_features: int, *, dtype: torch.dtype = torch.float64) -> LogisticSolver:
        """A :class:`LogisticSolver` for a sequence of problems ℓ_r on data with ``num_features``
        columns of x (the clients' inner problem, Algorithm 1 line 9). Validates ``lambda_theta``."""
        if not (math.isfinite(self.lambda_theta) and self.lambda_theta > 0):
            raise ValueError(
                f"lambda_theta must be > 0 (it makes the inner problem strongly convex), got {self.lambda_theta}"
            )
        return LogisticSolver(
            self.num_weights(num_features), self.lambda_theta, self.paper_n(num_features), self.solver, dtype=dtype
        )

    def fit(
        self,
        data: TabularData,
        *,
        theta0: torch.Tensor | None = None,
        rho: float = 0.0,
        fairness: str = "covariance",
        fairness_temperature: float = 1.0,
    ) -> InnerSolution:
        """argmin_θ ℓ_r(θ) on ``data`` (eq. 11; the server's eq. 15 on the union of synthetic rows)
        from ``theta0`` (default zero). With ``rho > 0``, then argmin_θ ℓ_r + ρ/2·F(θ)² (F the
        :mod:`fedsynth.core.fairness` measure ``fairness`` on ``data``'s rows) from that solution:
        strongly convex for the linear measures; for the gap measures (non-convex in θ) the local
        minimum reached from the plain solution."""
        if not (rho >= 0 and rho < float("inf")):
            raise ValueError(f"rho must be a finite number >= 0, got {rho}")
        a = self.design(data.x, data.s)
        plain = self.inner_solver(data.num_features, dtype=a.dtype).solve(a, data.y, theta0)
        if rho == 0:
            return plain
        measure = fairness_measure(fairness, a, data.s, data.y, fairness_temperature)
        solver = self.inner_solver(data.num_features, dtype=a.dtype)
        return solver.solve(a, data.y, plain.theta, penalty=(rho, measure))

    def decision(self, theta: np.ndarray | torch.Tensor, data: TabularData) -> torch.Tensor:
        """The decision values d_θ(a_i) = a_iᵀθ on ``data``'s rows."""
        theta = torch.as_tensor(np.asarray(theta, dtype=np.float64) if not torch.is_tensor(theta) else theta).double()
        expected = self.num_weights(data.num_features)
        if theta.shape != (expected,):
            raise ValueError(
                f"the model has {tuple(theta.shape)} weights but the data need ({expected},) "
                f"({data.num_features} features + s{' + intercept' if self.fit_intercept else ''}; "
                "check model.fit_intercept)"
            )
        return self.design(data.x, data.s) @ theta

    def predict(self, theta: np.ndarray | torch.Tensor, data: TabularData) -> torch.Tensor:
        """Predicted labels y_θ(a_i) ∈ {−1, +1}: +1 where a_iᵀθ ≥ 0."""
        return torch.where(self.decision(theta, data) >= 0, 1.0, -1.0).double()


@dataclass(frozen=True)
class LogisticMixture:
    """A randomized classifier over one :class:`LogisticModel`: weights θ_j (the rows of ``thetas``)
    used with probability w_j (``weights``, summing to 1), e.g. fairlearn's ExponentiatedGradient.
    It travels as one flat vector ``[w_1..w_J, θ_1, ..., θ_J]`` (:meth:`pack`, :meth:`unpack`)."""

    thetas: np.ndarray
    weights: np.ndarray

    def pack(self) -> np.ndarray:
        """The flat vector ``[w_1..w_J, θ_1, ..., θ_J]``."""
        return np.concatenate([self.weights, self.thetas.ravel()])

    @classmethod
    def unpack(cls, packed: np.ndarray, width: int) -> "LogisticMixture":
        """Inverse of :meth:`pack` for models of ``width`` weights (:meth:`LogisticModel.num_weights`)."""
        packed = np.asarray(packed, dtype=np.float64)
        if packed.ndim != 1 or packed.size % (width + 1):
            raise ValueError(f"a mixture of {width}-weight models has J·{width + 1} entries, got {packed.shape}")
        count = packed.size // (width + 1)
        return cls(packed[count:].reshape(count, width), packed[:count])
