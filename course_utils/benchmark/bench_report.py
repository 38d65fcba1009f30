"""The benchmark's results as a table, headline ratios and a CSV (rows from ``bench``).

Each row is a dict: the case's settings (method, mode, causal, n, ...) plus ``status``,
``time_s`` (median), ``time_min_s`` (best), ``cpu_time_s``, ``extra_peak_mib`` and ``note``.
Headline ratios use the best times: as Python's ``timeit`` documentation puts it, the minimum is
the lower bound of what the machine can do, and the slower runs are mostly other processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# The course's methods (course-bench --methods); any other name in a row is a learner's --method.
COURSE_METHODS = ("naive", "textbook", "tiled", "sdpa", "triton")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: Sequence[dict]) -> str:
    width = max([7, *(len(row["method"]) for row in rows)])  # a learner's NAME may be longer
    header = (
        f"{'n':>6} {'method':<{width}} {'mode':<9} {'causal':<6} {'best (s)':>9} {'median (s)':>10} "
        f"{'cpu (s)':>8} {'extra MiB':>10}  note"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['n']:>6} {row['method']:<{width}} {row['mode']:<9} {str(row['causal']):<6} "
            f"{_fmt(row.get('time_min_s'), '.4f'):>9} {_fmt(row['time_s'], '.4f'):>10} "
            f"{_fmt(row.get('cpu_time_s'), '.3f'):>8} "
            f"{_fmt(row['extra_peak_mib'], '.1f'):>10}  "
            f"{row['note'] if row['status'] != 'ok' else ''}"
        )
    return "\n".join(lines)


def _lookup(rows: Sequence[dict]) -> dict[tuple, dict]:
    return {
        (row["method"], row["mode"], row["causal"], row["n"]): row
        for row in rows
        if row["status"] == "ok" and row["time_s"]
    }


def best_time(row: Mapping) -> float:
    """The fastest timed run; rows from older CSVs without one fall back to the median."""
    return row.get("time_min_s") or row["time_s"]


def _ratio(label: str, slower: dict, faster: dict) -> str:
    """'label 1.25x (median 1.18x, cpu 1.20x)': best-time ratio, then median and CPU-time ratios."""
    text = f"{label} {best_time(slower) / best_time(faster):.2f}x"
    details = []
    if slower.get("time_min_s") and faster.get("time_min_s"):
        details.append(f"median {slower['time_s'] / faster['time_s']:.2f}x")
    if slower.get("cpu_time_s") and faster.get("cpu_time_s"):
        details.append(f"cpu {slower['cpu_time_s'] / faster['cpu_time_s']:.2f}x")
    return text + (f" ({', '.join(details)})" if details else "")


def summarize(rows: Sequence[dict]) -> list[str]:
    """Headline ratios: tiled vs sdpa, naive and textbook vs tiled, causal vs non-causal tiled;
    then each learner's method against tiled and sdpa."""
    table = _lookup(rows)
    lines = []
    for (method, mode, causal, n), row in sorted(table.items(), key=lambda item: item[0][3]):
        if method != "tiled":
            continue
        tag = f"n={n:>5} {mode:<8}{' causal' if causal else '       '}"
        parts = []
        sdpa = table.get(("sdpa", mode, causal, n))
        if sdpa:
            parts.append(_ratio("tiled/sdpa time", row, sdpa))
        naive = table.get(("naive", mode, causal, n))
        if naive:
            parts.append(_ratio("naive/tiled time", naive, row))
        textbook = table.get(("textbook", mode, causal, n))
        if textbook:
            parts.append(_ratio("textbook/tiled time", textbook, row))
        if causal:
            full = table.get(("tiled", mode, False, n))
            if full:
                parts.append(_ratio("non-causal/causal time", full, row))
        if parts:
            lines.append(f"{tag}: " + ", ".join(parts))
    for (method, mode, causal, n), row in sorted(table.items(), key=lambda item: item[0][3]):
        if method in COURSE_METHODS:
            continue
        tag = f"n={n:>5} {mode:<8}{' causal' if causal else '       '}"
        parts = [
            _ratio(f"{method}/{course} time", row, table[(course, mode, causal, n)])
            for course in ("tiled", "sdpa")
            if (course, mode, causal, n) in table
        ]
        if parts:
            lines.append(f"{tag}: " + ", ".join(parts))
    return lines
