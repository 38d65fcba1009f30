"""Pictures the course draws: attention heatmaps and labelled curves. matplotlib only.

Every function takes an optional ``ax`` and returns it, so notebooks can lay out several panels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch


def _as_matrix(weights) -> torch.Tensor:
    matrix = torch.as_tensor(weights).detach().float().cpu()
    if matrix.dim() != 2:
        raise ValueError(f"weights must be a 2-D (queries, keys) matrix, got {tuple(matrix.shape)}")
    return matrix


def attention_heatmap(
    weights,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    xlabel: str = "keys (attended to)",
    ylabel: str = "queries",
    annotate: bool | None = None,
    cmap: str = "viridis",
) -> plt.Axes:
    """Draw a (queries × keys) weight matrix, one labelled row per query, one column per key.

    ``annotate`` writes each weight into its cell (default: when the matrix is at most 12 × 12).
    """
    matrix = _as_matrix(weights)
    n_rows, n_cols = matrix.shape
    for name, labels, expected in (
        ("row_labels", row_labels, n_rows),
        ("col_labels", col_labels, n_cols),
    ):
        if labels is not None and len(labels) != expected:
            raise ValueError(f"{name} has {len(labels)} labels but the matrix has {expected}")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.5 * n_cols + 1.5), max(2.5, 0.45 * n_rows + 1.0)))
    image = ax.imshow(
        matrix.numpy(), cmap=cmap, vmin=0.0, vmax=max(1e-12, float(matrix.max())), aspect="auto"
    )
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    # Label every row/column when labels are given or the matrix is small; else let matplotlib choose.
    if col_labels is not None or n_cols <= 20:
        ax.set_xticks(
            range(n_cols), labels=list(col_labels) if col_labels is not None else range(n_cols)
        )
    if row_labels is not None or n_rows <= 20:
        ax.set_yticks(
            range(n_rows), labels=list(row_labels) if row_labels is not None else range(n_rows)
        )
    if col_labels is not None:
        ax.tick_params(axis="x", labelrotation=60)
    if annotate is None:
        annotate = n_rows <= 12 and n_cols <= 12
    if annotate:
        threshold = 0.6 * float(matrix.max())
        for i in range(n_rows):
            for j in range(n_cols):
                value = float(matrix[i, j])
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if value > threshold else "white",
                )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def plot_curves(
    x: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    ax: plt.Axes | None = None,
    title: str | None = None,
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    logy: bool = False,
    marker: str = "o",
) -> plt.Axes:
    """One line per named curve over shared x values (accuracy by length, time by size, ...)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for label, ys in curves.items():
        if len(ys) != len(x):
            raise ValueError(f"curve {label!r} has {len(ys)} points but x has {len(x)}")
        ax.plot(list(x), list(ys), marker=marker, label=label)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def bar_weights(
    weights,
    labels: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> plt.Axes:
    """Bar chart of one weight vector (e.g. one query's attention over keys)."""
    vector = torch.as_tensor(weights).detach().float().cpu().flatten()
    if labels is not None and len(labels) != len(vector):
        raise ValueError(f"{len(labels)} labels for {len(vector)} weights")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 2.5))
    ax.bar(range(len(vector)), vector.numpy(), color="tab:blue")
    ax.set_xticks(
        range(len(vector)), labels=list(labels) if labels is not None else range(len(vector))
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("weight")
    if title:
        ax.set_title(title)
    return ax
