"""Shared pytest setup: one torch thread, a non-interactive matplotlib backend, the repository root."""

import os
from pathlib import Path

# `make test` runs one xdist worker per core: a second torch thread per worker only contends, and
# OpenMP's waiting threads made the small operations of the spec tests several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT
