"""Tensor containers shared by every layer: a labelled table and a client's train/test split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


def sensitive_columns(s: torch.Tensor, num_groups: int) -> torch.Tensor:
    """The design matrix's sensitive columns for a group index s ∈ {0, .., k−1}: for two groups the
    one column s itself (the paper's a_i = (x_i, s_i)); for k > 2 the k − 1 indicators 1[s_i = g],
    g = 1..k−1 (group 0 the reference, as one-hot coding with a dropped level), an ``(N, k − 1)``
    matrix whose only column for k = 2 would be s again."""
    if num_groups == 2:
        return s.unsqueeze(1)
    return (s.unsqueeze(1) == torch.arange(1, num_groups, dtype=s.dtype, device=s.device).unsqueeze(0)).to(s.dtype)


@dataclass(frozen=True)
class TabularData:
    """Encoded rows of a binary-classification table with one sensitive attribute of k ≥ 2 groups.

    Attributes:
        x: ``(N, n-1)`` float64 non-sensitive features, already encoded (scaled) by the spec.
        s: ``(N,)`` float64 group index in {0, .., k-1}; for a binary attribute (k = 2) the
            sensitive attribute in {0, 1} (1 = privileged group).
        y: ``(N,)`` float64 label in {-1, +1}.
        feature_names: names of the columns of ``x``.
        num_groups: k, the groups of the attribute (not only those present in these rows).
    """

    x: torch.Tensor
    s: torch.Tensor
    y: torch.Tensor
    feature_names: tuple[str, ...]
    num_groups: int = 2

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.ndim != 2 or self.s.shape != (n,) or self.y.shape != (n,):
            raise ValueError(
                f"TabularData needs x (N, d), s (N,), y (N,); got x {tuple(self.x.shape)}, "
                f"s {tuple(self.s.shape)}, y {tuple(self.y.shape)}"
            )
        if len(self.feature_names) != self.x.shape[1]:
            raise ValueError(
                f"{len(self.feature_names)} feature names for {self.x.shape[1]} feature columns"
            )
        if self.num_groups < 2:
            raise ValueError(f"a sensitive attribute has at least 2 groups, got num_groups={self.num_groups}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def num_features(self) -> int:
        """Number of non-sensitive features, the paper's n - 1."""
        return self.x.shape[1]

    @property
    def a(self) -> torch.Tensor:
        """The paper's complete feature vectors a_i = (x_i, s_i), shape ``(N, n)``; for k > 2 groups
        s_i is the k − 1 group indicators (:func:`sensitive_columns`)."""
        return torch.cat([self.x, sensitive_columns(self.s, self.num_groups).to(self.x.dtype)], dim=1)

    @classmethod
    def concat(cls, tables: "Sequence[TabularData]") -> "TabularData":
        """The union of tables with the same feature columns, rows in the given order."""
        if not tables:
            raise ValueError("concat needs at least one table")
        widths = {t.num_features for t in tables}
        if len(widths) != 1:
            raise ValueError(f"tables disagree on the feature count: {sorted(widths)}")
        groups = {t.num_groups for t in tables}
        if len(groups) != 1:
            raise ValueError(f"tables disagree on the number of groups: {sorted(groups)}")
        return cls(
            torch.cat([t.x for t in tables]),
            torch.cat([t.s for t in tables]),
            torch.cat([t.y for t in tables]),
            tables[0].feature_names,
            tables[0].num_groups,
        )

    def subset(self, index: torch.Tensor) -> "TabularData":
        """Rows selected by an index tensor (integer or boolean)."""
        return TabularData(self.x[index], self.s[index], self.y[index], self.feature_names, self.num_groups)


@dataclass(frozen=True)
class ClientPartition:
    """One client's private data: a training part (used for synthesis) and a held-out test part."""

    client_id: int
    train: TabularData
    test: TabularData
