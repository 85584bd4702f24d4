"""Privacy of synthetic data: how close synthetic rows come to the client's real rows.

Distances are Euclidean in the encoded non-sensitive feature space x (the paper's ‖x_i − x̂_j‖₂).
"""

from __future__ import annotations

import torch

from fedsynth.data.types import TabularData


TREE_MAX_DIMENSIONS = 16
"""Up to this many features a k-d tree finds nearest rows; past it, all pairwise distances."""
_CHUNK_ROWS = 2048


def distance_to_closest_record(queries: torch.Tensor, records: torch.Tensor) -> torch.Tensor:
    """For each query row, the Euclidean distance to its nearest row of ``records``.

    Exact. Repeated rows (frequent in tabular data: a Dutch client holds ≈ 2.6 copies of each
    row) are searched once. In the few dimensions of tabular data
    (≤ :data:`TREE_MAX_DIMENSIONS` features) SciPy's k-d tree finds the nearest rows, 4–8×
    faster than all pairwise distances on a Law School or Dutch client; past them the pairwise
    distances are computed in chunks."""
    if len(records) == 0:
        raise ValueError("distance_to_closest_record needs at least one record")
    if len(queries) == 0:
        return queries.new_empty(0)
    distinct_records = torch.unique(records.detach(), dim=0)
    distinct_queries, query_of_row = torch.unique(queries.detach(), dim=0, return_inverse=True)
    if records.shape[1] <= TREE_MAX_DIMENSIONS:
        from scipy.spatial import cKDTree  # imported where distances are asked (≈ 0.4 s)

        distances = torch.from_numpy(cKDTree(distinct_records.numpy()).query(distinct_queries.numpy(), k=1)[0])
    else:
        distances = torch.cat(
            [torch.cdist(chunk, distinct_records).min(dim=1).values for chunk in distinct_queries.split(_CHUNK_ROWS)]
        )
    return distances[query_of_row].to(queries.dtype)


def min_distance(real: torch.Tensor, synthetic: torch.Tensor) -> float:
    """min_{i,j} ‖x_i − x̂_j‖₂, the paper's privacy figure (it reports [0.41, 1.03])."""
    return float(distance_to_closest_record(synthetic, real).min())


def _rank_auc(member_scores: torch.Tensor, non_member_scores: torch.Tensor) -> float:
    """Area under the ROC curve of scores that should be higher for members (Mann–Whitney U,
    tied scores sharing their average rank)."""
    scores = torch.cat([member_scores, non_member_scores])
    _, group, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    last_rank = counts.cumsum(0).to(scores.dtype)
    ranks = (last_rank - (counts.to(scores.dtype) - 1) / 2)[group]  # the mean of ranks first..last
    m, k = len(member_scores), len(non_member_scores)
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * k))


def group_disclosure(synthetic: TabularData, train: TabularData) -> dict[str, float]:
    """How well the (ŝ, ŷ) of synthetic rows reveal a client's group structure: the server's
    estimates from the rows against the client's training data (0 = revealed exactly).

    - ``label_share_error``: |P̂(s = 1) − P(s = 1)| (binary attribute); for k > 2 groups the
      largest |P̂(s = g) − P(s = g)| over the groups;
    - ``label_base_rate_error``: mean over the groups s of |P̂(y = +1 | s) − P(y = +1 | s)|, with
      P̂ = 1/2 (no information) for a group the synthetic rows lack.

    ``copy`` labels give 0; ``proportional`` labels only their rounding to 1/N_s; ``balanced`` labels
    |1/2 − the true value|, whatever the client holds.
    """

    def base_rate(data: TabularData, group: float) -> float:
        rows = data.s == group
        return float((data.y[rows] > 0).double().mean()) if bool(rows.any()) else 0.5

    def share(data: TabularData, group: float) -> float:
        return float((data.s == group).double().mean())

    groups = [float(g) for g in range(train.num_groups)]
    share_error = max(abs(share(synthetic, g) - share(train, g)) for g in (groups[1:] if len(groups) == 2 else groups))
    rate_error = sum(abs(base_rate(synthetic, g) - base_rate(train, g)) for g in groups) / len(groups)
    return {"label_share_error": share_error, "label_base_rate_error": rate_error}


def moment_disclosure(
    synthetic: TabularData, train: TabularData, reported_size: float | None
) -> dict[str, float]:
    """What a client's reply tells the server of its size and of its (s, y) groups' feature
    moments, against the truth (0 = told exactly):

    - ``size_error``: |N̂ − N| / N of the size the reply reports (``reported_size``; left out when
      the reply reports none);
    - ``group_mean_error``: over the (s, y) groups the client and its synthetic rows both hold, the
      mean of ‖mean of the synthetic group's x̂ − mean of the real group's x‖₂ / √d (in encoded
      units);
    - ``group_covariance_error``: over the groups both hold with at least two rows each, the mean
      of ‖Cov x̂_g − Cov x_g‖_F / ‖Cov x_g‖_F (covariances with 1/n).

    single_shot's default (moment-matched ``group_gaussian``) makes both the shrinkage of small
    groups only: a large group's mean and covariance are told exactly.
    """
    mean_errors, covariance_errors = [], []
    for group in range(train.num_groups):
        for label in (-1.0, 1.0):
            real = train.x[(train.s == group) & (train.y == label)]
            fake = synthetic.x[(synthetic.s == group) & (synthetic.y == label)]
            if len(real) and len(fake):
                mean_errors.append(float((fake.mean(dim=0) - real.mean(dim=0)).norm()) / train.num_features**0.5)
            if len(real) > 1 and len(fake) > 1:
                real_cov, fake_cov = _covariance(real), _covariance(fake)
                scale = float(real_cov.norm())
                if scale > 0:
                    covariance_errors.append(float((fake_cov - real_cov).norm()) / scale)
    report = {
        "group_mean_error": sum(mean_errors) / len(mean_errors) if mean_errors else 0.0,
        "group_covariance_error": sum(covariance_errors) / len(covariance_errors) if covariance_errors else 0.0,
    }
    if reported_size is not None:
        report["size_error"] = abs(reported_size - len(train)) / len(train)
    return report


def _covariance(rows: torch.Tensor) -> torch.Tensor:
    """The rows' covariance matrix with 1/n."""
    centred = rows - rows.mean(dim=0)
    return centred.T @ centred / len(rows)


PRIVACY_KEYS = (
    "min_distance", "dcr_train_p05", "dcr_train_p50", "dcr_holdout_p05", "dcr_holdout_p50", "mia_auc",
    "label_share_error", "label_base_rate_error",
)
"""The keys of :func:`privacy_report`."""


def privacy_report(
    synthetic: TabularData, train: TabularData, held_out: TabularData, *, seed: int = 0
) -> dict[str, float]:
    """Distance-based privacy summary of a client's synthetic data.

    - ``min_distance``: min over synthetic and training rows of ‖x_i − x̂_j‖.
    - ``dcr_train_*`` / ``dcr_holdout_*``: quantiles (5%, 50%) of each synthetic row's distance to
      the closest training row vs to the closest held-out row; the training rows are subsampled to
      the held-out count so both reference sets have the same size. Synthetic data that copied
      training rows sits markedly closer to them than to held-out rows.
    - ``mia_auc``: a distance-based membership-inference attack that scores each real record by
      minus its distance to the closest synthetic row and tries to tell training rows (members)
      from held-out rows; 0.5 means no membership leakage.
    - ``label_share_error``, ``label_base_rate_error``: what the synthetic (ŝ, ŷ) reveal of the
      client's group structure (:func:`group_disclosure`).
    """
    generator = torch.Generator().manual_seed(seed)
    count = min(len(train), len(held_out))
    if count == 0:
        raise ValueError("privacy_report needs non-empty training and held-out sets")
    member_rows = torch.randperm(len(train), generator=generator)[:count]
    members = train.x[member_rows]
    non_members = held_out.x[torch.randperm(len(held_out), generator=generator)[:count]]
    dcr_train = distance_to_closest_record(synthetic.x, members)
    dcr_holdout = distance_to_closest_record(synthetic.x, non_members)
    quantiles = torch.tensor([0.05, 0.5], dtype=dcr_train.dtype)
    train_q = torch.quantile(dcr_train, quantiles)
    holdout_q = torch.quantile(dcr_holdout, quantiles)
    # one search over the synthetic rows answers every real row: the training rows (the
    # minimum distance, and the members among them) and the held-out rows
    to_synthetic = distance_to_closest_record(torch.cat([train.x, non_members]), synthetic.x)
    train_to_synthetic, non_members_to_synthetic = to_synthetic[: len(train)], to_synthetic[len(train) :]
    return {
        "min_distance": float(train_to_synthetic.min()),
        "dcr_train_p05": float(train_q[0]),
        "dcr_train_p50": float(train_q[1]),
        "dcr_holdout_p05": float(holdout_q[0]),
        "dcr_holdout_p50": float(holdout_q[1]),
        "mia_auc": _rank_auc(-train_to_synthetic[member_rows], -non_members_to_synthetic),
        **group_disclosure(synthetic, train),
    }
