"""Benchmark naive vs tiled (flash) vs torch SDPA attention: time and extra peak memory by length.

The command line is ``benchmark/cli.py``:

    python -m course_utils.bench                          # n = 512 … 16384, all cases
    python -m course_utils.bench --sizes 1024 4096 --methods tiled sdpa --modes forward
    python -m course_utils.bench --help

Methods: ``naive`` is ``course_utils.flash.naive_attention``, which materialises the
(batch, heads, n, n) score and weight matrices (skipped, status ``skipped``, where its estimated
need exceeds ``--memory-cap-mib``); ``tiled`` is the CPU-optimised ``course_utils.flash_fast``;
``textbook`` is ``course_utils.flash``, the same algorithm as notebook 07 writes it; ``sdpa`` is
``torch.nn.functional.scaled_dot_product_attention``; ``triton`` is ``course_utils.flash_triton``
(CUDA only; forward and backward kernels). ``--method NAME=MODULE:FUNCTION`` adds your own function,
checked against SDPA before it is timed (``course_utils.benchmark.learner_method``).

Every case — (method, mode, causal, n) — runs in a FRESH child process, so one case's allocations
cannot hide or inflate another's peak. In the child:

1. import torch, set the thread count, run the method once on a tiny input (loads kernels and
   starts thread pools, whose memory is not the method's);
2. allocate q, k, v (and the upstream gradient for forward+backward);
3. run the case once inside ``course_utils.benchmark.peak_memory.PeakMemory``: its extra peak memory over
   the inputs, as the operating system counts it (outputs, gradients, temporaries);
4. time the case ``--repeats`` times (fewer when one run exceeds ``--time-budget``) and report the
   best (minimum) and the median wall-clock time, and the median CPU time of the process (all
   threads). The headline ratios (``course_utils.benchmark.bench_report``) use the best times: on a shared
   2-core machine the median of one case can be 30 % off.

Results: a table on stdout, ``bench.csv`` and ``bench.png`` in ``--out`` (default bench_results/).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from course_utils.benchmark.bench_report import COURSE_METHODS
from course_utils.benchmark.learner_method import (
    NAME_PATTERN,
    LearnerMethod,
    load_function,
    shown,
)
from course_utils.benchmark.peak_memory import MIB, PeakMemory

METHODS = COURSE_METHODS
MODES = ("forward", "backward")  # "backward" = forward + backward
DEFAULT_SIZES = (512, 1024, 2048, 4096, 8192, 16384)
DEFAULT_OUT = Path("bench_results")
# Estimated n × n tensors alive at the peak of naive attention (scores, weights; + their gradients).
_NAIVE_SQUARE_TENSORS = {"forward": 2.0, "backward": 4.0}
_CHILD_MARKER = "BENCH_RESULT "


@dataclass
class BenchCase:
    """One benchmark measurement; what a child process receives as JSON."""

    method: str
    mode: str
    causal: bool
    n: int
    batch: int = 1
    heads: int = 4
    dim: int = 64
    dtype: str = "float32"
    device: str = "cpu"
    threads: int = 1
    block_q: int | None = None
    block_k: int | None = None
    repeats: int = 5
    time_budget_s: float = 20.0
    seed: int = 0
    function: str = ""  # MODULE:FUNCTION of a learner's method (then ``method`` is its NAME)

    def __post_init__(self) -> None:
        if self.function:
            if self.method in METHODS or not NAME_PATTERN.fullmatch(self.method):
                raise ValueError(f"a learner's method needs a name of its own, got {self.method!r}")
        elif self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("n", "batch", "heads", "dim", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.repeats < 0:
            raise ValueError(f"repeats must be >= 0, got {self.repeats}")
        if self.dtype not in ("float32", "float64", "float16", "bfloat16"):
            raise ValueError(
                f"dtype must be float32, float64, float16 or bfloat16, got {self.dtype!r}"
            )

    @property
    def label(self) -> str:
        return f"{self.method} {self.mode}{' causal' if self.causal else ''} n={self.n}"


RESULT_FIELDS = [field.name for field in fields(BenchCase)] + [
    "status",
    "time_s",
    "time_min_s",
    "cpu_time_s",
    "timed_runs",
    "extra_peak_mib",
    "memory_method",
    "note",
]


def estimated_naive_bytes(case: BenchCase) -> int:
    """A lower estimate of naive attention's extra peak memory: its live n × n tensors."""
    itemsize = {"float64": 8, "float32": 4}.get(case.dtype, 2)
    squares = _NAIVE_SQUARE_TENSORS[case.mode] + (0.25 if case.causal else 0.0)
    return int(squares * case.batch * case.heads * case.n * case.n * itemsize)


def _method_fn(case: BenchCase) -> Callable:
    import torch

    if case.function:  # a learner's method: FUNCTION(q, k, v), with causal=True for causal cases
        function = load_function(case.function)
        if case.causal:
            return lambda q, k, v: function(q, k, v, causal=True)
        return lambda q, k, v: function(q, k, v)
    if case.method == "naive":
        from course_utils.flash import naive_attention

        return lambda q, k, v: naive_attention(q, k, v, case.causal)
    if case.method in ("textbook", "tiled"):
        from course_utils import flash, flash_fast

        module = flash if case.method == "textbook" else flash_fast
        return lambda q, k, v: module.flash_attention(
            q, k, v, case.causal, case.block_q, case.block_k
        )
    if case.method == "sdpa":
        sdpa = torch.nn.functional.scaled_dot_product_attention
        return lambda q, k, v: sdpa(q, k, v, is_causal=case.causal)
    from course_utils import flash_triton

    flash_triton.require_triton()
    return lambda q, k, v: flash_triton.triton_flash_attention(
        q, k, v, case.causal, case.block_q, case.block_k
    )


# ----------------------------------------------------------------------------------------------
# One case, inside the child process


def _make_inputs(case: BenchCase, n: int, device):
    import torch

    generator = torch.Generator().manual_seed(case.seed)
    dtype = getattr(torch, case.dtype)
    shape = (case.batch, case.heads, n, case.dim)
    tensors = [
        torch.randn(shape, generator=generator).to(device=device, dtype=dtype) for _ in range(4)
    ]
    q, k, v, grad_out = tensors
    if case.mode == "backward":
        for tensor in (q, k, v):
            tensor.requires_grad_(True)
    return q, k, v, grad_out


def _run_once(fn: Callable, q, k, v, grad_out, mode: str):
    out = fn(q, k, v)
    if mode == "backward":
        out.backward(grad_out)
    return out


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_in_this_process(case: BenchCase) -> dict:
    """Measure ``case`` here (the child's job). Returns the result row."""
    import torch

    torch.set_num_threads(case.threads)
    device = torch.device(case.device)
    fn = _method_fn(case)
    # Warm-up on a tiny input: kernels, thread pools and allocator arenas are not the method's cost.
    _run_once(fn, *_make_inputs(case, min(case.n, 64), device), case.mode)
    q, k, v, grad_out = _make_inputs(case, case.n, device)
    with PeakMemory(device) as memory:
        out = _run_once(fn, q, k, v, grad_out, case.mode)
        _synchronize(device)
    del out
    times, cpu_times = [], []
    for _ in range(case.repeats):
        for tensor in (q, k, v):
            tensor.grad = None
        start, cpu_start = time.perf_counter(), time.process_time()
        out = _run_once(fn, q, k, v, grad_out, case.mode)
        _synchronize(device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
        del out
        if sum(times) + times[0] > case.time_budget_s:
            break
    return _row(
        case,
        "ok",
        time_s=statistics.median(times) if times else None,
        time_min_s=min(times) if times else None,
        cpu_time_s=statistics.median(cpu_times) if cpu_times else None,
        timed_runs=len(times),
        extra_peak_mib=memory.extra_mib,
        memory_method=memory.method,
    )


def _child_main(payload: str) -> int:
    case = BenchCase(**json.loads(payload))
    row = run_in_this_process(case)
    print(_CHILD_MARKER + json.dumps(row), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------
# The parent: one fresh process per case


def tile_sizes_used(case: BenchCase) -> tuple[int | None, int | None]:
    """The (block_q, block_k) the case's method runs with (``flash.tile_sizes``); None, None for the
    untiled methods. Sizes the method would refuse are returned as given (the case then fails)."""
    if case.method not in ("textbook", "tiled", "triton"):
        return None, None
    from course_utils.flash import tile_sizes

    try:
        return tile_sizes(case.n, case.n, case.block_q, case.block_k, case.method == "triton")
    except (TypeError, ValueError):
        return case.block_q, case.block_k


def _row(case: BenchCase, status: str, note: str = "", **measured) -> dict:
    """A result row: the case's settings (with the tile sizes actually used) and what was measured."""
    block_q, block_k = tile_sizes_used(case)
    unmeasured = {
        "time_s": None,
        "time_min_s": None,
        "cpu_time_s": None,
        "timed_runs": 0,
        "extra_peak_mib": None,
        "memory_method": "",
    }
    settings = asdict(case) | {"block_q": block_q, "block_k": block_k}
    return settings | {"status": status} | unmeasured | measured | {"note": note}


def skip_reason(case: BenchCase, memory_cap_mib: float) -> str | None:
    """Why ``case`` should not run here, or None."""
    if case.method == "naive":
        need = estimated_naive_bytes(case) / MIB
        if need > memory_cap_mib:
            return f"naive needs >= {need:.0f} MiB (n x n matrices) > --memory-cap-mib {memory_cap_mib:.0f}"
    if case.method == "triton":
        from course_utils import flash_triton

        reason = flash_triton.unavailable_reason(case.device)
        if reason:
            return reason
    if case.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return "CUDA is not available"
    return None


def run_case(case: BenchCase, timeout_s: float = 900.0, memory_cap_mib: float = 6144.0) -> dict:
    """Measure ``case`` in a fresh Python process and return its result row (never raises for the case)."""
    reason = skip_reason(case, memory_cap_mib)
    if reason:
        return _row(case, "skipped", reason)
    command = [
        sys.executable,
        "-m",
        "course_utils.benchmark.bench",
        "--child",
        json.dumps(asdict(case)),
    ]
    environment = dict(os.environ, OMP_NUM_THREADS=str(case.threads))
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, env=environment
        )
    except subprocess.TimeoutExpired:
        return _row(case, "error", f"timed out after {timeout_s:.0f} s")
    for line in reversed(finished.stdout.splitlines()):
        if line.startswith(_CHILD_MARKER):
            return json.loads(line[len(_CHILD_MARKER) :])
    tail = (finished.stderr or finished.stdout).strip().splitlines()[-1:] or ["no output"]
    # a learner's function may have raised it: escaped, so a message cannot drive the terminal
    return _row(case, "error", f"child exited {finished.returncode}: {shown(tail[0], 300)}")


def peak_memory_mib(
    method: str, n: int, mode: str = "forward", causal: bool = False, **settings
) -> float:
    """Extra peak memory (MiB) of one case, measured in a fresh process, without timing."""
    row = run_case(BenchCase(method, mode, causal, n, repeats=0, **settings))
    if row["status"] != "ok":
        raise RuntimeError(f"{method} {mode} n={n}: {row['status']}: {row['note']}")
    return row["extra_peak_mib"]


def build_cases(
    sizes: Sequence[int],
    methods: Sequence[str],
    modes: Sequence[str],
    causal_options: Sequence[bool],
    learner_methods: Sequence[LearnerMethod] = (),
    **settings,
) -> list[BenchCase]:
    """Every (n, mode, causal, method): the course's ``methods``, then the learner's (checked) ones,
    whose causal cases are left out where the function has no ``causal`` parameter."""
    cases = []
    for n in sizes:
        for mode in modes:
            for causal in causal_options:
                cases += [BenchCase(method, mode, causal, n, **settings) for method in methods]
                cases += [
                    BenchCase(learner.name, mode, causal, n, function=learner.spec, **settings)
                    for learner in learner_methods
                    if learner.takes_causal or not causal
                ]
    return cases


def run_cases(
    cases: Sequence[BenchCase],
    timeout_s: float = 900.0,
    memory_cap_mib: float = 6144.0,
    progress: bool = True,
) -> list[dict]:
    from tqdm.auto import tqdm

    rows = []
    bar = tqdm(cases, desc="bench", unit="case", disable=not progress)
    for case in bar:
        bar.set_postfix_str(case.label)
        rows.append(run_case(case, timeout_s, memory_cap_mib))
    return rows


def write_csv(rows: Sequence[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: row.get(name) for name in RESULT_FIELDS})


if (
    __name__ == "__main__"
):  # one case's fresh process: python -m course_utils.benchmark.bench --child JSON
    if len(sys.argv) != 3 or sys.argv[1] != "--child":
        sys.exit(
            "this runs one benchmark case for course-bench; run `python -m course_utils.bench`"
        )
    sys.exit(_child_main(sys.argv[2]))
