"""The client's one differentially private release: noisy sufficient statistics of its training rows.

The synthesis reaches the real rows only through the real-data terms of P (eq. 11): the logistic
loss ℓ(θ) on the real rows and the fairness measure F(θ) on them. For the linear model both are
functions of a few sums over the rows, once the loss is replaced by its second-order expansion at
θ = 0, softplus(−y m) ≈ log 2 − y m / 2 + m² / 8 (y² = 1):

    ℓ(θ) ≈ log 2 − ½ b̄ᵀθ + ⅛ θᵀ M̄ θ,   M̄ = (1/N) Σ_i ā_i ā_iᵀ,   b̄ = (1/N) Σ_i y_i ā_i,
    F(θ) = c̄ᵀθ with c̄ = (1/N) Σ_i (s_i − s̄) ā_i  (eq. 2: a row and a column of M̄),

with ā_i = (x̃_i, s_i, 1) and x̃_i the client's encoded features clipped to L2 norm ``clip``. The
equal-opportunity covariance needs one more sum, Σ_i y_i s_i ā_i. :func:`release_statistics` adds
Gaussian noise to these sums once (one Gaussian mechanism, :mod:`fedsynth.privacy.accounting`);
everything the synthesis then needs — N, the four (s, y) counts, the feature means and standard
deviations, the loss surrogate and the fairness vector — is computed from the noisy sums
(:class:`NoisyStatistics`), i.e. is post-processing and spends nothing more.

Sensitivity (add or remove one row): the sums are released in blocks scaled to per-row L2 norm at
most 1 — Σ āāᵀ / B² (its upper triangle: ‖āāᵀ‖_F = ‖ā‖² ≤ B²), Σ yā / B and Σ ysā / B, with
B² = clip² + 2 — so k blocks have joint sensitivity √k and noise N(0, (z√k)²) on every entry
gives the Gaussian mechanism with noise multiplier z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedsynth.data.types import TabularData

STATISTICS_MEASURES = ("covariance", "eo_covariance")
"""The fairness measures that are functions of the released sums (linear in θ); the smooth gaps
``dp_gap`` / ``eo_gap`` are not, and cannot run with privacy on."""

FLOOR_MULTIPLE = 4.0
"""The loss surrogate's eigenvalue floor in units of the noise's expected spectral norm. Chosen once
from measurements (docs/privacy.md, Law School race, ε = 1, ρ_o = 3, k_max = 200, four noise draws):
|SPD| of the server's model 0.06–0.27 at 1×, 0.04–0.08 at 2×, 0.03–0.05 at 4×, 0.05–0.07 at 8×,
accuracy 89.1–89.2 % at 4×. Below it the clients' models differ in the directions the noise
dominates, and the server's fit on the union of their rows mixes those differences."""

GROUP_ORDER = ((0.0, -1.0), (0.0, 1.0), (1.0, -1.0), (1.0, 1.0))
"""The order of the four (s, y) counts (:data:`fedsynth.core.synthesis.GROUPS`)."""


def clip_rows(x: torch.Tensor, clip: float) -> torch.Tensor:
    """Each row of ``x`` scaled down to L2 norm at most ``clip`` (rows within it unchanged)."""
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x * torch.clamp(clip / norms.clamp_min(torch.finfo(x.dtype).tiny), max=1.0)


def augmented_rows(data: TabularData, clip: float) -> torch.Tensor:
    """ā_i = (x̃_i, s_i, 1), x̃_i the row clipped to norm ``clip``: ‖ā_i‖² ≤ clip² + 2."""
    ones = torch.ones(len(data), 1, dtype=data.x.dtype)
    return torch.cat([clip_rows(data.x, clip), data.s.unsqueeze(1).to(data.x.dtype), ones], dim=1)


def _symmetric_noise(size: int, std: float, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A symmetric matrix whose upper triangle (diagonal included) is i.i.d. N(0, std²)."""
    upper = torch.triu(torch.randn(size, size, generator=generator, dtype=dtype)) * std
    return upper + torch.triu(upper, diagonal=1).T


def release_blocks(equal_opportunity: bool) -> int:
    """How many unit-sensitivity blocks the release holds: Σ āāᵀ and Σ yā, plus Σ ysā for the
    equal-opportunity covariance."""
    return 3 if equal_opportunity else 2


def release_statistics(
    data: TabularData,
    *,
    clip: float,
    noise_multiplier: float,
    generator: torch.Generator,
    equal_opportunity: bool = False,
) -> NoisyStatistics:
    """The Gaussian mechanism on the sufficient statistics of ``data`` (see the module docstring):
    Σ āāᵀ, Σ yā (and with ``equal_opportunity`` Σ ysā), each entry with N(0, (z√k B^j)²) noise,
    z = ``noise_multiplier``, k blocks, B^j the block's per-row bound. ``noise_multiplier = 0`` is
    the mechanism with its noise off (the audit's broken mechanism; never a private release)."""
    if not (clip > 0 and math.isfinite(clip)):
        raise ValueError(f"privacy.clip must be a finite number > 0, got {clip}")
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    a = augmented_rows(data, clip)
    bound_sq = clip * clip + 2.0
    bound = math.sqrt(bound_sq)
    std = noise_multiplier * math.sqrt(release_blocks(equal_opportunity))
    width, dtype = a.shape[1], a.dtype

    def noise(size: int, scale: float) -> torch.Tensor:
        return torch.randn(size, generator=generator, dtype=dtype) * (std * scale)

    second = a.T @ a + _symmetric_noise(width, std * bound_sq, generator, dtype)
    label = a.T @ data.y + noise(width, bound)
    label_group = a.T @ (data.y * data.s) + noise(width, bound) if equal_opportunity else None
    return NoisyStatistics(second, label, label_group, second_noise_std=std * bound_sq)


@dataclass(frozen=True)
class NoisyStatistics:
    """The released sums in the augmented layout ā = (x̃, s, 1) and what follows from them.

    Attributes:
        second: Σ āāᵀ + noise (symmetric), (d + 2) × (d + 2).
        label: Σ y ā + noise.
        label_group: Σ y s ā + noise, or ``None`` when not released.
        second_noise_std: the standard deviation of the noise on each entry of ``second`` (public:
            it follows from the noise multiplier and the clip; for pooled releases the root of
            the sum of their variances).
    """

    second: torch.Tensor
    label: torch.Tensor
    label_group: torch.Tensor | None = None
    second_noise_std: float = 0.0

    @classmethod
    def pooled(cls, releases: list[NoisyStatistics]) -> NoisyStatistics:
        """The sums of several releases (e.g. every client's, at the server): the sums add, and
        so do the noises' variances. ``label_group`` only when every release has it."""
        if not releases:
            raise ValueError("pooling needs at least one release")
        groups = [r.label_group for r in releases]
        return cls(
            second=sum(r.second for r in releases),
            label=sum(r.label for r in releases),
            label_group=None if any(g is None for g in groups) else sum(groups),
            second_noise_std=math.sqrt(sum(r.second_noise_std**2 for r in releases)),
        )

    @property
    def num_features(self) -> int:
        """d, the columns of x."""
        return self.second.shape[0] - 2

    @property
    def count(self) -> float:
        """N, the noisy row count (Σ 1·1), at least 1."""
        return max(float(self.second[-1, -1]), 1.0)

    def group_counts(self) -> torch.Tensor:
        """The four (s, y) counts in :data:`GROUP_ORDER`, clamped at 0: from N, Σ s, Σ y, Σ ys
        (entries of Σ āāᵀ and Σ yā)."""
        d = self.num_features
        n, n_s1 = self.second[-1, -1], self.second[d, -1]
        sum_y, sum_ys = self.label[-1], self.label[d]
        n_s0, sum_y_s0 = n - n_s1, sum_y - sum_ys
        counts = torch.stack(
            [(n_s0 - sum_y_s0) / 2, (n_s0 + sum_y_s0) / 2, (n_s1 - sum_ys) / 2, (n_s1 + sum_ys) / 2]
        )
        return counts.clamp_min(0.0)

    def feature_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and standard deviation of each (clipped) feature: Σ x̃ / N and
        √(Σ x̃² / N − mean²), the variance floored at 1e-4."""
        d, n = self.num_features, self.count
        mean = self.second[-1, :d] / n
        variance = (self.second.diagonal()[:d] / n - mean * mean).clamp_min(1e-4)
        return mean, variance.sqrt()

    def noise_floor(self) -> float:
        """The smallest eigenvalue :meth:`loss_surrogate` keeps: :data:`FLOOR_MULTIPLE` times the
        expected spectral norm of the noise on M̄ = Σ āāᵀ / N, 2 σ √(d + 2) / N for a symmetric
        Gaussian matrix with entry noise σ (Wigner's semicircle edge)."""
        return FLOOR_MULTIPLE * 2.0 * self.second_noise_std * math.sqrt(self.second.shape[0]) / self.count

    def loss_surrogate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, g) of the quadratic ℓ̃(θ) = log 2 − gᵀθ + ½ θᵀHθ that replaces the logistic loss on
        the real rows, augmented layout: g = b̄ / 2 and H = M̄ / 4 with the eigenvalues of M̄ raised
        to at least :meth:`noise_floor` (as AdaSSP, Wang 2018, regularizes a noisy Gram matrix by
        the noise's size: directions the noise dominates get curvature, not an inverted noise;
        with the eigenvalues only kept ≥ 0 the surrogate's fair fit lost 13 points at ε = 1)."""
        n = self.count
        values, vectors = torch.linalg.eigh(self.second / n)
        hessian = (vectors * values.clamp_min(self.noise_floor())) @ vectors.T / 4.0
        return hessian, self.label / (2.0 * n)

    def fairness_direction(self, measure: str) -> torch.Tensor:
        """c̄ with F(θ) = c̄ᵀθ for ``measure`` (one of :data:`STATISTICS_MEASURES`), augmented
        layout: ``covariance`` (eq. 2) (1/N) Σ (s − s̄) ā; ``eo_covariance`` the same over the rows
        with y = +1 (from Σ_{y=1} f = (Σ f + Σ y f) / 2)."""
        d = self.num_features
        if measure == "covariance":
            total, with_s = self.second[-1], self.second[d]
        elif measure == "eo_covariance":
            if self.label_group is None:
                raise ValueError("the equal-opportunity covariance needs the released Σ y s ā")
            total, with_s = (self.second[-1] + self.label) / 2, (self.second[d] + self.label_group) / 2
        else:
            raise ValueError(f"privacy supports the fairness measures {STATISTICS_MEASURES}, got {measure!r}")
        rows = max(float(total[-1]), 1.0)
        share = float(with_s[-1]) / rows
        return (with_s - share * total) / rows


def model_terms(
    stats: NoisyStatistics, measure: str, fit_intercept: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(H, g, c) of the real-data terms ℓ̃(θ) + ρ/2 (cᵀθ)² in the layout of the model's θ,
    (x, s[, 1]): the augmented layout without its constant column when the model has no
    intercept (:meth:`NoisyStatistics.loss_surrogate`, :meth:`NoisyStatistics.fairness_direction`)."""
    hessian, linear = stats.loss_surrogate()
    direction = stats.fairness_direction(measure)
    width = len(linear) - (0 if fit_intercept else 1)
    return hessian[:width, :width], linear[:width], direction[:width]


def surrogate_fit(
    stats: NoisyStatistics, *, rho: float, measure: str, lambda_theta: float, fit_intercept: bool
) -> torch.Tensor:
    """argmin_θ ℓ̃(θ) + λ_θ/(2n²)‖θ‖² + ρ/2 (cᵀθ)², the quadratically approximated fair problem
    (eq. 11's ℓ_r with the loss surrogate, plus the penalty of eq. (15) with ``server_rho``), in
    closed form: (H + ρ c cᵀ + λ_θ/n² I) θ = g."""
    hessian, linear, direction = model_terms(stats, measure, fit_intercept)
    n = stats.num_features + 1  # the paper's n: the entries of (x, s)
    system = hessian + rho * torch.outer(direction, direction)
    system.diagonal().add_(lambda_theta / (n * n))
    return torch.linalg.solve(system, linear)
