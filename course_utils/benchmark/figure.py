"""The benchmark's figure: time and extra peak memory against sequence length (matplotlib).

Kept apart from ``bench_report`` so that the fresh process timing each case never imports matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt

from course_utils.benchmark.bench_report import best_time


def plot_benchmark(rows: Sequence[Mapping], title: str | None = None) -> plt.Figure:
    """Time and extra peak memory against sequence length, from the benchmark's result rows.

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
    learner_colours = iter(["tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"] * 4)
    for row in rows:  # a learner's methods (course-bench --method) take the colours left
        if row["method"] not in colours:
            colours[row["method"]] = next(learner_colours, "black")
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
