"""Timing claims that a busy machine cannot overturn: interleaved rounds, growth within a round, medians.

A notebook that claims "linear in n" or "quadratic in n" compares times at different n. Two things
make a naive measurement of that growth flaky on a shared 2-core machine:

* other programs: on the CPU the clock is this process's own CPU time, and :func:`interleaved_seconds`
  runs torch on one thread while it times (restoring the caller's count after): the CPU time of
  several threads also counts their waiting for each other, which a busy machine inflates at random.
  So time spent running other programs is not counted. What they still disturb (a shared
  physical core, caches, memory bandwidth) comes in bursts;
* bursts: a burst that hits the measurement at 4n and not the one at n changes their ratio. So every
  round times every size once, back to back (:func:`interleaved_seconds`), the growth is measured
  within a round, and the claim uses the median over the rounds (:func:`power_law_exponent`).

The growth is stated as an exponent p in time ≈ c · nᵖ, fitted over a range of n: 1 is linear,
2 quadratic, and the claims compare p with 1.5, halfway. Caches make a real machine's times bend
away from the ideal power (data that fits in cache at small n does not at large n), which is why
the range is wide and the threshold is not "≈ 1".

On a CUDA device the clock is the wall clock between two synchronisations (the GPU's work is not
this process's CPU time).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch

from course_utils.helpers.validation import require_positive_int


def seconds_per_call(
    function: Callable[[], object], calls: int = 1, device: torch.device | str | None = None
) -> float:
    """Seconds of one call of ``function``, averaged over ``calls`` calls in a row.

    CPU (``device`` None or a CPU device): this process's CPU time. CUDA: wall time, synchronised
    before and after."""
    require_positive_int("calls", calls)
    on_cuda = device is not None and torch.device(device).type == "cuda"
    clock = time.perf_counter if on_cuda else time.process_time
    if on_cuda:
        torch.cuda.synchronize()
    start = clock()
    for _ in range(calls):
        function()
    if on_cuda:
        torch.cuda.synchronize()
    return (clock() - start) / calls


def interleaved_seconds(
    functions: Mapping[str, Sequence[Callable[[], object]]],
    rounds: int,
    calls: Mapping[str, int] | int = 1,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Time every function of every name once per round, all sizes back to back, on one thread.

    ``functions[name][i]`` runs the computation ``name`` at the i-th size; ``calls`` is how many
    calls one timing averages (per name, or one number for all: give fast functions more). Every
    function is called once first (a warm-up: memory allocated, kernels chosen). Returns, per name,
    a float64 tensor (rounds, sizes) of seconds per call."""
    require_positive_int("rounds", rounds)
    calls_by_name = {name: calls for name in functions} if isinstance(calls, int) else dict(calls)
    missing = sorted(set(functions) - set(calls_by_name))
    if missing:
        raise ValueError(
            f"calls: expected a count for every name in functions, got none for {missing}"
        )
    for name, count in calls_by_name.items():
        require_positive_int(f"calls[{name!r}]", count)
    for name, sized in functions.items():
        if len(sized) == 0 or not all(callable(function) for function in sized):
            raise TypeError(
                f"functions[{name!r}]: expected a non-empty sequence of callables, got {sized!r}"
            )
        for function in sized:
            function()  # warm-up
    seconds = {
        name: torch.zeros(rounds, len(sized), dtype=torch.float64)
        for name, sized in functions.items()
    }
    on_cuda = device is not None and torch.device(device).type == "cuda"
    threads = torch.get_num_threads()
    if not on_cuda:
        torch.set_num_threads(1)  # CPU time of one thread: the work, not the waiting
    try:
        for round_index in range(rounds):
            for name, sized in functions.items():
                for size_index, function in enumerate(sized):
                    seconds[name][round_index, size_index] = seconds_per_call(
                        function, calls_by_name[name], device
                    )
    finally:
        torch.set_num_threads(threads)
    return seconds


def power_law_exponent(sizes: Sequence[float], seconds: torch.Tensor) -> float:
    """p in time ≈ c · nᵖ: the slope of log(time) against log(n), the straight line a log-log plot shows.

    ``seconds`` is (rounds, sizes), as :func:`interleaved_seconds` returns. The slope is fitted by least
    squares within each round, then the median over the rounds is returned: a burst that slows one
    round shifts that round's line up, not its slope. Linear cost gives p ≈ 1, quadratic p ≈ 2."""
    if seconds.dim() != 2 or seconds.shape[1] != len(sizes):
        raise ValueError(
            f"seconds: expected a (rounds, {len(sizes)}) tensor, one column per size, "
            f"got shape {tuple(seconds.shape)}"
        )
    if len(set(sizes)) < 2 or any(not size > 0 for size in sizes):
        raise ValueError(
            f"sizes: expected at least two different positive sizes, got {list(sizes)}"
        )
    if not (seconds > 0).all():
        raise ValueError(
            "seconds: expected positive times, got a zero or a negative one "
            "(the clock is too coarse for one call: time more calls per measurement)"
        )
    log_size = torch.tensor([float(size) for size in sizes], dtype=torch.float64).log()
    log_size = log_size - log_size.mean()  # x = log n, centred
    log_time = seconds.double().log()
    log_time = log_time - log_time.mean(dim=1, keepdim=True)  # y = log t, centred per round
    slopes = (log_time * log_size).sum(dim=1) / (log_size * log_size).sum()  # Σxy / Σx², per round
    return statistics.median(slopes.tolist())


__all__ = ["interleaved_seconds", "power_law_exponent", "seconds_per_call"]
