"""MST (McKenna, Miklau & Sheldon 2021), a differentially private tabular synthesizer without
fairness, on Private-PGM's marginal inference (the ``mbi`` package; optional extra ``dp-synth``).

The client's rows become discrete records: each encoded feature in ``bins`` fixed intervals over
[−``limit``, ``limit``] (encoded units: the public spec's centre and scale make them standard
scores), plus s and y. Three Gaussian releases, each with noise multiplier z (so that together
they spend (ε, δ), :func:`fedsynth.privacy.accounting.noise_multiplier` with 3 steps):

1. every one-way marginal (one row changes p cells by 1: L2 sensitivity √p);
2. for every pair of attributes, the L1 distance between its two-way marginal and the product of
   the noisy one-way marginals (one row moves each by at most 1: sensitivity √(p(p−1)/2)); the
   maximum spanning tree of the noisy distances (Kruskal) chooses p − 1 pairs;
3. the two-way marginals of the tree's pairs (sensitivity √(p − 1)).

Private-PGM (``mbi.estimation.MirrorDescent``) fits a graphical model to the noisy marginals and
samples ``rows`` records, decoded to bin midpoints. Everything after the releases is
post-processing. Deviation from MST: its selection step is the exponential mechanism inside
Kruskal's algorithm; here it is Gaussian noise on all pair distances at once, so that every
release is a Gaussian mechanism and the one Opacus accountant covers the whole of it.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from fedsynth.data.types import TabularData

RELEASES = 3
"""The Gaussian releases of MST (one-way marginals, pair distances, tree marginals)."""


@dataclass(frozen=True)
class MSTSettings:
    """How MST discretizes and fits: ``bins`` equal intervals per feature over [−``limit``,
    ``limit``] (encoded units; values beyond fall into the outer bins) and Private-PGM's
    ``iterations`` of mirror descent."""

    bins: int = 8
    limit: float = 2.5
    iterations: int = 500

    def __post_init__(self) -> None:
        if self.bins < 2 or not self.limit > 0 or self.iterations < 1:
            raise ValueError(
                f"mst needs bins >= 2, limit > 0, iterations >= 1; got {self.bins}, {self.limit}, {self.iterations}"
            )


def bin_edges(bins: int, limit: float) -> np.ndarray:
    """The ``bins − 1`` interior edges of equal intervals over [−limit, limit]; the outer bins are
    open (values beyond ±limit fall into them)."""
    return np.linspace(-limit, limit, bins + 1)[1:-1]


def bin_midpoints(bins: int, limit: float) -> np.ndarray:
    """The value a bin decodes to: its midpoint (the outer bins: half a width beyond the edge)."""
    width = 2 * limit / bins
    return -limit + width * (np.arange(bins) + 0.5)


def _records(data: TabularData, bins: int, limit: float) -> dict[str, np.ndarray]:
    """The rows as discrete attributes: ``f0..f{d-1}`` (bin indices), ``s`` and ``y`` (0/1)."""
    edges = bin_edges(bins, limit)
    columns = {f"f{j}": np.digitize(data.x[:, j].numpy(), edges) for j in range(data.num_features)}
    columns["s"] = data.s.numpy().astype(int)
    columns["y"] = (data.y.numpy() > 0).astype(int)
    return columns


def mst_synthesize(
    data: TabularData,
    *,
    rows: int,
    noise_multiplier: float,
    generator: torch.Generator,
    settings: MSTSettings = MSTSettings(),
) -> TabularData:
    """``rows`` synthetic rows from MST's three Gaussian releases on ``data`` (module docstring),
    each with noise multiplier ``noise_multiplier`` (σ = z · sensitivity)."""
    bins, limit = settings.bins, settings.limit
    import jax

    jax.config.update("jax_platforms", "cpu")  # no probing for accelerators (and no log line about it)
    jax.config.update("jax_enable_x64", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # mbi's notes on JAX's float32 and cache
        from mbi import Dataset, Domain, LinearMeasurement
        from mbi.estimation import MirrorDescent
    import networkx as nx

    columns = _records(data, bins, limit)
    names = list(columns)
    domain = Domain(names, [bins] * data.num_features + [2, 2])
    dataset = Dataset(columns, domain)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))

    def noisy(values: np.ndarray, std: float) -> np.ndarray:
        return values + rng.normal(0.0, std, size=values.shape)

    p = len(names)
    one_way_std = noise_multiplier * math.sqrt(p)
    one_way = {name: noisy(dataset.project(name).datavector(), one_way_std) for name in names}
    total = max(float(np.mean([m.sum() for m in one_way.values()])), 1.0)
    shares = {name: np.clip(m, 0, None) / max(np.clip(m, 0, None).sum(), 1e-12) for name, m in one_way.items()}
    pairs = list(itertools.combinations(names, 2))
    distance_std = noise_multiplier * math.sqrt(len(pairs))
    graph = nx.Graph()
    for first, second in pairs:
        joint = dataset.project([first, second]).datavector()
        independent = total * np.outer(shares[first], shares[second]).ravel()
        graph.add_edge(first, second, weight=float(noisy(np.array([np.abs(joint - independent).sum()]), distance_std)[0]))
    tree = [tuple(edge) for edge in nx.maximum_spanning_tree(graph).edges()]
    tree_std = noise_multiplier * math.sqrt(len(tree))
    measurements = [LinearMeasurement(one_way[name], (name,), stddev=one_way_std) for name in names]
    measurements += [LinearMeasurement(noisy(dataset.project(list(edge)).datavector(), tree_std), edge, stddev=tree_std) for edge in tree]
    model = MirrorDescent().estimate(domain, measurements, iters=settings.iterations)
    sample = model.synthetic_data(rows).data
    midpoints = bin_midpoints(bins, limit)
    x = np.stack([midpoints[np.asarray(sample[f"f{j}"])] for j in range(data.num_features)], axis=1)
    s = np.asarray(sample["s"], dtype=np.float64)
    y = np.where(np.asarray(sample["y"]) > 0, 1.0, -1.0)
    return TabularData(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(s), torch.from_numpy(y), data.feature_names)
