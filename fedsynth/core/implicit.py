"""Differentiable argmin by implicit differentiation (the paper's eqs. (13)–(14)).

In the style of jaxopt's ``implicit_diff`` / torchopt's ``custom_root``: given a solver that
returns θ*(p) and the optimality condition F(θ, p) = ∇_θ ℓ_r(θ, p) that vanishes there, the
implicit function theorem gives dθ*/dp = −H⁻¹ ∂F/∂p with H = ∂F/∂θ, the Hessian of ℓ_r. The
backward pass therefore solves H v = g by conjugate gradient on Hessian-vector products (no
Hessian is formed) and returns −(∂F/∂p)ᵀ v, a vector-Jacobian product.
"""

from __future__ import annotations

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
    """Solve H v = b for symmetric positive definite H given only ``matvec(v) = H v``."""
    threshold = max(config.rtol * float(b.norm()), config.atol)
    v = torch.zeros_like(b)
    residual = b.clone()
    direction = residual.clone()
    residual_sq = residual.dot(residual)
    iterations = 0
    while iterations < config.max_iter and float(residual_sq.sqrt()) > threshold:
        h_direction = matvec(direction)
        curvature = direction.dot(h_direction)
        if curvature <= 0:
            break  # H is not positive definite along this direction: return what we have
        step = residual_sq / curvature
        v = v + step * direction
        residual = residual - step * h_direction
        new_residual_sq = residual.dot(residual)
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
        iterations += 1
    residual_norm = float(residual_sq.sqrt())
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
    def forward(ctx, solve, optimality, hessian_product, cg_config, diagnostics, *params):  # type: ignore[override]
        theta = solve(*(p.detach() for p in params)).detach()
        ctx.optimality = optimality
        ctx.hessian_product = hessian_product
        ctx.cg_config = cg_config
        ctx.diagnostics = diagnostics
        ctx.save_for_backward(theta, *params)
        return theta

    @staticmethod
    def backward(ctx, grad_theta):  # type: ignore[override]
        theta, *params = ctx.saved_tensors
        with torch.enable_grad():
            theta = theta.detach().requires_grad_(True)
            params = [p.detach().requires_grad_(needs) for p, needs in zip(params, ctx.needs_input_grad[5:])]
            condition = ctx.optimality(theta, *params)
            if ctx.hessian_product is not None:
                hessian_vector_product = ctx.hessian_product(theta.detach(), *(p.detach() for p in params))
            else:

                def hessian_vector_product(v: torch.Tensor) -> torch.Tensor:
                    return torch.autograd.grad(condition, theta, v, retain_graph=True)[0]

            result = conjugate_gradient(hessian_vector_product, grad_theta, ctx.cg_config)
            if ctx.diagnostics is not None:
                ctx.diagnostics.record(result)
            elif not result.converged:
                warnings.warn(
                    f"implicit backward: CG stopped at residual {result.residual_norm:.3e} after "
                    f"{result.iterations} iterations (tolerance not met)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            wanted = [p for p in params if p.requires_grad]
            grads = iter(torch.autograd.grad(condition, wanted, -result.solution, allow_unused=True))
        param_grads = [next(grads) if p.requires_grad else None for p in params]
        return (None, None, None, None, None, *param_grads)


def implicit_argmin(
    solve: Callable[..., torch.Tensor],
    optimality: Callable[..., torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    hessian_product: Callable[..., Callable[[torch.Tensor], torch.Tensor]] | None = None,
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
        cg: conjugate-gradient settings of the backward solve, eq. (14).
        diagnostics: optional record of CG residuals; without it, an unmet tolerance warns.
    """
    return _ImplicitArgmin.apply(solve, optimality, hessian_product, cg, diagnostics, *params)
