"""The linear logistic model of the paper: loss (9), regularized loss (11), L-BFGS inner solver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


def design_matrix(x: torch.Tensor, s: torch.Tensor, fit_intercept: bool) -> torch.Tensor:
    """The paper's feature vectors a_i = (x_i, s_i), with a trailing column of ones when
    ``fit_intercept`` (the paper's model d_θ(a) = aᵀθ has no intercept)."""
    columns = [x, s.unsqueeze(1).to(x.dtype)]
    if fit_intercept:
        columns.append(torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device))
    return torch.cat(columns, dim=1)


def num_model_features(a: torch.Tensor, fit_intercept: bool) -> int:
    """The paper's n: the number of features of a_i = (x_i, s_i), not counting the intercept."""
    return a.shape[1] - int(fit_intercept)


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

    ``n`` is the paper's feature count (see :func:`num_model_features`); with an intercept the
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


@dataclass(frozen=True)
class InnerSolverConfig:
    """Settings of the L-BFGS inner solver (strong Wolfe line search).

    Attributes:
        max_iter: iteration cap per solve (the paper uses 100).
        tolerance_grad: stop when max_j |∂ℓ_r/∂θ_j| falls to this value (torch's LBFGS criterion).
        tolerance_change: stop when the step or the loss change falls below this value.
        history_size: number of curvature pairs L-BFGS keeps.
    """

    max_iter: int = 100
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-15
    history_size: int = 20

    def __post_init__(self) -> None:
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if self.tolerance_grad <= 0 or self.tolerance_change <= 0:
            raise ValueError("tolerance_grad and tolerance_change must be positive")
        if self.history_size < 1:
            raise ValueError(f"history_size must be >= 1, got {self.history_size}")


def regularized_loss_hvp(
    a: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, lambda_theta: float, n: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The Hessian of ℓ_r (eq. 11) at θ as a matrix-free product v ↦ H v, in closed form:
    H v = (1/N) Aᵀ(σ(m) σ(−m) ⊙ A v) + (λ_θ/n²) v with m = Aθ. No Hessian is formed."""
    a = a.detach()
    margin = a @ theta.detach()
    weights = torch.sigmoid(margin) * torch.sigmoid(-margin) / a.shape[0]
    ridge = 2.0 * regularization_weight(lambda_theta, n)
    return lambda v: a.T @ (weights * (a @ v)) + ridge * v


@dataclass(frozen=True)
class InnerSolution:
    """The result of one inner solve: θ*, the iterations used, the final gradient max-norm and
    whether it met ``tolerance_grad``."""

    theta: torch.Tensor
    iterations: int
    grad_norm: float
    converged: bool


class LogisticSolver:
    """Solves a sequence of inner problems argmin_θ ℓ_r(A_k, y, θ) (eq. 11) with one
    ``torch.optim.LBFGS(line_search_fn="strong_wolfe")``.

    Each solve starts from the previous solution and keeps the L-BFGS curvature pairs gathered so
    far: Algorithm 1 solves (11) for slowly changing x̂, so the previous θ and curvature are good
    first guesses. The one pair that would straddle two different problems is dropped. The
    objective and gradient are evaluated in closed form, so no autograd graph is built.
    """

    def __init__(
        self,
        num_weights: int,
        lambda_theta: float,
        n: int,
        solver: InnerSolverConfig = InnerSolverConfig(),
        *,
        theta0: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.lambda_theta = lambda_theta
        self.n = n
        self.solver = solver
        start = torch.zeros(num_weights, dtype=dtype) if theta0 is None else theta0.detach().to(dtype)
        self.theta = start.clone().requires_grad_(True)
        self.optimizer = torch.optim.LBFGS(
            [self.theta],
            lr=1.0,
            max_iter=solver.max_iter,
            tolerance_grad=solver.tolerance_grad,
            tolerance_change=solver.tolerance_change,
            history_size=solver.history_size,
            line_search_fn="strong_wolfe",
        )

    def solve(self, a: torch.Tensor, y: torch.Tensor) -> InnerSolution:
        """Minimize ℓ_r(a, y, ·) from the current θ and return the solution (a detached copy)."""
        a = a.detach()
        y = y.detach()
        state = self.optimizer.state[self.theta]
        if "d" in state:
            # torch's LBFGS would pair the last step of the previous problem with a gradient of
            # this one; a zero step length makes it skip that pair and keep the others.
            state["t"] = 0.0
        iterations_before = state.get("n_iter", 0)
        theta, lambda_theta, n = self.theta, self.lambda_theta, self.n

        def closure() -> torch.Tensor:
            with torch.no_grad():
                loss = regularized_loss(a, y, theta, lambda_theta, n)
                theta.grad = regularized_loss_grad(a, y, theta, lambda_theta, n)
            return loss

        self.optimizer.step(closure)
        with torch.no_grad():
            grad_norm = float(regularized_loss_grad(a, y, theta, lambda_theta, n).abs().max())
        return InnerSolution(
            theta=theta.detach().clone(),
            iterations=int(state.get("n_iter", 0)) - iterations_before,
            grad_norm=grad_norm,
            converged=grad_norm <= self.solver.tolerance_grad,
        )


def fit_logistic(
    a: torch.Tensor,
    y: torch.Tensor,
    lambda_theta: float,
    n: int,
    *,
    theta0: torch.Tensor | None = None,
    solver: InnerSolverConfig = InnerSolverConfig(),
) -> InnerSolution:
    """Solve argmin_θ ℓ_r(θ) of eq. (11) (and the server's eq. (15)) once with L-BFGS and a
    strong Wolfe line search, starting from ``theta0`` (default zero)."""
    return LogisticSolver(a.shape[1], lambda_theta, n, solver, theta0=theta0, dtype=a.dtype).solve(a, y)
