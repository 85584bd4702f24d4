"""Differentiable argmin by implicit differentiation (the paper's eqs. (13)–(14)), in the shape of
jaxopt's ``custom_root``.

Given a solver that returns θ*(p) and the optimality condition F(θ, p) = ∇_θ ℓ_r(θ, p) that
vanishes there, the implicit function theorem gives dθ*/dp = −H⁻¹ ∂F/∂p with H = ∂F/∂θ, the
Hessian of ℓ_r. The backward pass therefore solves H v = g with a pluggable linear solver
(conjugate gradient on Hessian-vector products by default: no Hessian is formed) and returns
−(∂F/∂p)ᵀ v, a vector-Jacobian product. The two products come from one *linearization* of F at
the solution: by autograd from F (:func:`autograd_linearize`) or in closed form.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]
"""``v ↦ H v``."""
LinearSolve = Callable[[MatVec, torch.Tensor], torch.Tensor]
"""``solve(matvec, b) -> v`` with ``matvec(v) ≈ b``; :func:`cg` makes one."""
VectorJacobian = Callable[[torch.Tensor], Sequence["torch.Tensor | None"]]
"""``w ↦ [(∂F/∂p)ᵀ w for each param p]``."""
Linearize = Callable[[torch.Tensor, Sequence[torch.Tensor], Any], "tuple[MatVec, VectorJacobian]"]
"""``linearize(θ, params, aux) -> (hvp, vjp)``: F's derivatives at the solution θ (``aux``: what
the solver returned beside θ)."""
Solver = Callable[..., "tuple[torch.Tensor, Any]"]
"""``solver(θ0, *params) -> (θ*, aux)``."""


@dataclass(frozen=True)
class CGConfig:
    """Conjugate-gradient settings: stop when ‖H v − g‖ ≤ max(rtol·‖g‖, atol) or after max_iter."""

    rtol: float = 1e-8
    atol: float = 1e-14
    max_iter: int = 100

    def __post_init__(self) -> None:
        if self.rtol < 0 or self.atol < 0:
            raise ValueError("CG tolerances must be non-negative")
        if self.max_iter < 1:
            raise ValueError(f"CG max_iter must be >= 1, got {self.max_iter}")


@dataclass(frozen=True)
class CGResult:
    """Solution of H v = b with the residual norm reached and whether the tolerance was met."""

    solution: torch.Tensor
    residual_norm: float
    iterations: int
    converged: bool


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, config: CGConfig = CGConfig()
) -> CGResult:
    """Solve H v = b for symmetric positive definite H given only ``matvec(v) = H v``.

    The scalars (‖r‖², step lengths) are Python floats and the vectors are updated in place, so
    an iteration costs one ``matvec`` and six small tensor operations on d-vectors.
    """
    threshold = max(config.rtol * float(b.norm()), config.atol)
    v = torch.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    residual_sq = float(residual.dot(residual))
    iterations = 0
    while iterations < config.max_iter and math.sqrt(residual_sq) > threshold:
        h_direction = matvec(direction)
        curvature = float(direction.dot(h_direction))
        if not curvature > 0:
            break  # H is not positive definite along this direction: return what we have
        step = residual_sq / curvature
        v.add_(direction, alpha=step)
        residual.add_(h_direction, alpha=-step)
        new_residual_sq = float(residual.dot(residual))
        direction.mul_(new_residual_sq / residual_sq).add_(residual)
        residual_sq = new_residual_sq
        iterations += 1
    residual_norm = math.sqrt(residual_sq)
    return CGResult(v, residual_norm, iterations, residual_norm <= threshold)


@dataclass
class ImplicitDiagnostics:
    """Counts the backward solves whose CG tolerance was not met, and the worst residual seen."""

    solves: int = 0
    unconverged: int = 0
    worst_residual: float = 0.0
    cg_iterations: list[int] = field(default_factory=list)

    def record(self, result: CGResult) -> None:
        """Add one CG solve."""
        self.solves += 1
        self.cg_iterations.append(result.iterations)
        if not result.converged:
            self.unconverged += 1
            self.worst_residual = max(self.worst_residual, result.residual_norm)


def cg(config: CGConfig = CGConfig(), diagnostics: ImplicitDiagnostics | None = None) -> LinearSolve:
    """The conjugate-gradient linear solve for :func:`implicit_argmin` (eq. 14): ``solve(matvec,
    b)`` runs :func:`conjugate_gradient` with ``config`` and records the result in
    ``diagnostics``, or, without one, warns when the tolerance was not met."""

    def solve(matvec: MatVec, b: torch.Tensor) -> torch.Tensor:
        result = conjugate_gradient(matvec, b, config)
        if diagnostics is not None:
            diagnostics.record(result)
        elif not result.converged:
            warnings.warn(
                f"implicit backward: CG stopped at residual {result.residual_norm:.3e} after "
                f"{result.iterations} iterations (tolerance not met)",
                RuntimeWarning,
                stacklevel=3,
            )
        return result.solution

    return solve


def autograd_linearize(optimality: Callable[..., torch.Tensor]) -> Linearize:
    """The :data:`Linearize` hook of an optimality condition ``optimality(θ, *params)`` (zero at the
    solution; for a minimization ∇_θ of the objective) by autograd: one graph of F at the
    solution serves both the Hessian-vector product ∂F/∂θ v and the vector-Jacobian product
    (∂F/∂p)ᵀ w."""

    def linearize(theta: torch.Tensor, params: Sequence[torch.Tensor], aux: Any) -> tuple[MatVec, VectorJacobian]:
        with torch.enable_grad():
            theta_var = theta.detach().requires_grad_(True)
            variables = [p.detach().requires_grad_(True) for p in params]
            condition = optimality(theta_var, *variables)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            return torch.autograd.grad(condition, theta_var, v, retain_graph=True)[0]

        def vjp(w: torch.Tensor) -> Sequence[torch.Tensor | None]:
            return torch.autograd.grad(condition, variables, w, retain_graph=True, allow_unused=True)

        return hvp, vjp

    return linearize


class _Call:
    """One :func:`implicit_argmin` call: the solver and its start for the forward pass, what the
    backward needs, and the solver's aux output once the forward has run."""

    __slots__ = ("solver", "theta0", "linearize", "solve", "needs_grad", "aux")

    def __init__(self, solver: Solver, theta0: torch.Tensor | None, linearize: Linearize, solve: LinearSolve,
                 needs_grad: tuple[bool, ...]) -> None:
        self.solver, self.theta0, self.linearize, self.solve = solver, theta0, linearize, solve
        self.needs_grad = needs_grad
        self.aux: Any = None

    def param_grads(self, theta: torch.Tensor, params: Sequence[torch.Tensor], grad_theta: torch.Tensor) -> list:
        """−(∂F/∂p)ᵀ H⁻¹ g for each param p that needs a gradient (None for the others)."""
        hvp, vjp = self.linearize(theta, params, self.aux)
        cotangent = self.solve(hvp, grad_theta.detach()).neg()
        grads = vjp(cotangent)
        return [grad if need else None for grad, need in zip(grads, self.needs_grad)]


class _ImplicitArgmin(torch.autograd.Function):
    """Forward: θ* = solver(θ0, *params) (autograd records nothing inside). Backward:
    :meth:`_Call.param_grads`."""

    @staticmethod
    def forward(ctx, call, *params):  # type: ignore[override]
        theta, call.aux = call.solver(call.theta0, *(p.detach() for p in params))
        theta = theta.detach()
        ctx.call = call
        ctx.save_for_backward(theta, *params)
        return theta

    @staticmethod
    def backward(ctx, grad_theta):  # type: ignore[override]
        theta, *params = ctx.saved_tensors
        return None, *ctx.call.param_grads(theta, params, grad_theta)


def implicit_argmin(
    solver: Solver,
    theta0: torch.Tensor | None,
    params: Sequence[torch.Tensor],
    optimality: Callable[..., torch.Tensor] | None = None,
    *,
    linearize: Linearize | None = None,
    solve: LinearSolve | None = None,
) -> tuple[torch.Tensor, Any]:
    """Return ``(θ*(params), aux)``: θ* differentiable in ``params`` by the implicit function
    theorem (eq. 14), ``aux`` whatever the solver returned beside it (not differentiated).

    Args:
        solver: ``solver(θ0, *params) -> (θ*, aux)``, any solver (its iterations are not
            differentiated; it runs under ``torch.no_grad`` on detached params).
        theta0: the solver's starting point (a warm start), passed to it as is.
        params: the tensors θ* depends on.
        optimality: ``F(θ, *params)``, zero at the solution; for a minimization, ∇_θ of the
            objective, whose Jacobian in θ must then be symmetric positive definite (a strongly
            convex objective), as CG requires. Its derivatives are taken by autograd
            (:func:`autograd_linearize`).
        linearize: instead of ``optimality``, F's derivatives in closed form:
            ``linearize(θ*, params, aux) -> (hvp, vjp)``.
        solve: the linear solve of the backward, ``solve(matvec, b)``; default ``cg()``.
    """
    if (optimality is None) == (linearize is None):
        raise TypeError("implicit_argmin needs exactly one of optimality (autograd derivatives) and linearize")
    call = _Call(
        solver,
        theta0,
        linearize if linearize is not None else autograd_linearize(optimality),
        solve if solve is not None else cg(),
        tuple(p.requires_grad for p in params),
    )
    theta = _ImplicitArgmin.apply(call, *params)
    return theta, call.aux
