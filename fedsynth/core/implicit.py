"""Differentiable argmin by implicit differentiation (the paper's eqs. (13)–(14)).

In the style of jaxopt's ``implicit_diff`` / torchopt's ``custom_root``: given a solver that
returns θ*(p) and the optimality condition F(θ, p) = ∇_θ ℓ_r(θ, p) that vanishes there, the
implicit function theorem gives dθ*/dp = −H⁻¹ ∂F/∂p with H = ∂F/∂θ, the Hessian of ℓ_r. The
backward pass therefore solves H v = g by conjugate gradient on Hessian-vector products (no
Hessian is formed) and returns −(∂F/∂p)ᵀ v, a vector-Jacobian product.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch


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


class _ImplicitArgmin(torch.autograd.Function):
    """Forward: θ* = solve(params). Backward: v = H⁻¹ g by CG, grads = −(∂F/∂params)ᵀ v."""

    @staticmethod
    def forward(ctx, solve, optimality, hessian_product, optimality_vjp, cg_config, diagnostics, *params):  # type: ignore[override]
        theta = solve(*(p.detach() for p in params)).detach()
        ctx.optimality = optimality
        ctx.hessian_product = hessian_product
        ctx.optimality_vjp = optimality_vjp
        ctx.cg_config = cg_config
        ctx.diagnostics = diagnostics
        ctx.save_for_backward(theta, *params)
        return theta

    @staticmethod
    def backward(ctx, grad_theta):  # type: ignore[override]
        theta, *params = ctx.saved_tensors
        needs = ctx.needs_input_grad[6:]
        theta = theta.detach()
        detached = [p.detach() for p in params]
        condition = None
        if ctx.hessian_product is None or ctx.optimality_vjp is None:
            with torch.enable_grad():
                theta_var = theta.requires_grad_(ctx.hessian_product is None)
                variables = [p.requires_grad_(need) for p, need in zip(detached, needs)]
                condition = ctx.optimality(theta_var, *variables)
        if ctx.hessian_product is not None:
            hessian_vector_product = ctx.hessian_product(theta, *detached)
        else:

            def hessian_vector_product(v: torch.Tensor) -> torch.Tensor:
                return torch.autograd.grad(condition, theta_var, v, retain_graph=True)[0]

        result = conjugate_gradient(hessian_vector_product, grad_theta.detach(), ctx.cg_config)
        if ctx.diagnostics is not None:
            ctx.diagnostics.record(result)
        elif not result.converged:
            warnings.warn(
                f"implicit backward: CG stopped at residual {result.residual_norm:.3e} after "
                f"{result.iterations} iterations (tolerance not met)",
                RuntimeWarning,
                stacklevel=2,
            )
        cotangent = result.solution.neg_()
        if ctx.optimality_vjp is not None:
            all_grads = ctx.optimality_vjp(theta, *detached)(cotangent)
            param_grads = [g if need else None for g, need in zip(all_grads, needs)]
        else:
            wanted = [p for p, need in zip(variables, needs) if need]
            grads = iter(torch.autograd.grad(condition, wanted, cotangent, allow_unused=True) if wanted else ())
            param_grads = [next(grads) if need else None for need in needs]
        return (None, None, None, None, None, None, *param_grads)


def implicit_argmin(
    solve: Callable[..., torch.Tensor],
    optimality: Callable[..., torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    hessian_product: Callable[..., Callable[[torch.Tensor], torch.Tensor]] | None = None,
    optimality_vjp: Callable[..., Callable[[torch.Tensor], Sequence[torch.Tensor | None]]] | None = None,
    cg: CGConfig = CGConfig(),
    diagnostics: ImplicitDiagnostics | None = None,
) -> torch.Tensor:
    """Return θ*(params) = root of ``optimality(θ, *params)``, differentiable in ``params``.

    Args:
        solve: ``solve(*params) -> θ*``, any solver (its iterations are not differentiated).
        optimality: ``F(θ, *params)``, zero at the solution; for a minimization, ∇_θ of the
            objective. Its Jacobian in θ must be symmetric positive definite (a strongly convex
            objective), as CG requires.
        params: the tensors θ* depends on.
        hessian_product: optional ``hessian_product(θ, *params) -> (v ↦ ∂F/∂θ v)``, a closed-form
            Hessian-vector product; by default it is taken from ``optimality`` by autograd.
        optimality_vjp: optional ``optimality_vjp(θ, *params) -> (w ↦ [(∂F/∂p)ᵀ w for p in
            params])``, a closed-form vector-Jacobian product of F in the params; by default it
            is taken from ``optimality`` by autograd. With both closed forms, the backward builds
            no autograd graph.
        cg: conjugate-gradient settings of the backward solve, eq. (14).
        diagnostics: optional record of CG residuals; without it, an unmet tolerance warns.
    """
    return _ImplicitArgmin.apply(solve, optimality, hessian_product, optimality_vjp, cg, diagnostics, *params)
