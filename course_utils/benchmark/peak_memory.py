"""Extra peak memory of a block of code, as the operating system (or CUDA) counts it.

torch's CPU allocations are invisible to Python's ``tracemalloc``, so :class:`PeakMemory` asks the
kernel: it hands freed heap pages back to the OS (glibc ``malloc_trim``), resets the peak-RSS
counter (``echo 5 > /proc/self/clear_refs``) and reads the resident size (VmRSS) as the baseline;
on exit the extra peak is VmHWM − baseline. That counts everything the block allocates: outputs,
gradients, temporaries. Where ``clear_refs`` is not writable (not Linux) it falls back to the
``resource.getrusage`` ``ru_maxrss`` delta, a lower bound, and says so in ``method``. On CUDA it
uses ``torch.cuda.max_memory_allocated`` − ``memory_allocated`` instead.

``course_utils.benchmark.bench`` measures each case in a fresh process, so one case's allocations cannot
hide or inflate another's peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys

MIB = 2**20


def _read_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _read_status_kib("VmHWM") is not None


def _release_free_heap() -> None:
    """Give freed heap memory back to the OS, so it is not counted in the baseline."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


class PeakMemory:
    """Context manager: ``extra_mib`` = peak memory inside the block minus the memory at its start."""

    def __init__(self, device):
        self.device = device
        self.extra_mib: float | None = None
        self.method = ""

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            self.method = "cuda max_memory_allocated - baseline"
            return self
        _release_free_heap()
        if _reset_peak_rss():
            self._baseline = _read_status_kib("VmRSS") * 1024
            self.method = "VmHWM - VmRSS baseline (clear_refs reset)"
        else:
            self._baseline = _ru_maxrss_bytes()
            self.method = "ru_maxrss delta (lower bound)"
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("VmHWM"):
            peak = _read_status_kib("VmHWM") * 1024
        else:
            peak = _ru_maxrss_bytes()
        self.extra_mib = max(0, peak - self._baseline) / MIB


def _ru_maxrss_bytes() -> int:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # macOS: bytes, Linux: KiB
