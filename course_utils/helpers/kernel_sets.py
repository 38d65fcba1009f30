"""The CPU kernel sets a notebook can run with, and the one solutions/ are recorded with.

torch picks its CPU kernels by instruction set (``ATEN_CPU_CAPABILITY``: default, avx2, avx512), and
MKL and oneDNN pick their own. The same seed therefore gives other last bits on another CPU, and
the thread count changes the order of reductions in the same way. Strict nbval compares only what
does not depend on them (docs/architecture.md, "What strict nbval compares"); to prove it on every
run, ``solutions/`` are recorded with a kernel set and a thread count that ``make test`` does not
use:

    recorded   RECORDING = the portable kernels ("default"), 2 threads
    tested     the machine's own kernels ("native"), 1 thread (runtime.py's default)

:func:`environment` gives the variables that select a kernel set; they must be set before torch
is imported, so they go into a new process (a notebook's kernel), never into a running one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# The variables each library reads at import time to cap the instruction set it uses.
# SSE4_2 / SSE41 are the oldest levels MKL and oneDNN accept; ATen's "default" is plain C++.
KERNEL_SETS: dict[str, dict[str, str]] = {
    "default": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
    "native": {},  # whatever the CPU offers (avx512 on the machine the course is developed on)
}
KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")

# How solutions/ are recorded (course_utils.tooling.record), and how make test runs them.
RECORDING = {"kernel_set": "default", "threads": 2}
TESTING = {"kernel_set": "native", "threads": 1}


def environment(
    kernel_set: str, threads: int, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) that selects ``kernel_set`` and ``threads``.

    The kernel variables of ``base`` are dropped first, so "native" really is the CPU's own set.
    """
    if kernel_set not in KERNEL_SETS:
        raise ValueError(f"kernel_set must be one of {sorted(KERNEL_SETS)}, got {kernel_set!r}")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    for name in KERNEL_VARIABLES:
        env.pop(name, None)
    env.update(KERNEL_SETS[kernel_set])
    env["COURSE_THREADS"] = str(threads)
    return env
