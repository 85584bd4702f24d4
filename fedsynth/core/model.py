"""The linear logistic model of the paper: the one form of its loss (9) and regularized loss (11),
:class:`LogisticObjective`; the one L-BFGS solver, :class:`LogisticSolver`; and
:class:`LogisticModel`, which owns the layout of θ and builds both."""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np
import torch
import torch.nn.functional as F

from fedsynth.core.fairness import BoundMeasure, Covariance, FairnessMeasure
from fedsynth.core.torch_compat import allow_optimizer_setup_without_dynamo
from fedsynth.data.types import TabularData, sensitive_columns


def design_matrix(x: torch.Tensor, s: torch.Tensor, fit_intercept: bool, num_groups: int = 2) -> torch.Tensor:
    """The paper's feature vectors a_i = (x_i, s_i), with a trailing column of ones when
    ``fit_intercept`` (the paper's model d_θ(a) = aᵀθ has no intercept); for ``num_groups`` k > 2
    s_i is the k − 1 group indicators (:func:`~fedsynth.data.types.sensitive_columns`)."""
    columns = [x, sensitive_columns(s, num_groups).to(x.dtype)]
    if fit_intercept:
        columns.append(torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device))
    return torch.cat(columns, dim=1)


def normalized_weight(weight: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Row weights scaled to sum to 1, checked: one finite, non-negative number per row, not all 0."""
    weight = torch.as_tensor(weight, dtype=torch.float64)
    if weight.shape != (num_rows,):
        raise ValueError(f"row weights must have shape ({num_rows},), got {tuple(weight.shape)}")
    total = float(weight.sum())
    if not (torch.isfinite(weight).all() and bool((weight >= 0).all()) and total > 0):
        raise ValueError("row weights must be finite, >= 0 and not all 0")
    return weight / total


def regularization_weight(lambda_theta: float, n: int) -> float:
    """The coefficient c of c‖θ‖² in ℓ_r, eq. (11): λ_θ / (2 n²)."""
    return lambda_theta / (2.0 * n * n)


class LogisticObjective:
    """The logistic objective on fixed rows (A, y), y_i ∈ {−1, +1}: the loss of eq. (9),
    ℓ(θ) = (1/N) Σ_i log(1 + exp(−y_i a_iᵀθ)), plus ``ridge`` · ‖θ‖²; with ridge
    c = λ_θ/(2n²) (:meth:`regularized`) it is ℓ_r of eq. (11). With ``weight`` (one non-negative
    number per row, scaled here to sum to 1) the mean 1/N Σ_i becomes the weighted mean Σ_i w_i
    (the server's union of clients of different sizes); without, every formula is the unweighted one.

    It is THE form of the logistic loss in fedsynth: the L-BFGS inner solver and the server's fit
    (:class:`LogisticSolver`), the implicit backward (its :meth:`LogisticPoint.hvp` and
    :meth:`LogisticPoint.design_vjp`), the outer objective's real-data terms and local SGD all
    evaluate it through :meth:`at`, which computes z = −y ⊙ Aθ and σ(z) once; the value, the
    θ-gradient, the Hessian-vector product, the design VJP and the per-row gradients all follow
    from them.
    """

    def __init__(self, a: torch.Tensor, y: torch.Tensor, ridge: float = 0.0, weight: torch.Tensor | None = None) -> None:
        self.a = a
        self.neg_y = -y
        self.ridge = ridge
        self.weight = None if weight is None else normalized_weight(weight, a.shape[0])

    @classmethod
    def regularized(
        cls, a: torch.Tensor, y: torch.Tensor, lambda_theta: float, n: int, weight: torch.Tensor | None = None
    ) -> "LogisticObjective":
        """ℓ_r of eq. (11) on (A, y): ridge λ_θ/(2n²), ``n`` the paper's feature count (the
        columns of a_i = (x_i, s_i), intercept not counted; with an intercept the whole of θ is
        regularized, so that ℓ_r stays strongly convex); ``weight`` as in the class."""
        return cls(a, y, regularization_weight(lambda_theta, n), weight)

    @property
    def num_rows(self) -> int:
        """N, the rows of A."""
        return self.a.shape[0]

    def at(self, theta: torch.Tensor, *, sigmoid_z: torch.Tensor | None = None) -> "LogisticPoint":
        """The objective at θ. ``sigmoid_z``, if given, must be σ(z) at exactly this θ and A
        (:attr:`InnerSolution.sigmoid_z` of a solve); it saves the pass Aθ."""
        return LogisticPoint(self, theta, sigmoid_z)


class LogisticPoint:
    """:class:`LogisticObjective` at one θ: z = −y ⊙ Aθ and σ(z), computed once, and what follows
    from them. With r = −y ⊙ σ(z) and w = σ(z) σ(−z):

    * value        (1/N) Σ softplus(z) + c‖θ‖²                                  (:meth:`value`)
    * θ-gradient   (1/N) Aᵀ r + 2cθ                                             (:meth:`gradient`)
    * per row      (1/N) r_i a_i, whose sum is the θ-gradient without 2cθ       (:meth:`row_gradients`)
    * Hessian      H v = (1/N) Aᵀ(w ⊙ A v) + 2c v                                 (:meth:`hvp`)
    * design VJP   ∂⟨u, ∇_θ⟩/∂A = (1/N) [r uᵀ + (w ⊙ A u) θᵀ]                    (:meth:`design_vjp`)

    The value is differentiable by autograd in θ and A as given; the other four are closed
    forms on detached tensors. The labels must be ±1 (y² = 1), as everywhere in the model.

    For a narrow A (d ≤ :data:`DENSE_HESSIAN_MAX_COLUMNS`, e.g. the paper's datasets) the first
    :meth:`hvp` forms the d × d Hessian (one pass, 2Nd² flops) and every product is a d × d one: a
    backward's CG takes ~10 products, each of which would otherwise cost two passes over A (4Nd
    flops) and dispatch two N-long operations. Wider designs use the matrix-free product.
    """

    def __init__(self, objective: LogisticObjective, theta: torch.Tensor, sigmoid_z: torch.Tensor | None) -> None:
        self.objective = objective
        self.theta = theta
        self._z: torch.Tensor | None = None
        if sigmoid_z is None:
            self._z = objective.neg_y * (objective.a @ theta)
            sigmoid_z = torch.sigmoid(self._z)
        self.sigmoid_z = sigmoid_z
        self._curvature: tuple[torch.Tensor, torch.Tensor] | None = None
        self._hessian: torch.Tensor | None = None

    @property
    def z(self) -> torch.Tensor:
        """z = −y ⊙ Aθ."""
        if self._z is None:
            self._z = self.objective.neg_y * (self.objective.a @ self.theta)
        return self._z

    def value(self) -> torch.Tensor:
        """ℓ(θ) = (1/N) Σ softplus(z) (eq. 9), plus c‖θ‖² (ℓ_r, eq. 11) when the ridge c > 0."""
        weight = self.objective.weight
        loss = F.softplus(self.z).mean() if weight is None else F.softplus(self.z) @ weight
        ridge = self.objective.ridge
        return loss + ridge * self.theta.dot(self.theta) if ridge else loss

    def scaled_value(self, scale: float) -> torch.Tensor:
        """``scale`` times :meth:`value`, the scale folded into one multiply of the sum (what
        L-BFGS minimizes: :attr:`InnerSolverConfig.objective_scale`)."""
        o = self.objective
        total = F.softplus(self.z).sum() if o.weight is None else F.softplus(self.z) @ o.weight
        return total.mul_(scale if o.weight is not None else scale / o.num_rows).add_(self.theta.dot(self.theta), alpha=scale * o.ridge)

    def gradient(self, scale: float = 1.0, *, plus: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
        """``scale`` · ∇_θ of :meth:`value`, in one matrix-vector product: (s/N) Aᵀ r + 2scθ.
        With ``plus = (v, β)`` the result is that plus β v (a penalty's gradient), added in the same
        product when the ridge is 0 (as the outer objective's real-data terms use it)."""
        o = self.objective
        residual = o.neg_y * self.sigmoid_z
        alpha = scale / o.num_rows
        if o.weight is not None:
            residual, alpha = residual.mul_(o.weight), scale
        if plus is not None and not o.ridge:
            return torch.addmv(plus[0], o.a.T, residual, beta=plus[1], alpha=alpha)
        grad = torch.addmv(self.theta, o.a.T, residual, beta=2.0 * (scale * o.ridge), alpha=alpha)
        return grad if plus is None else grad.add_(plus[0], alpha=plus[1])

    def row_gradients(self) -> torch.Tensor:
        """The N × d per-row terms (1/N) r_i a_i of the loss's θ-gradient (the ridge 2cθ, which
        belongs to no row, left out): their sum plus 2cθ is :meth:`gradient`."""
        o = self.objective
        residual = o.neg_y * self.sigmoid_z / o.num_rows if o.weight is None else o.neg_y * self.sigmoid_z * o.weight
        return o.a.detach() * residual.unsqueeze(1)

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(r/N, w/N), detached (with row weights: r ⊙ weight, w ⊙ weight)."""
        if self._curvature is None:
            prob = self.sigmoid_z.detach()
            per_row = 1.0 / self.objective.num_rows if self.objective.weight is None else self.objective.weight
            self._curvature = (
                self.objective.neg_y.mul(prob).mul_(per_row),  # r / N
                prob.mul(1.0 - prob).mul_(per_row),  # σ(z) σ(−z) / N
            )
        return self._curvature

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H v, the Hessian of :meth:`value` in θ times ``v``."""
        _, weights = self._weights()
        a = self.objective.a.detach()
        ridge = 2.0 * self.objective.ridge
        if self._hessian is None and a.shape[1] <= DENSE_HESSIAN_MAX_COLUMNS:
            self._hessian = (a * weights.unsqueeze(1)).T @ a
            self._hessian.diagonal().add_(ridge)
        if self._hessian is not None:
            return self._hessian @ v
        return torch.addmv(v, a.T, weights * (a @ v), beta=ridge)

    def design_vjp(self, u: torch.Tensor, columns: int | None = None) -> torch.Tensor:
        """(∂⟨u, ∇_θ value⟩/∂A), an N × d matrix, or only its first ``columns`` columns (the
        implicit backward of eq. (14) needs the x̂ columns only)."""
        residual, weights = self._weights()
        a = self.objective.a.detach()
        theta = self.theta.detach()
        k = a.shape[1] if columns is None else columns
        through_margin = weights * (a @ u)
        # r uᵀ + (w ⊙ A u) θᵀ; addcmul_ with a broadcast column is faster on CPU than addr_
        return torch.outer(residual, u[:k]).addcmul_(through_margin.unsqueeze(1), theta[:k])


DENSE_HESSIAN_MAX_COLUMNS = 64
"""Widest design matrix for which :meth:`LogisticPoint.hvp` forms the Hessian (cost 2Nd² once,
against 4Nd per product for the matrix-free form; a backward takes ~10 products)."""


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


@dataclass(frozen=True)
class InnerSolution:
    """The result of one inner solve: θ*, the iterations used, the final gradient max-norm,
    whether it met ``tolerance_grad``, and σ(z), z = −y ⊙ Aθ*, when the solver's last evaluation
    was at θ* (else ``None``), for :meth:`LogisticObjective.at`."""

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


class LogisticSolver:
    """Solves a sequence of problems argmin_θ of a :class:`LogisticObjective` (ℓ_r of eq. 11 on
    changing rows A_k) with one ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``, the one
    L-BFGS set-up of fedsynth.

    Each solve starts from the given θ_0 (e.g. :func:`warm_start`), else from where the previous
    one ended (zero at first), and keeps the L-BFGS curvature pairs gathered so far: Algorithm 1
    solves (11) for slowly changing x̂, so the previous curvature is a good first guess.
    The one pair that would straddle two different problems is dropped. L-BFGS minimizes
    ``solver.objective_scale`` times the objective (see :class:`InnerSolverConfig`); each
    evaluation is one :meth:`LogisticObjective.at` (value and gradient in closed form from one
    σ(z)), so no autograd graph is built.
    """

    def __init__(
        self,
        num_weights: int,
        solver: InnerSolverConfig = InnerSolverConfig(),
        *,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.solver = solver
        self.theta = torch.zeros(num_weights, dtype=dtype).requires_grad_(True)
        allow_optimizer_setup_without_dynamo()
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
        objective: LogisticObjective,
        theta0: torch.Tensor | None = None,
        *,
        penalty: tuple[float, BoundMeasure] | None = None,
    ) -> InnerSolution:
        """Minimize ``objective`` (ℓ_r, eq. 11), or with ``penalty = (ρ, F)`` ℓ_r + ρ/2·F(θ)² (F a
        :mod:`fedsynth.core.fairness` measure bound to the rows), from ``theta0`` (default: where
        the previous solve ended, zero at first) and return the solution (a detached copy)."""
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

        def evaluate(current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """scale · (ℓ_r + ρ/2·F²) at ``current``, its gradient, and σ(z)."""
            point = objective.at(current)
            loss = point.scaled_value(scale)
            if penalty is None:
                return loss, point.gradient(scale), point.sigmoid_z
            rho, measure = penalty
            value, measure_grad = measure(current)
            loss = loss + (0.5 * scale * rho) * value * value
            return loss, point.gradient(scale, plus=(measure_grad, scale * rho * float(value))), point.sigmoid_z

        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            with torch.no_grad():
                current = theta.detach()
                loss, grad, prob = evaluate(current)
                theta.grad = grad
                last["theta"], last["grad"], last["prob"] = current.clone(), grad, prob
            return loss

        self.optimizer.step(closure)
        with torch.no_grad():
            solution = theta.detach().clone()
            if torch.equal(last["theta"], solution):
                grad, sigmoid_z = last["grad"], last["prob"]  # the last evaluation was at the accepted point
            else:
                _, grad, sigmoid_z = evaluate(solution)
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

    def paper_n(self, num_features: int, num_groups: int = 2) -> int:
        """The paper's n for data with ``num_features`` columns of x: the entries of a_i = (x_i, s_i),
        the intercept not counted (it scales λ_θ in eq. (11) and λ_x in eq. (12)); s_i has
        ``num_groups`` − 1 entries."""
        return num_features + num_groups - 1

    def num_weights(self, num_features: int, num_groups: int = 2) -> int:
        """The length of θ: n, plus one with ``fit_intercept``."""
        return self.paper_n(num_features, num_groups) + int(self.fit_intercept)

    def design(self, x: torch.Tensor, s: torch.Tensor, num_groups: int = 2) -> torch.Tensor:
        """The design matrix A with rows a_i = (x_i, s_i[, 1]) (:func:`design_matrix`)."""
        return design_matrix(x, s, self.fit_intercept, num_groups)

    def objective(self, a: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> LogisticObjective:
        """ℓ_r (eq. 11) on the design matrix ``a`` (:meth:`design`) and labels ``y`` (with row
        weights ``weight``, the weighted mean): the :class:`LogisticObjective` with ridge
        λ_θ/(2n²), n = :meth:`paper_n` of ``a``'s width."""
        return LogisticObjective.regularized(a, y, self.lambda_theta, a.shape[1] - int(self.fit_intercept), weight)

    def inner_solver(
        self, num_features: int, *, dtype: torch.dtype = torch.float64, num_groups: int = 2
    ) -> LogisticSolver:
        """A :class:`LogisticSolver` for a sequence of problems ℓ_r on data with ``num_features``
        columns of x and ``num_groups`` groups (the clients' inner problem, Algorithm 1 line 9).
        Validates ``lambda_theta``."""
        if not (math.isfinite(self.lambda_theta) and self.lambda_theta > 0):
            raise ValueError(
                f"lambda_theta must be > 0 (it makes the inner problem strongly convex), got {self.lambda_theta}"
            )
        return LogisticSolver(self.num_weights(num_features, num_groups), self.solver, dtype=dtype)

    def fit(
        self,
        data: TabularData,
        *,
        theta0: torch.Tensor | None = None,
        rho: float = 0.0,
        fairness: FairnessMeasure = Covariance(),
        sample_weight: torch.Tensor | None = None,
    ) -> InnerSolution:
        """argmin_θ ℓ_r(θ) on ``data`` (eq. 11; the server's eq. 15 on the union of synthetic rows)
        from ``theta0`` (default zero). With ``rho > 0``, then argmin_θ ℓ_r + ρ/2·F(θ)² (F the
        :mod:`fedsynth.core.fairness` measure ``fairness`` bound to ``data``'s rows) from that
        solution: strongly convex for the linear measures; for the gap measures (non-convex in θ)
        the local minimum reached from the plain solution. ``sample_weight`` (one number ≥ 0 per
        row) weighs the rows in ℓ_r and in F alike (scikit-learn's name)."""
        if not (rho >= 0 and rho < float("inf")):
            raise ValueError(f"rho must be a finite number >= 0, got {rho}")
        a = self.design(data.x, data.s, data.num_groups)
        objective = self.objective(a, data.y, sample_weight)
        plain = self.inner_solver(data.num_features, dtype=a.dtype, num_groups=data.num_groups).solve(objective, theta0)
        if rho == 0:
            return plain
        solver = self.inner_solver(data.num_features, dtype=a.dtype, num_groups=data.num_groups)
        measure = fairness.bind(a, data.s, data.y, weight=objective.weight)
        return solver.solve(objective, plain.theta, penalty=(rho, measure))

    def decision(self, theta: np.ndarray | torch.Tensor, data: TabularData) -> torch.Tensor:
        """The decision values d_θ(a_i) = a_iᵀθ on ``data``'s rows."""
        theta = torch.as_tensor(np.asarray(theta, dtype=np.float64) if not torch.is_tensor(theta) else theta).double()
        expected = self.num_weights(data.num_features, data.num_groups)
        if theta.shape != (expected,):
            sensitive = "s" if data.num_groups == 2 else f"{data.num_groups - 1} group indicators"
            raise ValueError(
                f"the model has {tuple(theta.shape)} weights but the data need ({expected},) "
                f"({data.num_features} features + {sensitive}{' + intercept' if self.fit_intercept else ''}; "
                "check model.fit_intercept)"
            )
        return self.design(data.x, data.s, data.num_groups) @ theta

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
