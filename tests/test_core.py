"""Specifications of the method's core: the inner model, implicit differentiation, synthesis."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from fedsynth.core import (
    FAIRNESS_MEASURES,
    CGConfig,
    LogisticModel,
    LogisticSolver,
    ImplicitDiagnostics,
    InnerSolverConfig,
    PenaltyObjective,
    SynthesisConfig,
    SynthesisHistory,
    cg,
    choose_synthetic_labels,
    conjugate_gradient,
    LogisticObjective,
    design_matrix,
    fairness_from_config,
    fit_server_model,
    implicit_argmin,
    initial_features,
    synthesize,
    warm_start,
)
from fedsynth.core.synthesis import InnerModel
from fedsynth.data.types import TabularData


def loss_r(a, y, lambda_theta, n) -> LogisticObjective:
    """ℓ_r (eq. 11) on the rows (a, y)."""
    return LogisticObjective.regularized(a, y, lambda_theta, n)


def regularized_loss_grad(a, y, theta, lambda_theta, n):
    """∇_θ ℓ_r at θ (closed form, differentiable by autograd in θ and a)."""
    return loss_r(a, y, lambda_theta, n).at(theta).gradient()


def solve_once(a, y, lambda_theta, n, *, theta0=None, solver=InnerSolverConfig()):
    """One solve of ℓ_r on the design matrix ``a`` by the one L-BFGS path (:class:`LogisticSolver`)."""
    return LogisticSolver(a.shape[1], solver, dtype=a.dtype).solve(loss_r(a, y, lambda_theta, n), theta0)


def random_table(rows: int, features: int, seed: int) -> TabularData:
    """A small noisy, biased classification table."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=g, dtype=torch.float64)
    s = (torch.rand(rows, generator=g) < 0.5).double()
    score = x[:, 0] + 0.8 * s + 0.7 * torch.randn(rows, generator=g, dtype=torch.float64)
    y = torch.where(score > 0.4, 1.0, -1.0).double()
    return TabularData(x, s, y, tuple(f"f{j}" for j in range(features)))


def newton_argmin(a: torch.Tensor, y: torch.Tensor, lambda_theta: float, n: int) -> torch.Tensor:
    """Reference inner solver: Newton's method on the explicit Hessian, differentiable by autograd
    (so it also serves as the *unrolled* solver)."""
    theta = torch.zeros(a.shape[1], dtype=a.dtype)
    for _ in range(25):
        grad = regularized_loss_grad(a, y, theta, lambda_theta, n)
        theta = theta - torch.linalg.solve(explicit_hessian(a, y, theta, lambda_theta, n), grad)
    return theta


def explicit_hessian(a: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, lambda_theta: float, n: int) -> torch.Tensor:
    """∂²ℓ_r/∂θ² = (1/N) Aᵀ diag(σ(m)σ(−m)) A + (λ_θ/n²) I, m = Aθ."""
    margin = a @ theta
    weights = torch.sigmoid(margin) * torch.sigmoid(-margin)
    return (a.T * weights) @ a / a.shape[0] + (lambda_theta / n**2) * torch.eye(a.shape[1], dtype=a.dtype)


MEASURES = sorted(FAIRNESS_MEASURES)


def reference_measure(name: str, a: torch.Tensor, s: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, tau: float):
    """Each measure written out from its definition (docs/method.md), for autograd; on these
    two-group rows the k-group measures (group_covariance, *_largest_gap) are the absolute values."""
    rows = y > 0 if name.startswith("eo_") else torch.ones_like(y, dtype=torch.bool)
    a, s = a[rows], s[rows]
    margin = a @ theta
    if name.endswith("covariance"):
        value = ((s - s.mean()) * margin).mean()
    else:
        p = torch.sigmoid(margin / tau)
        value = p[s == 1].mean() - p[s == 0].mean()
    return value.abs() if "group" in name or "largest" in name else value


def problem(fit_intercept: bool, rho_s: float, seed: int = 0, fairness: str = "covariance"):
    train = random_table(50, 3, seed)
    config = SynthesisConfig(
        rho_o=5.0,
        rho_s=rho_s,
        fairness=fairness,
        fairness_temperature=0.5,
        lambda_x=0.3,
        lambda_theta=0.2,
        synthetic_size=12,
        synthetic_labels="balanced",
        fit_intercept=fit_intercept,
        inner=InnerSolverConfig(tolerance_grad=1e-12, tolerance_change=1e-20),
        cg=CGConfig(rtol=1e-12),
    )
    g = torch.Generator().manual_seed(seed + 1)
    s_hat, y_hat = choose_synthetic_labels(train, 12, "balanced", g)
    x_hat = initial_features(train, s_hat, y_hat, "gaussian", g)
    return train, config, s_hat, y_hat, x_hat


def implicit_gradient(train, config, s_hat, y_hat, x_hat) -> torch.Tensor:
    x = x_hat.clone().requires_grad_(True)
    objective = PenaltyObjective(train, s_hat, y_hat, config)
    objective(x, InnerModel(s_hat, y_hat, config, SynthesisHistory())(x)).backward()
    return x.grad


def reference_objective(train, config, s_hat, y_hat):
    objective = PenaltyObjective(train, s_hat, y_hat, config)
    n = train.num_features + 1

    def value(x: torch.Tensor) -> torch.Tensor:
        theta = newton_argmin(design_matrix(x, s_hat, config.fit_intercept), y_hat, config.lambda_theta, n)
        return objective(x, theta)

    return value


@pytest.mark.parametrize("fairness", MEASURES)
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("rho_s", [0.0, 3.0])
def test_implicit_gradient_matches_central_finite_differences(fit_intercept, rho_s, fairness):
    train, config, s_hat, y_hat, x_hat = problem(fit_intercept, rho_s, fairness=fairness)
    grad = implicit_gradient(train, config, s_hat, y_hat, x_hat)
    value = reference_objective(train, config, s_hat, y_hat)
    eps = 1e-5
    fd = torch.zeros_like(x_hat)
    with torch.no_grad():
        for index in np.ndindex(*x_hat.shape):
            step = torch.zeros_like(x_hat)
            step[index] = eps
            fd[index] = (value(x_hat + step) - value(x_hat - step)) / (2 * eps)
    relative_error = float((grad - fd).norm() / fd.norm())
    assert relative_error < 1e-5, relative_error


@pytest.mark.parametrize("fairness", MEASURES)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_implicit_gradient_matches_unrolled_solver(fit_intercept, fairness):
    train, config, s_hat, y_hat, x_hat = problem(fit_intercept, rho_s=2.0, seed=3, fairness=fairness)
    grad = implicit_gradient(train, config, s_hat, y_hat, x_hat)
    x = x_hat.clone().requires_grad_(True)
    reference_objective(train, config, s_hat, y_hat)(x).backward()
    assert torch.allclose(grad, x.grad, rtol=1e-6, atol=1e-8)  # entries are O(1e-2); 1e-8 ≈ inner-solve precision


@pytest.mark.parametrize("fairness", MEASURES)
@pytest.mark.parametrize("rho_s", [0.0, 3.0])
def test_penalty_objective_matches_its_formula_under_autograd(rho_s, fairness):
    """P of eq. (11) (whose real-data and ‖x̂‖² terms have closed-form backward passes) has the
    value and the gradients in θ and x̂ of the formula written out with autograd, for every
    fairness measure."""
    train, config, s_hat, y_hat, x_hat = problem(True, rho_s, seed=6, fairness=fairness)
    objective = PenaltyObjective(train, s_hat, y_hat, config)
    g = torch.Generator().manual_seed(4)
    theta = torch.randn(x_hat.shape[1] + 2, dtype=torch.float64, generator=g).requires_grad_(True)
    x = x_hat.clone().requires_grad_(True)
    value = objective(x, theta)
    got = torch.autograd.grad(value, [theta, x])

    a = design_matrix(train.x, train.s, True)
    a_hat = design_matrix(x, s_hat, True)
    n = train.num_features + 1
    real = reference_measure(fairness, a, train.s, train.y, theta, config.fairness_temperature)
    synthetic = reference_measure(fairness, a_hat, s_hat, y_hat, theta, config.fairness_temperature)
    reference = (
        torch.nn.functional.softplus(-train.y * (a @ theta)).mean()
        + config.rho_o / 2 * real**2
        + config.rho_s / 2 * synthetic**2
        + config.lambda_x / (2 * (len(x) * n) ** 2) * (x**2).sum()
    )
    expected = torch.autograd.grad(reference, [theta, x])
    assert torch.allclose(value, reference, rtol=1e-13)
    for mine, theirs in zip(got, expected):
        assert torch.allclose(mine, theirs, rtol=1e-11, atol=1e-14)


def test_inner_model_with_a_preallocated_design_matches():
    """synthesize hands InnerModel a preallocated â that each call copies x̂ into; θ and the
    implicit gradient are those of a freshly built â."""
    train, config, s_hat, y_hat, x_hat = problem(True, rho_s=2.0, seed=8)
    objective = PenaltyObjective(train, s_hat, y_hat, config)
    results = []
    for design in (None, design_matrix(torch.zeros_like(x_hat), s_hat, True)):
        inner = InnerModel(s_hat, y_hat, config, SynthesisHistory(), design=design)
        thetas, grads = [], []
        for shift in (0.0, 0.1):  # two calls: the buffer must follow x̂
            x = (x_hat + shift).requires_grad_(True)
            theta = inner(x)
            objective(x, theta).backward()
            thetas.append(theta.detach())
            grads.append(x.grad)
        results.append((thetas, grads))
    for plain, buffered in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        assert torch.allclose(plain, buffered, rtol=1e-12, atol=1e-14)


def test_rho_s_term_contributes_a_direct_gradient():
    """The exact gradient of P includes ∂/∂x̂ of the ρ_s term at fixed θ (not only the θ path)."""
    train, config, s_hat, y_hat, x_hat = problem(True, rho_s=50.0, seed=5)
    x = x_hat.clone().requires_grad_(True)
    objective = PenaltyObjective(train, s_hat, y_hat, config)
    theta = InnerModel(s_hat, y_hat, config, SynthesisHistory()).solve(x_hat)
    direct = torch.autograd.grad(objective.synthetic_fairness(x, theta) ** 2, x)[0]
    assert float(direct.norm()) > 1e-3


def test_inner_solution_meets_gradient_tolerance():
    data = random_table(300, 6, seed=2)
    a = design_matrix(data.x, data.s, True)
    for tolerance in (1e-5, 1e-7):
        solution = solve_once(a, data.y, 1e-3, 7, solver=InnerSolverConfig(tolerance_grad=tolerance))
        grad = regularized_loss_grad(a, data.y, solution.theta, 1e-3, 7)
        assert float(grad.abs().max()) <= tolerance
        assert solution.grad_norm <= tolerance
        assert 0 < solution.iterations <= 100


def test_warm_start_needs_fewer_iterations():
    data = random_table(300, 6, seed=4)
    a = design_matrix(data.x, data.s, True)
    cold = solve_once(a, data.y, 1e-3, 7)
    warm = solve_once(a + 1e-3, data.y, 1e-3, 7, theta0=cold.theta)
    assert warm.iterations < cold.iterations


def test_closed_form_gradient_matches_autograd():
    data = random_table(40, 3, seed=6)
    a = design_matrix(data.x, data.s, True)
    theta = torch.randn(a.shape[1], dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(loss_r(a, data.y, 0.1, 4).at(theta).value(), theta)
    assert torch.allclose(auto, regularized_loss_grad(a, data.y, theta, 0.1, 4), atol=1e-14)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_scaled_value_and_gradient_are_the_scaled_value_and_gradient(fit_intercept):
    """What L-BFGS evaluates, s·ℓ_r and s·∇ℓ_r with s folded into one multiply, equals s times the
    value and gradient (to rounding), and the gradient is autograd's."""
    data = random_table(60, 4, seed=13)
    a = design_matrix(data.x, data.s, fit_intercept)
    theta = torch.randn(a.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    point = loss_r(a, data.y, 0.1, 5).at(theta)
    for scale in (1.0, 1e6):
        assert torch.allclose(point.scaled_value(scale), scale * point.value(), rtol=1e-14, atol=0)
        assert torch.allclose(point.gradient(scale), scale * point.gradient(), rtol=1e-12, atol=1e-15)
    (auto,) = torch.autograd.grad(point.scaled_value(1.0), theta)
    assert torch.allclose(auto, point.gradient(), rtol=1e-12, atol=1e-15)


def test_logistic_derivatives_match_autograd():
    """The closed-form HVP and vector-Jacobian product of ∇_θ ℓ_r (used by the implicit backward)
    equal autograd's, and the HVP equals the explicit Hessian."""
    data = random_table(50, 3, seed=14)
    g = torch.Generator().manual_seed(2)
    a = design_matrix(data.x, data.s, True).requires_grad_(True)
    theta = torch.randn(a.shape[1], dtype=torch.float64, generator=g).requires_grad_(True)
    v = torch.randn(a.shape[1], dtype=torch.float64, generator=g)
    derivatives = loss_r(a, data.y, 0.2, 4).at(theta)
    grad = regularized_loss_grad(a, data.y, theta, 0.2, 4)
    hvp_auto, vjp_auto = torch.autograd.grad(grad, [theta, a], v)
    assert torch.allclose(derivatives.hvp(v), hvp_auto, rtol=1e-12, atol=1e-15)
    assert torch.allclose(derivatives.hvp(v), explicit_hessian(a.detach(), data.y, theta.detach(), 0.2, 4) @ v)
    assert torch.allclose(derivatives.design_vjp(v), vjp_auto, rtol=1e-12, atol=1e-15)
    assert torch.equal(derivatives.design_vjp(v, 3), derivatives.design_vjp(v)[:, :3])
    solution = LogisticSolver(a.shape[1]).solve(loss_r(a.detach(), data.y, 0.2, 4))
    assert solution.sigmoid_z is not None  # its last evaluation was at θ* (as usual)
    assert torch.equal(solution.sigmoid_z, torch.sigmoid(-data.y * (a.detach() @ solution.theta)))
    reused = loss_r(a, data.y, 0.2, 4).at(solution.theta, sigmoid_z=torch.sigmoid(-data.y * (a.detach() @ solution.theta)))
    fresh = loss_r(a, data.y, 0.2, 4).at(solution.theta)
    assert torch.equal(reused.hvp(v), fresh.hvp(v)) and torch.equal(reused.design_vjp(v), fresh.design_vjp(v))


def test_implicit_argmin_with_a_closed_form_linearization_matches_autograd():
    """The closed-form linearize hook (fed the solver's aux, its σ(z)) gives autograd's gradient;
    the solver gets the warm start as given and its aux comes back."""
    data = random_table(40, 3, seed=15)
    a0 = design_matrix(data.x, data.s, True)
    tight = InnerSolverConfig(tolerance_grad=1e-12, tolerance_change=1e-20)
    start = 0.5 * solve_once(a0, data.y, 0.05, 4, solver=tight).theta
    starts, linearized = [], []

    def solver(theta0, a_):
        starts.append(theta0)
        solution = solve_once(a_, data.y, 0.05, 4, theta0=theta0, solver=tight)
        return solution.theta, solution

    def optimality(theta, a_):
        return regularized_loss_grad(a_, data.y, theta, 0.05, 4)

    def linearize(theta, params, solution):
        (a_,) = params
        linearized.append(solution)
        derivatives = loss_r(a_, data.y, 0.05, 4).at(theta, sigmoid_z=solution.sigmoid_z)
        return derivatives.hvp, lambda u: (derivatives.design_vjp(u),)

    weights = torch.randn(a0.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grads = []
    for hook in ({"optimality": optimality}, {"linearize": linearize}):
        a = a0.clone().requires_grad_(True)
        theta, solution = implicit_argmin(solver, start, [a], solve=cg(CGConfig(rtol=1e-13)), **hook)
        assert torch.equal(theta.detach(), solution.theta)
        (theta @ weights).backward()
        grads.append(a.grad)
    assert [s is start for s in starts] == [True, True] and len(linearized) == 1 and linearized[0] is solution
    assert torch.allclose(grads[1], grads[0], rtol=1e-9, atol=1e-13)
    with pytest.raises(TypeError, match="exactly one"):
        implicit_argmin(solver, None, [a0], optimality, linearize=linearize)


def test_objective_scale_keeps_curvature_near_the_solution():
    """torch's LBFGS drops curvature pairs with sᵀy ≤ 1e-10; a solve warm-started next to its
    solution takes steps so short that, unscaled, it would drop them all. The scaled objective
    has the same argmin and converges in a few iterations."""
    data = random_table(400, 6, seed=12)
    a = design_matrix(data.x, data.s, True)
    exact = solve_once(a, data.y, 1e-3, 7, solver=InnerSolverConfig(tolerance_grad=1e-12, tolerance_change=1e-20)).theta
    noise = 1e-4 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise[:, -2:] = 0  # keep the s and intercept columns
    nearby = a + noise
    scaled = solve_once(nearby, data.y, 1e-3, 7, theta0=exact, solver=InnerSolverConfig(tolerance_grad=1e-9))
    plain = solve_once(nearby, data.y, 1e-3, 7, theta0=exact, solver=InnerSolverConfig(tolerance_grad=1e-9, objective_scale=1.0))
    assert InnerSolverConfig().objective_scale > 1
    assert scaled.converged and scaled.iterations <= 15
    assert float(regularized_loss_grad(nearby, data.y, scaled.theta, 1e-3, 7).abs().max()) <= 1e-9
    assert not plain.converged or plain.iterations > scaled.iterations
    assert torch.allclose(scaled.theta, plain.theta, atol=1e-5)


def test_extrapolated_warm_start_saves_iterations_and_keeps_the_solutions():
    data = random_table(400, 6, seed=12)
    a = design_matrix(data.x, data.s, True)
    drift = 1e-3 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    drift[:, -2:] = 0
    problems = [a + k * drift for k in range(12)]
    iterations = {}
    for extrapolate in (False, True):
        solver = LogisticSolver(a.shape[1])
        iterations[extrapolate] = 0
        latest = previous = None
        for k, problem in enumerate(problems):
            solution = solver.solve(loss_r(problem, data.y, 1e-3, 7), warm_start(latest, previous, extrapolate))
            previous, latest = latest, solution.theta
            assert solution.converged
            if k >= 2:
                iterations[extrapolate] += solution.iterations
            reference = solve_once(problem, data.y, 1e-3, 7, solver=InnerSolverConfig(tolerance_grad=1e-12, tolerance_change=1e-20))
            assert torch.allclose(solution.theta, reference.theta, atol=1e-4)
    assert iterations[True] < iterations[False]


def test_bad_inner_solver_config_is_rejected():
    for kwargs in ({"objective_scale": 0.0}, {"objective_scale": float("inf")}, {"history_size": 0}, {"tolerance_grad": 0.0}):
        with pytest.raises(ValueError):
            InnerSolverConfig(**kwargs)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_logistic_model_owns_the_layout_and_fits_through_the_one_solver(fit_intercept):
    """n is the paper's (x_i, s_i) count, θ has n (+1) weights, the design matrix is (x, s[, 1]),
    ``fit`` is :class:`LogisticSolver` on it and ``predict`` is sign(aᵀθ) with +1 at 0."""
    data = random_table(120, 4, seed=30)
    model = LogisticModel(lambda_theta=0.1, fit_intercept=fit_intercept)
    assert model.paper_n(4) == 5 and model.num_weights(4) == 5 + fit_intercept
    a = model.design(data.x, data.s)
    assert torch.equal(a, design_matrix(data.x, data.s, fit_intercept)) and a.shape == (120, model.num_weights(4))
    fitted = model.fit(data)
    assert torch.equal(fitted.theta, solve_once(a, data.y, 0.1, 5).theta) and fitted.converged
    assert torch.equal(model.decision(fitted.theta, data), a @ fitted.theta)
    assert torch.equal(model.predict(fitted.theta, data), torch.where(a @ fitted.theta >= 0, 1.0, -1.0).double())
    with pytest.raises(ValueError, match="fit_intercept"):
        model.decision(torch.zeros(model.num_weights(4) + 1), data)


def test_logistic_model_rejects_a_bad_lambda_theta_when_used():
    model = LogisticModel(lambda_theta=0.0)  # stored as given
    assert model.lambda_theta == 0.0
    with pytest.raises(ValueError, match="lambda_theta"):
        model.fit(random_table(20, 2, seed=31))
    with pytest.raises(ValueError, match="rho"):
        LogisticModel().fit(random_table(20, 2, seed=31), rho=-1.0)


def test_server_model_matches_scikit_learn():
    """ℓ_r with no intercept is scikit-learn's L2 logistic regression with C = n²/(λ_θ N)."""
    data = random_table(400, 4, seed=7)
    lambda_theta, n = 0.5, 5
    theta = fit_server_model(
        [data.subset(torch.arange(0, 150)), data.subset(torch.arange(150, 400))],
        LogisticModel(lambda_theta=lambda_theta, fit_intercept=False, solver=InnerSolverConfig(tolerance_grad=1e-10)),
    ).theta
    model = LogisticRegression(C=n * n / (lambda_theta * len(data)), fit_intercept=False, tol=1e-12, max_iter=10_000)
    model.fit(data.a.numpy(), data.y.numpy())
    np.testing.assert_allclose(theta.numpy(), model.coef_[0], rtol=1e-5, atol=1e-7)


def test_a_fit_does_not_import_torch_dynamo_and_matches_a_plain_lbfgs():
    """Building the one L-BFGS skips torch's import of ``torch._dynamo`` (seconds per process)
    and changes no number: a fresh process fits, then compares with a torch.optim.LBFGS built
    after ``torch._dynamo`` is imported (torch's own path)."""
    script = """
import sys, torch
from fedsynth.core import LogisticModel
from fedsynth.core.model import LogisticObjective, design_matrix
from fedsynth.data.types import TabularData
g = torch.Generator().manual_seed(3)
x = torch.randn(300, 3, generator=g, dtype=torch.float64)
s = (torch.rand(300, generator=g) < 0.4).double()
y = torch.where(x[:, 0] + 0.5 * s > 0, 1.0, -1.0).double()
model = LogisticModel()
ours = model.fit(TabularData(x, s, y, feature_names=("a", "b", "c"))).theta
assert "torch._dynamo" not in sys.modules, "torch._dynamo was imported"
import torch._dynamo
theta = torch.zeros(5, dtype=torch.float64, requires_grad=True)
a = design_matrix(x, s, True)
c = model.solver
optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=c.max_iter, tolerance_grad=c.tolerance_grad * c.objective_scale,
    tolerance_change=c.tolerance_change, history_size=c.history_size, line_search_fn="strong_wolfe")
n = model.paper_n(3)
def closure():
    point = LogisticObjective.regularized(a, y, model.lambda_theta, n).at(theta.detach())
    theta.grad = c.objective_scale * point.gradient()
    return c.objective_scale * point.value()
optimizer.step(closure)
print(float((ours - theta.detach()).abs().max()))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.split()[-1]) < 1e-10


def test_a_synthesis_does_not_import_torch_dynamo_and_its_adam_step_is_torchs():
    """A client's synthesis imports no ``torch._dynamo`` (≈ 1.6 s per client process); its Adam
    step (:func:`fedsynth.core.torch_compat.adam_step`) updates x̂ bit for bit as torch's
    ``Adam.step``: a fresh process synthesizes, then runs both steps side by side from the same
    start and gradients."""
    script = """
import sys, torch
from fedsynth.core import SynthesisConfig, synthesize
from fedsynth.core.torch_compat import adam_step
from fedsynth.data.types import TabularData
g = torch.Generator().manual_seed(5)
x = torch.randn(120, 3, generator=g, dtype=torch.float64)
s = (torch.rand(120, generator=g) < 0.4).double()
y = torch.where(x[:, 0] + 0.5 * s > 0, 1.0, -1.0).double()
config = SynthesisConfig(rho_o=10.0, synthetic_size=40, synthetic_labels="balanced", k_max=5)
synthesize(TabularData(x, s, y, feature_names=("a", "b", "c")), config, seed=0)
assert "torch._dynamo" not in sys.modules, "torch._dynamo was imported"
ours = torch.randn(40, 3, generator=g, dtype=torch.float64).requires_grad_(True)
theirs = ours.detach().clone().requires_grad_(True)
mine, torchs = torch.optim.Adam([ours], lr=0.05, fused=True), torch.optim.Adam([theirs], lr=0.05, fused=True)
for step in range(5):
    grad = torch.randn(40, 3, generator=g, dtype=torch.float64)
    ours.grad, theirs.grad = grad.clone(), grad.clone()
    adam_step(mine)
    torchs.step()
    assert torch.equal(ours.detach(), theirs.detach()), step
print("same")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "same"


def test_fit_server_model_rejects_mismatched_clients():
    with pytest.raises(ValueError, match="feature count"):
        fit_server_model([random_table(10, 3, 0), random_table(10, 4, 1)], LogisticModel())
    with pytest.raises(ValueError, match="at least one"):
        fit_server_model([], LogisticModel())


def test_conjugate_gradient_matches_dense_solve():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(8, 8, generator=g, dtype=torch.float64)
    h = m @ m.T + 0.1 * torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    result = conjugate_gradient(lambda v: h @ v, b, CGConfig(rtol=1e-13))
    assert result.converged
    assert torch.allclose(result.solution, torch.linalg.solve(h, b), rtol=1e-9, atol=1e-11)


def test_conjugate_gradient_on_the_inner_hessian():
    """CG on Hessian-vector products of ℓ_r equals a dense solve with the explicit Hessian."""
    data = random_table(200, 5, seed=8)
    a = design_matrix(data.x, data.s, True)
    theta = solve_once(a, data.y, 1e-3, 6).theta.requires_grad_(True)
    grad = regularized_loss_grad(a, data.y, theta, 1e-3, 6)
    b = torch.randn(a.shape[1], dtype=torch.float64)
    result = conjugate_gradient(lambda v: torch.autograd.grad(grad, theta, v, retain_graph=True)[0], b, CGConfig(rtol=1e-12))
    hessian = explicit_hessian(a, data.y, theta.detach(), 1e-3, 6)
    assert torch.allclose(hessian, torch.func.jacfwd(lambda t: regularized_loss_grad(a, data.y, t, 1e-3, 6))(theta.detach()))
    assert torch.allclose(result.solution, torch.linalg.solve(hessian, b), rtol=1e-8)


def test_unmet_cg_tolerance_is_reported():
    a = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)
    y = torch.where(torch.randn(30) > 0, 1.0, -1.0).double()

    def solver(theta0, a_):
        return solve_once(a_, y, 1e-2, 4).theta, None

    def optimality(theta, a_):
        return regularized_loss_grad(a_, y, theta, 1e-2, 4)

    diagnostics = ImplicitDiagnostics()
    implicit_argmin(solver, None, [a], optimality, solve=cg(CGConfig(max_iter=1), diagnostics))[0].sum().backward()
    assert diagnostics.unconverged == 1 and diagnostics.worst_residual > 0
    with pytest.warns(RuntimeWarning, match="CG stopped at residual"):
        implicit_argmin(solver, None, [a], optimality, solve=cg(CGConfig(max_iter=1)))[0].sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        implicit_argmin(solver, None, [a], optimality)[0].sum().backward()


def test_synthetic_label_strategies():
    train = random_table(103, 3, seed=9)
    g = torch.Generator().manual_seed(0)
    s, y = choose_synthetic_labels(train, 103, "copy", g)
    assert torch.equal(s, train.s) and torch.equal(y, train.y)
    with pytest.raises(ValueError, match="copy"):
        choose_synthetic_labels(train, 50, "copy", g)
    s, y = choose_synthetic_labels(train, 42, "balanced", g)
    counts = [int(((s == a) & (y == b)).sum()) for a, b in [(0, -1), (0, 1), (1, -1), (1, 1)]]
    assert sum(counts) == 42 and max(counts) - min(counts) <= 1
    s, y = choose_synthetic_labels(train, 60, "proportional", g)
    for a, b in [(0, -1), (0, 1), (1, -1), (1, 1)]:
        share = float(((train.s == a) & (train.y == b)).double().mean())
        assert abs(int(((s == a) & (y == b)).sum()) - 60 * share) <= 1


def test_noisy_proportional_labels_blur_the_group_counts_by_epsilon():
    """noisy_proportional: the (s, y) shares of ε-DP counts (Laplace(2/ε) each). A large ε gives
    the proportional shares; a small ε moves them by about 2/(ε N) on average."""
    train = random_table(400, 3, seed=10)
    true = torch.tensor([float(((train.s == a) & (train.y == b)).double().mean()) for a, b in [(0, -1), (0, 1), (1, -1), (1, 1)]])

    def share_error(epsilon: float, seed: int) -> float:
        s, y = choose_synthetic_labels(train, 400, "noisy_proportional", torch.Generator().manual_seed(seed), epsilon=epsilon)
        shares = torch.tensor([float(((s == a) & (y == b)).double().mean()) for a, b in [(0, -1), (0, 1), (1, -1), (1, 1)]])
        return float((shares - true).abs().mean())

    assert all(share_error(1e6, seed) <= 1 / 400 for seed in range(5))
    noisy = sum(share_error(0.05, seed) for seed in range(20)) / 20
    assert 0.3 * 2 / (0.05 * 400) < noisy < 3 * 2 / (0.05 * 400)
    with pytest.raises(ValueError, match="label_epsilon"):
        SynthesisConfig(label_epsilon=0.0)


def test_subsample_init_takes_real_rows_of_the_same_group():
    train = random_table(80, 3, seed=10)
    g = torch.Generator().manual_seed(1)
    s, y = choose_synthetic_labels(train, 20, "balanced", g)
    x = initial_features(train, s, y, "subsample", g)
    for row, s_i, y_i in zip(x, s, y):
        matches = (train.x == row).all(dim=1) & (train.s == s_i) & (train.y == y_i)
        assert bool(matches.any())


def test_synthesis_is_seeded_and_lowers_the_objective():
    train = random_table(120, 3, seed=11)
    config = SynthesisConfig(rho_o=10.0, synthetic_size=40, synthetic_labels="balanced", k_max=40, lr=0.05)
    first = synthesize(train, config, seed=3)
    again = synthesize(train, config, seed=3)
    other = synthesize(train, config, seed=4)
    assert torch.equal(first.data.x, again.data.x)
    assert not torch.equal(first.data.x, other.data.x)
    assert len(first.history.objective) == 40
    assert first.history.objective[-1] < first.history.objective[0]
    assert first.data.x.shape == (40, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lambda_theta": 0.0}, "lambda_theta"),
        ({"rho_o": -1.0}, "rho_o"),
        ({"rho_s": float("nan")}, "rho_s"),
        ({"synthetic_labels": "random"}, "synthetic_labels"),
        ({"init": "zeros"}, "init"),
        ({"synthetic_size": 2}, "synthetic_size"),
        ({"lr": 0.0}, "lr"),
        ({"k_max": -1}, "k_max"),
        ({"fairness": "parity"}, "fairness must be one of"),
        ({"fairness_temperature": 0.0}, "fairness_temperature"),
    ],
)
def test_bad_synthesis_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SynthesisConfig(**kwargs)


def test_synthetic_size_may_exceed_the_client_except_for_copied_labels():
    """N_s > N is allowed (``synthetic_size: auto`` does not depend on N, so a small client's row
    count does not reveal its N); ``copy`` labels are the client's own and need N_s = N."""
    result = synthesize(random_table(30, 2, 0), SynthesisConfig(synthetic_size=31, synthetic_labels="balanced", k_max=1), seed=0)
    assert len(result.data) == 31
    with pytest.raises(ValueError, match="needs synthetic_size = N"):
        synthesize(random_table(30, 2, 0), SynthesisConfig(synthetic_size=31, synthetic_labels="copy", k_max=1), seed=0)


@pytest.mark.parametrize("fairness", MEASURES)
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fairness_measure_value_and_gradient(fairness, fit_intercept):
    """Each measure's value is its definition and its closed-form θ-gradient matches central finite
    differences."""
    data = random_table(80, 3, seed=11)
    a = design_matrix(data.x, data.s, fit_intercept)
    theta = torch.randn(a.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    measure = fairness_from_config(fairness, 0.3).bind(a, data.s, data.y)
    value, grad = measure(theta)
    assert torch.allclose(value, reference_measure(fairness, a, data.s, data.y, theta, 0.3), rtol=1e-12)
    eps = 1e-6
    fd = torch.stack([
        (measure(theta + eps * e)[0] - measure(theta - eps * e)[0]) / (2 * eps)
        for e in torch.eye(len(theta), dtype=torch.float64)
    ])
    assert torch.allclose(grad, fd, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("fairness", MEASURES)
def test_fairness_measure_is_zero_without_both_groups(fairness):
    """Rows from one group only (or, for the equal-opportunity measures, no positive row) show no
    disparity: F = 0 and ∇F = 0 rather than NaN."""
    data = random_table(30, 2, seed=12)
    a = design_matrix(data.x, data.s, True)
    theta = torch.ones(a.shape[1], dtype=torch.float64)
    for s, y in ((torch.ones_like(data.s), data.y), (data.s, -torch.ones_like(data.y))):
        if not fairness.startswith("eo_") and bool((y < 0).all()):
            continue  # the statistical-parity measures do not look at y
        value, grad = fairness_from_config(fairness, 1.0).bind(a, s, y)(theta)
        assert float(value) == 0.0 and float(grad.abs().max()) == 0.0


def test_covariance_objective_is_todays_eq_11_bit_for_bit():
    """The default measure gives exactly the arithmetic of the paper's eq. (11) real-data term as
    fedsynth computed it before measures were pluggable: c = ((s − s̄) @ A) / N, F = c·θ."""
    train, config, s_hat, y_hat, x_hat = problem(True, rho_s=0.0, seed=7)
    assert SynthesisConfig().fairness == "covariance"
    theta = torch.randn(x_hat.shape[1] + 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a = design_matrix(train.x, train.s, True)
    direction = ((train.s - train.s.mean()) @ a) / len(train)
    covariance = direction.dot(theta)
    z = -train.y * (a @ theta)
    expected = torch.nn.functional.softplus(z).mean() + 0.5 * config.rho_o * covariance * covariance
    objective = PenaltyObjective(train, s_hat, y_hat, config)
    assert torch.equal(objective.real_measure(theta)[0], direction @ theta)
    lambda_term = config.lambda_x / (2.0 * (len(x_hat) * objective.n) ** 2) * (x_hat.reshape(-1).dot(x_hat.reshape(-1)))
    assert torch.equal(objective(x_hat, theta), expected + lambda_term)


def test_server_rho_zero_is_the_papers_server_bit_for_bit():
    tables = [random_table(60, 3, seed=20), random_table(40, 3, seed=21)]
    union = TabularData.concat(tables)
    a = design_matrix(union.x, union.s, True)
    plain = solve_once(a, union.y, 1e-3, 4)
    for fairness in MEASURES:
        served = fit_server_model(tables, LogisticModel(), rho=0.0, fairness=fairness_from_config(fairness))
        assert torch.equal(served.theta, plain.theta)


@pytest.mark.parametrize("fairness", MEASURES)
def test_fair_server_model_is_a_stationary_point_of_its_objective(fairness):
    """server_rho > 0: θ minimizes ℓ_r + ρ/2·F² on the pooled rows, with F from their own (ŝ, ŷ):
    the central finite-difference gradient of that objective (written from the definitions)
    vanishes at θ, and F moves towards 0."""
    tables = [random_table(60, 3, seed=22), random_table(40, 3, seed=23)]
    union = TabularData.concat(tables)
    a = design_matrix(union.x, union.s, True)
    rho, tau = 20.0, 0.5
    solver = InnerSolverConfig(max_iter=500, tolerance_grad=1e-10)
    fair = fit_server_model(tables, LogisticModel(solver=solver), rho=rho, fairness=fairness_from_config(fairness, tau)).theta
    plain = fit_server_model(tables, LogisticModel(solver=solver)).theta

    def objective(theta):
        return loss_r(a, union.y, 1e-3, 4).at(theta).value() + rho / 2 * reference_measure(fairness, a, union.s, union.y, theta, tau) ** 2

    eps = 1e-6
    fd = torch.stack([(objective(fair + eps * e) - objective(fair - eps * e)) / (2 * eps) for e in torch.eye(len(fair), dtype=torch.float64)])
    assert float(fd.abs().max()) < 1e-6
    measure = lambda theta: abs(float(reference_measure(fairness, a, union.s, union.y, theta, tau)))  # noqa: E731
    assert measure(fair) < 0.5 * measure(plain)


def test_synthesis_on_k_groups_balances_groups_times_labels_and_fits_k_minus_1_indicators():
    """A client with a 3-group attribute: balanced labels give each of the 6 (group, label) pairs
    N_s/6 rows, the synthetic table keeps k = 3, and θ has one weight per group indicator (k − 1)."""
    from fedsynth.core.synthesis import choose_synthetic_labels, label_pairs

    base = random_table(120, 2, seed=3)
    groups = torch.randint(3, (120,), generator=torch.Generator().manual_seed(1)).double()
    train = TabularData(base.x, groups, base.y, base.feature_names, num_groups=3)
    assert label_pairs(2) == ((0.0, -1.0), (0.0, 1.0), (1.0, -1.0), (1.0, 1.0))
    s_hat, y_hat = choose_synthetic_labels(train, 60, "balanced", torch.Generator().manual_seed(0))
    assert all(int(((s_hat == s) & (y_hat == y)).sum()) == 10 for s, y in label_pairs(3))
    config = SynthesisConfig(synthetic_size=60, synthetic_labels="balanced", k_max=3, rho_o=5.0, fairness="group_covariance")
    result = synthesize(train, config, seed=0)
    assert result.data.num_groups == 3 and result.theta.shape == (2 + 2 + 1,)
    assert torch.isfinite(torch.tensor(result.history.objective)).all()
