"""Pictures the course draws: attention heatmaps and labelled curves. matplotlib only.

Every function takes an optional ``ax`` and returns it, so notebooks can lay out several panels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from course_utils.bench_report import best_time


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


def plot_benchmark(rows: Sequence[Mapping], title: str | None = None) -> plt.Figure:
    """Time and extra peak memory against sequence length, from ``course_utils.bench`` result rows.

    One line per (method, mode, causal): colour = method, solid = forward, dashed =
    forward+backward, circles = full attention, triangles = causal. Skipped cases leave gaps.
    Returns the figure (two panels, log-log axes).
    """
    colours = {
        "naive": "tab:red",
        "textbook": "tab:orange",
        "tiled": "tab:blue",
        "sdpa": "tab:green",
        "triton": "tab:purple",
    }
    figure, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[tuple, list[tuple[int, float, float]]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        key = (row["method"], row["mode"], bool(row["causal"]))
        point = (int(row["n"]), best_time(row), row["extra_peak_mib"])
        series.setdefault(key, []).append(point)
    if not series:
        raise ValueError("no successful benchmark rows to plot")
    for (method, mode, causal), points in sorted(series.items()):
        points.sort()
        style = {
            "color": colours.get(method, "black"),
            "linestyle": "-" if mode == "forward" else "--",
            "marker": "^" if causal else "o",
            "label": f"{method} {'fwd' if mode == 'forward' else 'fwd+bwd'}{' causal' if causal else ''}",
        }
        timed = [(n, t) for n, t, _ in points if t is not None]
        if timed:
            time_ax.plot(*zip(*timed, strict=True), **style)
        measured = [(n, max(m, 1e-2)) for n, _, m in points if m is not None]
        if measured:
            memory_ax.plot(*zip(*measured, strict=True), **style)
    for ax, ylabel in ((time_ax, "time (s)"), (memory_ax, "extra peak memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    time_ax.set_title("time (best of the timed runs)")
    memory_ax.set_title("extra peak memory over the inputs")
    memory_ax.legend(fontsize=7, ncol=2)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
