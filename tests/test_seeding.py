"""helpers.seeding.seeded, and the training functions that use it, leave the caller's random state alone."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from course_utils.helpers.seeding import seeded
from course_utils.pointer_network import train_sorter


def _draws() -> tuple:
    return torch.rand(2).tolist(), random.random(), float(np.random.rand())


def test_seeded_seeds_the_block_and_restores_the_caller():
    with seeded(3):
        inside = _draws()
    with seeded(3):
        assert _draws() == inside  # the same seed gives the same numbers
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    expected = _draws()
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    with seeded(3):
        _draws()
    assert _draws() == expected  # as if the block had not run


def test_seeded_names_a_bad_seed():
    with pytest.raises(TypeError, match="seed must be an int, got float"), seeded(1.5):
        pass


def test_a_training_function_does_not_reseed_the_callers_generator():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first, _ = train_sorter(seed=0, steps=2, batch=4, hidden_dim=8)
    assert torch.equal(torch.rand(3), expected)
    again, _ = train_sorter(seed=0, steps=2, batch=4, hidden_dim=8)
    for mine, theirs in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(mine, theirs)  # still reproducible from its own seed
