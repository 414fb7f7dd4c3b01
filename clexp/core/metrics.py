"""Continual-learning metrics from the accuracy matrix R (`R[i][j]`: accuracy on experience j after
training experience i), as defined in docs/design.md, section 5 (metrics). Rows may be partial (the stream so far)."""

from __future__ import annotations

from collections.abc import Sequence


def _rows(R: Sequence[Sequence[float]]) -> list[list[float]]:
    rows = [list(map(float, r)) for r in R]
    if not rows:
        raise ValueError("accuracy matrix is empty")
    return rows


def average_accuracy(R: Sequence[Sequence[float]]) -> float:
    """Mean accuracy over the experiences seen so far, after the last trained one: `mean_{j<=i} R[i][j]`."""
    rows = _rows(R)
    i = len(rows) - 1
    return sum(rows[i][: i + 1]) / (i + 1)


def forgetting(R: Sequence[Sequence[float]]) -> float | None:
    """Chaudhry 2018: mean over j < i of `max_{l<i} R[l][j] − R[i][j]` (docs/design.md, section 5); None after
    one experience."""
    rows = _rows(R)
    i = len(rows) - 1
    if i == 0:
        return None
    return sum(max(rows[l][j] for l in range(i)) - rows[i][j] for j in range(i)) / i


def backward_transfer(R: Sequence[Sequence[float]]) -> float | None:
    """Lopez-Paz 2017: mean over j < i of `R[i][j] − R[j][j]`; None after one experience."""
    rows = _rows(R)
    i = len(rows) - 1
    if i == 0:
        return None
    return sum(rows[i][j] - rows[j][j] for j in range(i)) / i


def forward_transfer(R: Sequence[Sequence[float]], baseline: Sequence[float]) -> float | None:
    """Lopez-Paz 2017: mean over 0 < j <= i of `R[j−1][j] − b[j]`, b the initial model's accuracies."""
    rows = _rows(R)
    i = len(rows) - 1
    if i == 0:
        return None
    return sum(rows[j - 1][j] - float(baseline[j]) for j in range(1, i + 1)) / i


def summary(R: Sequence[Sequence[float]], baseline: Sequence[float] | None = None) -> dict[str, float | None]:
    """`avg_acc`, `forgetting`, `bwt`, `fwt` (None where undefined)."""
    return {
        "avg_acc": average_accuracy(R),
        "forgetting": forgetting(R),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R, baseline) if baseline is not None else None,
    }
