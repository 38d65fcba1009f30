"""A seeded block that leaves the caller's random state alone.

``with seeded(seed): model = Model(); train(model)`` runs the block with torch's global generator
(CPU and CUDA), Python's ``random`` and NumPy's seeded with ``seed``, exactly as
``runtime.seed_everything(seed)`` seeds them, and puts the caller's states back afterwards. A library
function that must use the global generators (``nn.Module`` initialisation, dropout draw from them)
is then reproducible without reseeding the notebook's random numbers behind its back.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch, Python and NumPy for the block; restore the caller's random states after it."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # also seeds every CUDA device, restored by fork_rng
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
