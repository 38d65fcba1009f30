"""``course-bench`` / ``python -m course_utils.bench``: the benchmark's options, its run, its outputs.

The cases, their fresh processes and their rows are ``bench.py``; see its docstring for what is measured.
A learner's own function (``--method NAME=MODULE:FUNCTION``, repeatable) is checked against SDPA in a
fresh process first (``learner_method.py``): a wrong one stops the command before anything is timed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from course_utils.benchmark.bench import (
    DEFAULT_OUT,
    DEFAULT_SIZES,
    METHODS,
    MODES,
    build_cases,
    run_cases,
    write_csv,
)
from course_utils.benchmark.bench_report import format_table, summarize
from course_utils.benchmark.learner_method import (
    LearnerMethod,
    LearnerMethodError,
    check_in_fresh_process,
    parse_method,
    shown,
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", type=_positive_int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["naive", "tiled", "sdpa"])
    parser.add_argument(
        "--method",
        dest="learner_methods",
        metavar="NAME=MODULE:FUNCTION",
        type=parse_method,
        action="append",
        default=[],
        help="also time your own attention FUNCTION(q, k, v[, causal=True]) from MODULE (a module "
        "name or a .py file), checked against SDPA first; repeatable",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="backward = forward + backward",
    )
    parser.add_argument("--causal", choices=("both", "yes", "no"), default="both")
    parser.add_argument("--batch", type=_positive_int, default=1)
    parser.add_argument("--heads", type=_positive_int, default=4)
    parser.add_argument("--dim", type=_positive_int, default=64)
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "float64", "float16", "bfloat16")
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=_default_threads(),
        help="torch CPU threads per case (default: the cores this process may use)",
    )
    parser.add_argument("--block-q", type=_positive_int, default=None)
    parser.add_argument("--block-k", type=_positive_int, default=None)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per case (best and median reported)"
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=20.0,
        help="seconds of timed runs per case before stopping early",
    )
    parser.add_argument(
        "--memory-cap-mib",
        type=float,
        default=6144.0,
        help="skip naive cases whose n x n matrices would need more",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for bench.csv and bench.png"
    )
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    names = [method.name for method in args.learner_methods]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        parser.error(f"--method: each NAME once, got {', '.join(repeated)} more than once")
    device_problem = _device_problem(args.device)
    if device_problem:
        parser.error(f"--device {args.device}: {device_problem}")
    return args


def _device_problem(device: str) -> str | None:
    """Why ``device`` cannot run here (the check runs before any case), or None."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        return "expected cpu, cuda or cuda:N"
    if kind == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available here (torch.cuda.is_available() is False); use --device cpu"
    if kind not in ("cpu", "cuda"):
        return f"the benchmark runs on cpu or cuda, got {kind}"
    return None


def checked_learner_methods(args: argparse.Namespace) -> list[LearnerMethod]:
    """Each --method checked against SDPA in a fresh process; LearnerMethodError at the first wrong one."""
    return [
        check_in_fresh_process(
            method, args.modes, args.dim, args.dtype, args.device, timeout_s=args.timeout
        )
        for method in args.learner_methods
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    causal_options = {"both": (False, True), "yes": (True,), "no": (False,)}[args.causal]
    try:
        learner_methods = checked_learner_methods(args)
    except LearnerMethodError as error:
        print(f"course-bench: error: {error}", file=sys.stderr)
        return 2
    for method in learner_methods:
        print(f"{method.name} ({shown(method.spec)}) equals SDPA on the check's input: timing it")
        if True in causal_options and not method.takes_causal:
            print(f"{method.name} has no `causal` parameter: its causal cases are left out")
    cases = build_cases(
        args.sizes,
        args.methods,
        args.modes,
        causal_options,
        learner_methods,
        batch=args.batch,
        heads=args.heads,
        dim=args.dim,
        dtype=args.dtype,
        device=args.device,
        threads=args.threads,
        block_q=args.block_q,
        block_k=args.block_k,
        repeats=args.repeats,
        time_budget_s=args.time_budget,
    )
    import torch

    print(
        f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s), "
        f"B={args.batch} H={args.heads} d={args.dim} {args.dtype}, one fresh process per case"
    )
    rows = run_cases(cases, args.timeout, args.memory_cap_mib)
    print(format_table(rows))
    summary = summarize(rows)
    if summary:
        print("\n" + "\n".join(summary))
    csv_path = args.out / "bench.csv"
    write_csv(rows, csv_path)
    print(f"\nwrote {csv_path}")
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        from course_utils.benchmark.figure import plot_benchmark

        figure = plot_benchmark(rows)
        plot_path = args.out / "bench.png"
        figure.savefig(plot_path, dpi=120, bbox_inches="tight")
        print(f"wrote {plot_path}")
    failed = [row for row in rows if row["status"] == "error"]
    for row in failed:
        print(f"error: {row['method']} {row['mode']} n={row['n']}: {row['note']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
