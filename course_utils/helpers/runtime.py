"""Reproducible runs: seeds, thread count, and the device every notebook computes on.

Every notebook starts with ``seed_everything()`` and moves tensors with ``device()``, so that

* the same notebook prints the same (rounded) numbers on every run, which lets nbval compare
  the outputs stored in ``solutions/`` cell by cell; and
* one environment variable moves the whole course onto a GPU:

  ``COURSE_DEVICE=cpu`` (default) | ``cuda`` | ``auto`` (cuda when available, else cpu)
  ``COURSE_REQUIRE_CUDA=1``  fail loudly instead of silently running on the CPU
  ``COURSE_THREADS=N``       torch CPU threads (default 1)
  ``COURSE_SEED_OFFSET=K``   added to every seed (default 0; the claims report varies it)

Seeds make a run repeat on the same machine, not on every machine: torch picks its CPU kernels by
instruction set and the thread count orders reductions, so another CPU gives other last bits, and
training amplifies them. What strict nbval compares is chosen accordingly (docs/architecture.md).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEFAULT_SEED = 0
_VALID_DEVICES = ("cpu", "cuda", "auto")


def configure_threads(threads: int | None = None) -> int:
    """Set torch's CPU thread count (from ``COURSE_THREADS`` when not given) and return it."""
    if threads is None:
        raw = os.environ.get("COURSE_THREADS", "1")
        try:
            threads = int(raw)
        except ValueError:
            raise ValueError(f"COURSE_THREADS must be a positive integer, got {raw!r}") from None
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def seed_offset() -> int:
    """``COURSE_SEED_OFFSET`` (default 0): the claims report re-runs a notebook with other seeds."""
    raw = os.environ.get("COURSE_SEED_OFFSET", "0")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"COURSE_SEED_OFFSET must be an integer, got {raw!r}") from None


def seed_everything(seed: int = DEFAULT_SEED, threads: int | None = None) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA), fix the thread count, and turn off TF32.

    Returns the seed, so a notebook can print what it used.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed += seed_offset()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    configure_threads(threads)
    # TF32 matmuls round to ~10 mantissa bits; keep fp32 exact so GPU numbers match CPU ones.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return seed


def device() -> torch.device:
    """The device the course runs on, chosen by ``COURSE_DEVICE`` (see module docstring)."""
    requested = os.environ.get("COURSE_DEVICE", "cpu").strip().lower() or "cpu"
    if requested not in _VALID_DEVICES:
        raise ValueError(f"COURSE_DEVICE must be one of {_VALID_DEVICES}, got {requested!r}")
    cuda_ok = torch.cuda.is_available()
    if requested == "cuda" and not cuda_ok:
        raise RuntimeError(
            "COURSE_DEVICE=cuda but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}). "
            "Install a CUDA build of torch or unset COURSE_DEVICE."
        )
    chosen = "cuda" if requested == "cuda" or (requested == "auto" and cuda_ok) else "cpu"
    if os.environ.get("COURSE_REQUIRE_CUDA") == "1" and chosen != "cuda":
        raise RuntimeError(
            f"COURSE_REQUIRE_CUDA=1 but the course would run on {chosen!r}: "
            "set COURSE_DEVICE=cuda on a machine with a CUDA GPU."
        )
    return torch.device(chosen)


def describe() -> str:
    """One line naming torch's version, the device and the thread count, for a notebook's setup cell."""
    dev = device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    return f"torch {torch.__version__} on {dev.type} ({name}), {torch.get_num_threads()} thread(s)"
