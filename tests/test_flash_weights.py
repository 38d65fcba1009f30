"""course_utils.flash.weights_from_lse: exact softmax rows from the saved log-sum-exp, in bounded memory."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch

from course_utils.flash import flash_attention_forward, weights_from_lse


def full_weights(q, k, causal):
    """softmax(Q Kᵀ/√d) in float64 with the whole (n_q, n_k) matrix (top-left causal mask)."""
    scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        future = torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1)
        scores = scores.masked_fill(future, -math.inf)
    return torch.softmax(scores, dim=-1)


def random_qk(*lead, n_q, n_k, d=32, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, n_q, d, generator=generator).to(dtype)
    k, v = (torch.randn(*lead, n_k, d, generator=generator).to(dtype) for _ in range(2))
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "lead, n_q, n_k",
    [((2, 3), 700, 1100), ((2,), 1100, 700), ((), 5, 3), ((1, 2), 513, 513)],
    ids=["n_q<n_k", "n_q>n_k", "tiny", "one past a block"],
)
def test_every_row_equals_the_softmax_of_the_full_scores(lead, n_q, n_k, causal):
    q, k, v = random_qk(*lead, n_q=n_q, n_k=n_k, seed=n_q)
    _, lse = flash_attention_forward(q, k, v, causal)
    weights = weights_from_lse(q, k, lse, causal)
    assert weights.shape == (*lead, n_q, n_k) and weights.dtype == torch.float32
    assert (weights.double() - full_weights(q, k, causal)).abs().max() <= 1e-5
    assert torch.allclose(weights.sum(-1).double(), torch.ones(*lead, n_q, dtype=torch.float64))
    if causal:  # no weight on a key after its query
        assert (weights * torch.ones(n_q, n_k).triu(1)).abs().max() == 0


@pytest.mark.parametrize(
    "rows",
    [[0, 699, 3, 3], torch.tensor([512, 511, 0]), range(10, 700, 97), []],
    ids=["list with a repeat", "tensor", "range", "none"],
)
def test_chosen_rows_in_the_order_asked(rows):
    q, k, v = random_qk(2, n_q=700, n_k=900, seed=1)
    for causal in (False, True):
        _, lse = flash_attention_forward(q, k, v, causal)
        weights = weights_from_lse(q, k, lse, causal, rows=rows)
        indices = torch.as_tensor(list(rows), dtype=torch.long)
        assert weights.shape == (2, len(indices), 900)
        expected = full_weights(q, k, causal)[:, indices]
        assert torch.allclose(weights.double(), expected, rtol=0, atol=1e-5)


def test_half_precision_and_float64():
    q, k, v = random_qk(1, n_q=300, n_k=300, seed=2, dtype=torch.float64)
    _, lse = flash_attention_forward(q, k, v, True)
    assert (weights_from_lse(q, k, lse, True) - full_weights(q, k, True)).abs().max() <= 1e-12
    half = [tensor.half() for tensor in (q, k, v)]
    _, lse = flash_attention_forward(*half, True)  # lse in float32, the compute dtype
    weights = weights_from_lse(half[0], half[1], lse, True, rows=[0, 150, 299])
    assert weights.dtype == torch.float16
    expected = full_weights(half[0], half[1], True)[:, [0, 150, 299]]
    assert (weights.double() - expected).abs().max() <= 1e-3


def test_no_keys_gives_empty_rows_not_nan():
    q, k, v = random_qk(n_q=4, n_k=0)
    _, lse = flash_attention_forward(q, k, v)  # L = −∞: the log of an empty sum
    assert weights_from_lse(q, k, lse).shape == (4, 0)


@pytest.mark.parametrize(
    "change, error, needle",
    [
        ({"rows": [5000]}, ValueError, "rows must be query indices in [0, n_q=6), got 5000"),
        ({"rows": [0, -1]}, ValueError, "rows must be query indices in [0, n_q=6), got -1"),
        ({"rows": 2}, TypeError, "rows must be None, a sequence of ints or a 1-D integer tensor"),
        ({"rows": [1.5]}, TypeError, "rows must be None, a sequence of ints"),
        ({"rows": torch.zeros(2, 2, dtype=torch.long)}, TypeError, "rows must be a 1-D integer"),
        ({"lse": torch.zeros(2, 5)}, ValueError, "lse has n_q=5 but q has n_q=6"),
        ({"lse": torch.zeros(6)}, ValueError, "lse has batch=() but q has batch=(2,)"),
        ({"k": torch.zeros(2, 7, 8)}, ValueError, "k has d=8 but q has d=16"),
        ({"k": torch.zeros(3, 7, 16)}, ValueError, "k has batch=(3,) but q has batch=(2,)"),
        ({"causal": "yes"}, TypeError, "causal must be True or False, got 'yes'"),
        ({"q": torch.zeros(2, 6, 16, dtype=torch.long)}, TypeError, "q"),
    ],
)
def test_bad_input_names_the_argument_expected_and_got(change, error, needle):
    arguments = {"q": torch.zeros(2, 6, 16), "k": torch.zeros(2, 7, 16), "lse": torch.zeros(2, 6)}
    with pytest.raises(error) as raised:
        weights_from_lse(**(arguments | change))
    assert needle in str(raised.value)


MEMORY_SCRIPT = """
import json, torch
from course_utils.benchmark.peak_memory import PeakMemory
from course_utils.flash import flash_attention_forward, weights_from_lse

torch.set_num_threads(1)
n = 8192
generator = torch.Generator().manual_seed(3)
q, k, v = (torch.randn(1, 1, n, 64, generator=generator) for _ in range(3))
_, lse = flash_attention_forward(q, k, v, True)
weights_from_lse(q[..., :64, :], k[..., :64, :], lse[..., :64], True)  # warm-up: kernels, thread pools
rows = list(range(0, n, n // 16))
with PeakMemory(torch.device("cpu")) as memory:
    weights = weights_from_lse(q, k, lse, True, rows=rows)
print(json.dumps({"extra_mib": memory.extra_mib, "method": memory.method, "shape": list(weights.shape)}))
"""


def test_memory_is_the_output_and_a_tile_never_the_n_by_n_matrix():
    """16 rows of an n = 8192 head: the full matrix would be 256 MiB, the output is 0.5 MiB."""
    finished = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEMORY_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # a fresh process: nothing else of the test session's allocations in its peak
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 1, 16, 8192]
    full_matrix_mib = 8192 * 8192 * 4 / 2**20
    if not result["method"].startswith("VmHWM"):
        pytest.skip(f"no precise peak-memory counter here ({result['method']})")
    # output 0.5 MiB + one 16 x 512 tile and its temporaries; measured about 0.75 MiB
    assert result["extra_mib"] <= full_matrix_mib / 32, result
