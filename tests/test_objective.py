"""Specifications of the one logistic objective (:class:`fedsynth.core.LogisticObjective`) and of the
fairness measure objects (:mod:`fedsynth.core.fairness`): every closed form against central finite
differences."""

from __future__ import annotations

import pytest
import torch

import fedsynth.core.model as model_module
from fedsynth.core import (
    FAIRNESS_MEASURES,
    Covariance,
    DemographicParityGap,
    EqualOpportunityCovariance,
    EqualOpportunityGap,
    EqualOpportunityGroupCovariance,
    GroupCovariance,
    LargestDemographicParityGap,
    LargestEqualOpportunityGap,
    LogisticModel,
    LogisticObjective,
    design_matrix,
    fairness_from_config,
)

EPS = 1e-6


def rows(count: int, features: int, seed: int, fit_intercept: bool = True):
    """A design matrix, groups s ∈ {0, 1} and labels y ∈ {−1, +1} that depend on both."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(count, features, generator=g, dtype=torch.float64)
    s = (torch.rand(count, generator=g) < 0.4).double()
    y = torch.where(x[:, 0] + 0.7 * s + 0.5 * torch.randn(count, generator=g, dtype=torch.float64) > 0.3, 1.0, -1.0).double()
    return design_matrix(x, s, fit_intercept), s, y, g


def central(f, x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """(f(x + εd) − f(x − εd)) / 2ε."""
    return (f(x + EPS * direction) - f(x - EPS * direction)) / (2 * EPS)


@pytest.fixture(params=["dense", "matrix-free"])
def hessian_form(request, monkeypatch):
    """Both Hessian-vector product forms: the formed d × d Hessian and the matrix-free product."""
    if request.param == "matrix-free":
        monkeypatch.setattr(model_module, "DENSE_HESSIAN_MAX_COLUMNS", 0)
    return request.param


@pytest.mark.parametrize("ridge", [0.0, 0.03])
def test_value_gradient_hvp_and_design_vjp_match_finite_differences(ridge, hessian_form):
    a, _, y, g = rows(40, 3, seed=1)
    theta = torch.randn(a.shape[1], generator=g, dtype=torch.float64)
    objective = LogisticObjective(a, y, ridge)
    point = objective.at(theta)
    basis = torch.eye(len(theta), dtype=torch.float64)
    value = lambda t: objective.at(t).value()  # noqa: E731
    gradient = lambda t: objective.at(t).gradient()  # noqa: E731
    fd_grad = torch.stack([central(value, theta, e) for e in basis])
    assert torch.allclose(point.gradient(), fd_grad, rtol=1e-7, atol=1e-10)
    v = torch.randn(len(theta), generator=g, dtype=torch.float64)
    assert torch.allclose(point.hvp(v), central(gradient, theta, v), rtol=1e-7, atol=1e-10)
    # design VJP: ⟨vjp(u), E⟩ is the directional derivative of ⟨u, ∇_θ⟩ in A along E, for every entry E
    u = torch.randn(len(theta), generator=g, dtype=torch.float64)
    vjp = point.design_vjp(u)
    fd_vjp = torch.zeros_like(a)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            e = torch.zeros_like(a)
            e[i, j] = 1.0
            fd_vjp[i, j] = central(lambda m: LogisticObjective(m, y, ridge).at(theta).gradient().dot(u), a, e)
    assert torch.allclose(vjp, fd_vjp, rtol=1e-6, atol=1e-10)
    assert torch.equal(point.design_vjp(u, 2), vjp[:, :2])


def test_the_value_is_eq_9_and_eq_11():
    """value() is the mean of log(1 + exp(−y aᵀθ)) (eq. 9), plus λ_θ/(2n²)‖θ‖² for ℓ_r (eq. 11)."""
    a, _, y, g = rows(30, 2, seed=2)
    theta = torch.randn(a.shape[1], generator=g, dtype=torch.float64)
    plain = torch.log1p(torch.exp(-y * (a @ theta))).mean()
    assert torch.allclose(LogisticObjective(a, y).at(theta).value(), plain, rtol=1e-14)
    regularized = LogisticObjective.regularized(a, y, 0.5, 3).at(theta).value()
    assert torch.allclose(regularized, plain + 0.5 / (2 * 9) * theta.dot(theta), rtol=1e-14)
    model = LogisticModel(lambda_theta=0.5)
    assert model.objective(a, y).ridge == LogisticObjective.regularized(a, y, 0.5, model.paper_n(2)).ridge


@pytest.mark.parametrize("ridge", [0.0, 0.03])
def test_scale_and_an_added_penalty_gradient(ridge):
    """gradient(s, plus=(v, β)) = s·∇ + βv, whichever product form it takes."""
    a, _, y, g = rows(25, 3, seed=3)
    theta = torch.randn(a.shape[1], generator=g, dtype=torch.float64)
    v = torch.randn(a.shape[1], generator=g, dtype=torch.float64)
    point = LogisticObjective(a, y, ridge).at(theta)
    for scale in (1.0, 1e6):
        assert torch.allclose(point.gradient(scale, plus=(v, 0.7)), scale * point.gradient() + 0.7 * v, rtol=1e-12)


def test_row_gradients_are_each_rows_term():
    """Row i of row_gradients is the θ-gradient of row i's term (1/N) log(1 + exp(−y_i a_iᵀθ)); the
    rows plus the ridge's 2cθ sum to the gradient. A solve's σ(z) gives the same products."""
    a, _, y, g = rows(12, 2, seed=4)
    theta = torch.randn(a.shape[1], generator=g, dtype=torch.float64)
    objective = LogisticObjective(a, y, 0.02)
    point = objective.at(theta)
    per_row = point.row_gradients()
    basis = torch.eye(len(theta), dtype=torch.float64)
    for i in range(len(y)):
        term = lambda t: torch.nn.functional.softplus(-y[i] * (a[i] @ t)) / len(y)  # noqa: E731
        assert torch.allclose(per_row[i], torch.stack([central(term, theta, e) for e in basis]), rtol=1e-6, atol=1e-11)
    assert torch.allclose(per_row.sum(0) + 2 * 0.02 * theta, point.gradient(), rtol=1e-12)
    reused = objective.at(theta, sigmoid_z=point.sigmoid_z)
    assert torch.equal(reused.gradient(), point.gradient()) and torch.equal(reused.row_gradients(), per_row)


MEASURE_OBJECTS = [Covariance(), EqualOpportunityCovariance(), DemographicParityGap(temperature=0.3), EqualOpportunityGap(temperature=0.3)]
GROUP_MEASURES = [
    GroupCovariance(),
    EqualOpportunityGroupCovariance(),
    LargestDemographicParityGap(temperature=0.3),
    LargestEqualOpportunityGap(temperature=0.3),
]


def group_rows(count: int, features: int, seed: int, num_groups: int):
    """A k-group design matrix (x, k − 1 group indicators, 1), group indices s ∈ {0..k−1} and
    labels that depend on x and the group."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(count, features, generator=g, dtype=torch.float64)
    s = torch.randint(num_groups, (count,), generator=g).double()
    y = torch.where(x[:, 0] + 0.4 * s + 0.5 * torch.randn(count, generator=g, dtype=torch.float64) > 0.6, 1.0, -1.0).double()
    return design_matrix(x, s, True, num_groups), s, y, g


@pytest.mark.parametrize(
    "measure, num_groups",
    [(m, 2) for m in MEASURE_OBJECTS] + [(m, k) for m in GROUP_MEASURES for k in (2, 4)],
    ids=lambda p: p.name if hasattr(p, "name") else f"k{p}",
)
def test_measure_gradients_match_finite_differences(measure, num_groups):
    """For each measure object bound to rows (two groups, and four for the k-group measures):
    ∇_θ F and the per-row terms against central differences (a row's term: F's derivative through
    that row's decision value, the groups' weights held), and F's derivative in the design matrix
    (autograd, as the ρ_s term uses it)."""
    a, s, y, g = rows(30, 2, seed=5) if num_groups == 2 else group_rows(40, 2, 5, num_groups)
    theta = torch.randn(a.shape[1], generator=g, dtype=torch.float64)
    bound = measure.bind(a, s, y)
    value, grad = bound(theta)
    basis = torch.eye(len(theta), dtype=torch.float64)
    assert torch.allclose(grad, torch.stack([central(lambda t: bound(t)[0], theta, e) for e in basis]), rtol=1e-7, atol=1e-10)
    per_row = bound.row_gradients(theta)
    assert per_row.shape == a.shape
    assert torch.allclose(per_row.sum(0), grad, rtol=1e-12, atol=1e-15)
    measured = y > 0 if measure.positives_only else torch.ones_like(y, dtype=torch.bool)
    assert not bool(per_row[~measured].any())
    for i in torch.nonzero(measured).squeeze(1)[:6].tolist():
        # row i's term is ∂F/∂m_i · a_i: the derivative of F along a_i's own decision value
        m = a @ theta
        direction = torch.zeros_like(m)
        direction[i] = 1.0
        via_margin = central(lambda mm: _measure_of_margins(measure, mm, s, y), m, direction)
        assert torch.allclose(per_row[i], via_margin * a[i], rtol=1e-6, atol=1e-11)
    design = a.clone().requires_grad_(True)
    (by_autograd,) = torch.autograd.grad(measure.bind(design, s, y)(theta)[0], design)
    e = torch.randn(a.shape, generator=g, dtype=torch.float64)
    along = central(lambda m: measure.bind(m, s, y)(theta)[0], a, e)
    assert torch.allclose((by_autograd * e).sum(), along, rtol=1e-7, atol=1e-10)
    assert value.shape == ()


def _measure_of_margins(measure, margins: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F as a function of the decision values m_i alone: the measure bound to the one-column design
    (m_i), at θ = (1)."""
    return measure.bind(margins.unsqueeze(1), s, y)(torch.ones(1, dtype=margins.dtype))[0]


def test_group_measures_are_the_binary_ones_in_absolute_value_for_two_groups():
    """For s ∈ {0, 1}: the per-group-indicator covariance norm is |eq. (2)| and the largest smooth
    gap |dp_gap|, so F² and the penalty gradient F·∇F are the binary measures' (to rounding)."""
    a, s, y, g = rows(50, 3, seed=2)
    theta = torch.randn(a.shape[1], generator=g, dtype=torch.float64)
    for binary, group in zip(MEASURE_OBJECTS, GROUP_MEASURES):
        (f_binary, grad_binary), (f_group, grad_group) = binary.bind(a, s, y)(theta), group.bind(a, s, y)(theta)
        assert float(f_group) == pytest.approx(abs(float(f_binary)), rel=1e-12)
        assert torch.allclose(f_group * grad_group, f_binary * grad_binary, rtol=1e-10, atol=1e-15)


def test_the_largest_smooth_gap_tends_to_the_largest_positive_rate_gap():
    """As τ → 0, F of dp_largest_gap is the ``spd`` metric of k groups: max_g − min_g of the groups'
    positive rates (fairlearn's demographic_parity_difference)."""
    from fairlearn.metrics import demographic_parity_difference

    a, s, y, g = group_rows(400, 3, seed=9, num_groups=5)
    theta = torch.randn(a.shape[1], generator=g, dtype=torch.float64)
    predicted = ((a @ theta) >= 0).double().numpy()
    smooth = LargestDemographicParityGap(temperature=1e-6).bind(a, s, y)(theta)[0]
    assert float(smooth) == pytest.approx(demographic_parity_difference(y.numpy(), predicted, sensitive_features=s.numpy()), abs=1e-6)
    assert float(GroupCovariance().bind(a, s[:1].expand(len(s)), y)(theta)[0]) == 0.0  # one group: F ≡ 0


def test_config_keys_become_the_measure_object_in_one_place():
    """``method.fairness`` / ``method.fairness_temperature`` name a class and its τ; the objects take
    plain keyword arguments (Hydra ``instantiate``-ready), compare by value and check τ."""
    assert fairness_from_config() == Covariance()
    assert fairness_from_config("eo_covariance", 0.1) == EqualOpportunityCovariance()
    assert fairness_from_config("dp_gap", 0.1) == DemographicParityGap(temperature=0.1)
    assert fairness_from_config("eo_gap", 0.5) == EqualOpportunityGap(temperature=0.5)
    assert fairness_from_config("group_covariance", 0.5) == GroupCovariance()
    assert fairness_from_config("dp_largest_gap", 0.5) == LargestDemographicParityGap(temperature=0.5)
    assert {name: cls.name for name, cls in FAIRNESS_MEASURES.items()} == {name: name for name in FAIRNESS_MEASURES}
    with pytest.raises(ValueError, match="fairness must be one of"):
        fairness_from_config("parity")
    with pytest.raises(ValueError, match="fairness_temperature"):
        fairness_from_config("covariance", 0.0)
    with pytest.raises(ValueError, match="temperature"):
        DemographicParityGap(temperature=float("inf"))


@pytest.mark.parametrize("measure", [GroupCovariance(), LargestDemographicParityGap(temperature=0.1)], ids=lambda m: m.name)
def test_a_penalized_fit_on_four_groups_shrinks_the_largest_gap(measure):
    """ℓ_r + ρ/2·F² with a k-group measure, on rows whose labels depend on the group: the largest
    positive-rate gap over the 4 groups (the ``spd`` metric) falls well below the plain fit's."""
    from fedsynth.data.types import TabularData
    from fedsynth.metrics import evaluate_model

    g = torch.Generator().manual_seed(4)
    x = torch.randn(800, 3, generator=g, dtype=torch.float64)
    s = torch.randint(4, (800,), generator=g).double()
    y = torch.where(x[:, 0] + 0.6 * s + 0.5 * torch.randn(800, generator=g, dtype=torch.float64) > 1.0, 1.0, -1.0).double()
    data = TabularData(x, s, y, ("a", "b", "c"), num_groups=4)
    model = LogisticModel()
    plain = evaluate_model(model, model.fit(data).theta, data)
    fair = evaluate_model(model, model.fit(data, rho=200.0, fairness=measure).theta, data)
    assert plain["spd"] > 0.5 and fair["spd"] < plain["spd"] / 3
