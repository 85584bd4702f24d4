"""The method's mathematical core, plain PyTorch: model, implicit differentiation, synthesis."""

from fedsynth.core.implicit import (
    CGConfig,
    CGResult,
    ImplicitDiagnostics,
    autograd_linearize,
    cg,
    conjugate_gradient,
    implicit_argmin,
)
from fedsynth.core.model import (
    InnerSolution,
    InnerSolverConfig,
    LogisticMixture,
    LogisticModel,
    LogisticSolver,
    design_matrix,
    logistic_loss,
    regularized_loss,
    regularized_loss_grad,
    regularized_loss_hvp,
    warm_start,
)
from fedsynth.core.fairness import FAIRNESS_MEASURES, fairness_measure
from fedsynth.core.server import fit_server_model
from fedsynth.core.synthesis import (
    PenaltyObjective,
    SynthesisConfig,
    SynthesisHistory,
    SynthesisResult,
    choose_synthetic_labels,
    initial_features,
    synthesize,
)

__all__ = [
    "CGConfig",
    "FAIRNESS_MEASURES",
    "CGResult",
    "ImplicitDiagnostics",
    "InnerSolution",
    "InnerSolverConfig",
    "LogisticMixture",
    "LogisticModel",
    "LogisticSolver",
    "PenaltyObjective",
    "SynthesisConfig",
    "SynthesisHistory",
    "SynthesisResult",
    "autograd_linearize",
    "cg",
    "choose_synthetic_labels",
    "conjugate_gradient",
    "design_matrix",
    "fairness_measure",
    "fit_server_model",
    "implicit_argmin",
    "initial_features",
    "logistic_loss",
    "regularized_loss",
    "regularized_loss_grad",
    "regularized_loss_hvp",
    "synthesize",
    "warm_start",
]
