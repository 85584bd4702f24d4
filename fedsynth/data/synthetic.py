"""The built-in biased table, in the style of Zafar et al. (2017), "Fairness Constraints".

Two Gaussian classes: ``y`` is +1 or -1 with equal probability and ``x | y ~ N(y * m * u, I)``
where ``u`` is a fixed unit direction (weights d, d-1, ..., 1, normalised) and ``m`` is half of
``class_separation``. The sensitive attribute is drawn from the features, so it is correlated with
the label through them: ``P(s = 1 | x) = sigmoid(sensitive_strength * v . x)`` where ``v`` is ``u``
rotated by ``rotation`` radians (towards the last coordinate axis). ``rotation = 0`` makes ``s``
follow the label as closely as the features do; ``rotation = pi/2`` makes it independent of the
label. The privileged group (s = 1) has the higher positive rate, so both the raw labels and a
classifier trained on them have a clearly non-zero statistical parity difference.

With ``num_groups`` k > 2 the groups are ordered along the same direction (an ordered logit):
``P(s >= g | x) = sigmoid(sensitive_strength * v . x - c_g)`` for g = 1..k-1 with the cut points
``c_g = g - k/2`` (one apart, centred), so a higher group has a higher positive rate; one uniform
draw per row decides s. For k = 2 the one cut point is 0 and this is the rule above, draw for draw.
"""

from __future__ import annotations

import numpy as np
import torch

from fedsynth.data.spec import SyntheticSpec
from fedsynth.data.types import TabularData


def generate_synthetic(spec: SyntheticSpec) -> TabularData:
    """Generate the biased table a :class:`SyntheticSpec` describes; the same spec (and seed)
    always gives the same rows."""
    rng = np.random.default_rng(spec.seed)
    d = spec.num_features
    class_direction = np.arange(d, 0, -1, dtype=np.float64)
    class_direction /= np.linalg.norm(class_direction)
    last_axis = np.zeros(d)
    last_axis[-1] = 1.0
    orthogonal = last_axis - (last_axis @ class_direction) * class_direction
    orthogonal /= np.linalg.norm(orthogonal)
    sensitive_direction = (
        np.cos(spec.rotation) * class_direction + np.sin(spec.rotation) * orthogonal
    )

    y = rng.choice(np.array([-1.0, 1.0]), size=spec.num_rows)
    x = (spec.class_separation / 2) * y[:, None] * class_direction + rng.standard_normal(
        (spec.num_rows, d)
    )
    score = spec.sensitive_strength * (x @ sensitive_direction)
    cuts = np.arange(1, spec.num_groups) - spec.num_groups / 2  # c_g; [0.0] for two groups
    at_least = 1.0 / (1.0 + np.exp(-(score[:, None] - cuts[None, :])))  # P(s >= g | x), g = 1..k-1
    s = (rng.random(spec.num_rows)[:, None] < at_least).sum(axis=1).astype(np.float64)
    return TabularData(
        x=torch.from_numpy(x),
        s=torch.from_numpy(s),
        y=torch.from_numpy(y),
        feature_names=tuple(f"x{j + 1}" for j in range(d)),
        num_groups=spec.num_groups,
    )
