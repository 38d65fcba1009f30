"""course_utils.flash, the textbook algorithm: exactness, gradients, O(n) saved memory, tiles, bad input.

The CPU-optimised variant is tested equal to it in test_flash_fast.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_utils.flash import (
    count_tiles,
    flash_attention,
    flash_attention_forward,
    naive_attention,
    online_softmax_stats,
    tile_kind,
    tile_schedule,
)


def reference(q, k, v, causal=False):
    """softmax(Q Kᵀ/√d) V in float64 with the full matrix (top-left causal mask)."""
    return naive_attention(q.double(), k.double(), v.double(), causal)


def random_qkv(*shape_q, n_k=None, d_v=None, dtype=torch.float32, seed=0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    *lead, n_q, d = shape_q
    n_k = n_q if n_k is None else n_k
    d_v = d if d_v is None else d_v
    q = torch.randn(*lead, n_q, d, generator=generator, dtype=dtype) * scale
    k = torch.randn(*lead, n_k, d, generator=generator, dtype=dtype) * scale
    v = torch.randn(*lead, n_k, d_v, generator=generator, dtype=dtype)
    return q, k, v


def test_naive_attention_is_attention():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 20, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    assert torch.allclose(naive_attention(q, k, v), sdpa(q, k, v))
    assert torch.allclose(naive_attention(q, k, v, True), sdpa(q, k, v, is_causal=True))
    q_short = q[..., :7, :]  # n_q != n_k: the mask is top-left aligned, like is_causal
    visible = torch.ones(7, 20, dtype=torch.bool).tril()
    assert torch.allclose(
        naive_attention(q_short, k, v, True), sdpa(q_short, k, v, attn_mask=visible)
    )


SHAPES = [
    # (n_q, n_k, block_q, block_k)
    (64, 64, 16, 16),
    (37, 53, 8, 16),  # ragged last blocks on both axes
    (50, 30, 7, 9),
    (30, 50, 64, 5),  # block_q larger than n_q: clamped
    (1, 1, None, None),
    (100, 100, None, None),  # default blocks larger than n
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_q, n_k, block_q, block_k", SHAPES)
def test_matches_float64_reference(n_q, n_k, block_q, block_k, causal):
    q, k, v = random_qkv(2, 3, n_q, 16, n_k=n_k, d_v=8, scale=2.0)
    out = flash_attention(q, k, v, causal, block_q, block_k)
    assert out.shape == (2, 3, n_q, 8) and out.dtype == torch.float32
    assert (out.double() - reference(q, k, v, causal)).abs().max() <= 1e-5


def test_float64_is_exact_to_rounding():
    q, k, v = random_qkv(2, 70, 32, dtype=torch.float64, seed=1)
    out = flash_attention(q, k, v, block_q=16, block_k=24)
    assert (out - reference(q, k, v)).abs().max() <= 1e-12


def test_matches_torch_sdpa_causal_and_cross():
    sdpa = torch.nn.functional.scaled_dot_product_attention
    q, k, v = random_qkv(1, 4, 96, 32, seed=2)
    assert torch.allclose(
        flash_attention(q, k, v, True, 32, 32), sdpa(q, k, v, is_causal=True), atol=1e-5
    )
    q, k, v = random_qkv(1, 2, 40, 16, n_k=70, seed=3)
    mask = torch.ones(40, 70, dtype=torch.bool).tril()  # top-left aligned, like is_causal
    assert torch.allclose(
        flash_attention(q, k, v, True, 16, 16), sdpa(q, k, v, attn_mask=mask), atol=1e-5
    )


def test_large_logits_stay_finite_and_exact():
    q, k, v = random_qkv(1, 33, 8, seed=4, scale=30.0)  # scores in the hundreds
    out = flash_attention(q, k, v, block_q=8, block_k=8)
    assert torch.isfinite(out).all()
    assert (out.double() - reference(q, k, v)).abs().max() <= 1e-5


def test_non_contiguous_inputs():
    q, k, v = random_qkv(3, 2, 45, 16, seed=5)
    q_t = q.transpose(0, 1)  # non-contiguous leading dims
    k_t, v_t = k.transpose(0, 1), v.transpose(0, 1)
    expected = reference(q_t, k_t, v_t, True)
    assert (flash_attention(q_t, k_t, v_t, True, 16, 16).double() - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    q, k, v = random_qkv(2, 40, 16, seed=6)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    out = flash_attention(q, k, v, True, 16, 16)
    assert out.dtype == dtype
    assert (out.double() - reference(q, k, v, True)).abs().max() <= 1e-2


def test_empty_sequences():
    q, k, v = random_qkv(2, 5, 8, n_k=0)
    assert torch.equal(flash_attention(q, k, v), torch.zeros(2, 5, 8))  # nothing to attend: zeros
    q, k, v = random_qkv(2, 0, 8, n_k=4)
    assert flash_attention(q, k, v).shape == (2, 0, 8)


# ----------------------------------------------------------------------------------------------
# gradients and memory


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_match_naive_autograd(causal):
    q, k, v = random_qkv(2, 2, 45, 16, n_k=45, d_v=8, seed=7, scale=1.5)
    grad_out = torch.randn(2, 2, 45, 8, generator=torch.Generator().manual_seed(8))
    inputs = [t.clone().requires_grad_(True) for t in (q, k, v)]
    flash_attention(*inputs, causal, 16, 8).backward(grad_out)
    expected_inputs = [t.double().requires_grad_(True) for t in (q, k, v)]
    reference(*expected_inputs, causal).backward(grad_out.double())
    for name, got, expected in zip("qkv", inputs, expected_inputs, strict=True):
        error = (got.grad.double() - expected.grad).abs().max()
        assert error <= 1e-4, f"d{name} differs by {error}"


def test_gradcheck_float64():
    q, k, v = (
        t.requires_grad_(True) for t in random_qkv(1, 2, 13, 4, n_k=11, dtype=torch.float64, seed=9)
    )
    assert torch.autograd.gradcheck(lambda a, b, c: flash_attention(a, b, c, True, 4, 3), (q, k, v))
    assert torch.autograd.gradcheck(
        lambda a, b, c: flash_attention(a, b, c, False, 5, 4), (q, k, v)
    )


def largest_saved_numel(fn, *inputs) -> int:
    """The largest tensor autograd keeps for backward while running ``fn``."""
    sizes = []

    def pack(tensor):
        sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn(*inputs)
    return max(sizes)


def test_no_n_by_n_tensor_is_saved_for_backward():
    n, d = 256, 16
    q, k, v = (t.requires_grad_(True) for t in random_qkv(1, 2, n, d, seed=10))
    naive = largest_saved_numel(
        lambda a, b, c: torch.softmax(a @ b.transpose(-2, -1), -1) @ c, q, k, v
    )
    assert naive >= 2 * n * n  # the naive version keeps the (1, 2, n, n) weights: the test can fail
    tiled = largest_saved_numel(lambda a, b, c: flash_attention(a, b, c, True, 64, 64), q, k, v)
    assert tiled <= 2 * n * d  # q, k, v, out: O(n · d); lse: O(n)


def test_custom_function_only_is_in_the_graph():
    q, k, v = (t.requires_grad_(True) for t in random_qkv(2, 32, 8))
    out = flash_attention(q, k, v)
    assert "RecomputingAttention" in type(out.grad_fn).__name__ or "RecomputingAttention" in str(
        out.grad_fn.next_functions
    )


# ----------------------------------------------------------------------------------------------
# tiles and the online softmax


def test_tile_kind_rules():
    assert tile_kind(0, 4, 4, 8, causal=True) == "skip"
    assert tile_kind(4, 8, 0, 5, causal=True) == "full"  # last key 4 <= first query 4
    assert tile_kind(4, 8, 4, 8, causal=True) == "partial"
    assert tile_kind(4, 8, 8, 9, causal=True) == "skip"
    assert tile_kind(0, 4, 4, 8, causal=False) == "full"


def test_causal_computes_about_half_the_tiles():
    full = count_tiles(8192, 8192, 512, 512)
    causal = count_tiles(8192, 8192, 512, 512, causal=True)
    assert full == {"full": 256, "partial": 0, "skip": 0, "computed": 256, "total": 256}
    assert causal["computed"] == 16 * 17 // 2 and causal["partial"] == 16
    ragged = tile_schedule(10, 7, 4, 3)
    assert [(t.q_stop - t.q_start, t.k_stop - t.k_start) for t in ragged][-1] == (2, 1)


@pytest.mark.parametrize("causal", [False, True])
def test_forward_visits_exactly_the_computed_tiles(causal):
    q, k, v = random_qkv(1, 50, 8, seed=11)
    visited = []
    out, lse = flash_attention_forward(
        q, k, v, causal, 8, 8, on_tile=lambda step: visited.append(step.tile)
    )
    expected = [t for t in tile_schedule(50, 50, 8, 8, causal) if t.kind != "skip"]
    assert visited == expected
    scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(8)
    if causal:
        scores = scores.masked_fill(~torch.ones(50, 50, dtype=torch.bool).tril(), -math.inf)
    assert (lse.double() - torch.logsumexp(scores, -1)).abs().max() <= 1e-5
    assert (out.double() - reference(q, k, v, causal)).abs().max() <= 1e-5


def test_running_statistics_are_the_exact_running_max_and_sum():
    """The textbook m is the maximum of the scores seen so far, and l their sum of exp(s − m)."""
    q, k, v = random_qkv(1, 20, 8, seed=15, scale=2.0)
    steps = []
    flash_attention_forward(
        q, k, v, True, 8, 6,
        on_tile=lambda step: steps.append((step.tile, step.row_max.clone(), step.row_sum.clone())),
    )  # fmt: skip
    scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(8)
    scores = scores.masked_fill(~torch.ones(20, 20, dtype=torch.bool).tril(), -math.inf)
    assert len(steps) == count_tiles(20, 20, 8, 6, causal=True)["computed"]
    for tile, row_max, row_sum in steps:
        seen = scores[..., tile.q_start : tile.q_stop, : tile.k_stop]  # every key block so far
        assert torch.allclose(row_max.double(), seen.amax(-1), atol=1e-5)
        expected_sum = torch.exp(seen - seen.amax(-1, keepdim=True)).sum(-1)
        assert torch.allclose(row_sum.double(), expected_sum, atol=1e-5)


def test_online_softmax_stats_equal_two_pass():
    scores = torch.randn(4, 23, dtype=torch.float64) * 5 + torch.linspace(
        0, 20, 23, dtype=torch.float64
    )
    for block in (1, 4, 23, 100):
        row_max, row_sum = online_softmax_stats(scores, block)
        assert torch.equal(row_max, scores.amax(-1))
        weights = torch.exp(scores - row_max[:, None]) / row_sum[:, None]
        assert torch.allclose(weights, torch.softmax(scores, -1), atol=1e-12)
    row_max, row_sum = online_softmax_stats(torch.full((2, 5), -math.inf), 2)
    assert torch.isinf(row_max).all() and torch.equal(row_sum, torch.zeros(2))


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "make, error, needle",
    [
        (lambda q, k, v: (q.long(), k.long(), v.long()), TypeError, "dtype torch.int64"),
        (lambda q, k, v: (q, k[..., :4], v), ValueError, "keys have d=4 but queries have d=8"),
        (lambda q, k, v: (q, k, v[..., :3, :]), ValueError, "same number of positions"),
        (lambda q, k, v: (q, k[:1], v[:1]), ValueError, "leading (batch, head) dimensions"),
        (lambda q, k, v: (q, k.double(), v), TypeError, "share a dtype"),
        (lambda q, k, v: (q[0, 0, 0], k, v), ValueError, "(..., n, d)"),
        (lambda q, k, v: (q.tolist(), k, v), TypeError, "must be a torch.Tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(make, error, needle):
    q, k, v = random_qkv(2, 6, 8)
    with pytest.raises(error, match=None) as raised:
        flash_attention(*make(q, k, v))
    assert needle in str(raised.value)


@pytest.mark.parametrize("block", [0, -3, 2.5, True, "64"])
def test_bad_block_sizes(block):
    q, k, v = random_qkv(1, 6, 8)
    with pytest.raises((TypeError, ValueError), match="block_q"):
        flash_attention(q, k, v, block_q=block)


def test_tile_sizes_are_decided_in_one_place():
    from course_utils.flash import tile_sizes

    assert tile_sizes(6, 2000) == (6, 512)  # clamped to n on the CPU, 512 by default
    assert tile_sizes(6, 2000, 4, None) == (4, 512)
    assert tile_sizes(6, 2000, gpu_kernel=True) == (64, 64)  # the GPU kernel masks, never clamps
    assert tile_sizes(6, 2000, 128, 16, gpu_kernel=True) == (128, 16)
    with pytest.raises(ValueError, match="block_k must be a power of two >= 16, got 24"):
        tile_sizes(6, 2000, 64, 24, gpu_kernel=True)
    with pytest.raises(TypeError, match="block_q must be a positive int or None"):
        tile_sizes(6, 6, 2.5)


def test_causal_must_be_bool():
    q, k, v = random_qkv(1, 6, 8)
    with pytest.raises(TypeError, match="causal"):
        flash_attention(q, k, v, "yes")


def test_blocks_larger_than_n_are_clamped():
    q, k, v = random_qkv(1, 6, 8)
    assert torch.allclose(
        flash_attention(q, k, v, True, 10_000, 10_000), flash_attention(q, k, v, True, 6, 6)
    )


# ----------------------------------------------------------------------------------------------
# widget, optional Triton module (the exercises: test_flash_exercises.py)


def test_tile_explorer_steps_without_a_browser():
    from course_utils.display.widgets import TileExplorer

    explorer = TileExplorer(n=12, block=4, causal=True)
    assert len(explorer.steps) == 6 and explorer.skipped == 3  # 3 + 2 + 1 tiles computed
    redraws = explorer.redraws
    explorer.slider.value = 1  # second tile: queries [4, 8) × keys [0, 4), not the row's last
    assert explorer.current_step == 1 and explorer.redraws == redraws + 1
    assert explorer.current_title.startswith("step 1 of 0–5: queries [4, 8) × keys [0, 4) (full)")
    assert explorer.current_tile.q_start == 4 and explorer.current_tile.kind == "full"
    assert (explorer.current_mass_seen < 1).all() and (explorer.current_mass_seen > 0).all()
    explorer.slider.value = 2  # the diagonal tile finishes rows 4..7
    assert torch.allclose(explorer.current_mass_seen, torch.ones(4), atol=1e-5)
    explorer.causal_box.value = False
    assert len(explorer.steps) == 9 and explorer.skipped == 0
    explorer.block_picker.value = 5  # 12 = 5 + 5 + 2: ragged
    assert len(explorer.steps) == 9 and explorer.slider.max == 8
    with pytest.raises(ValueError, match="n must be"):
        TileExplorer(n=1000)


def test_the_triton_kernel_loop_is_read_from_the_module():
    from course_utils import flash_triton

    loop = flash_triton.kernel_loop_source()  # no triton needed: it is read from the file
    assert loop.startswith("for k_start in range(0, k_end, BLOCK_K):\n    cols = ")
    assert "probabilities = tl.exp2(scores - new_max[:, None])" in loop
    assert loop.rstrip().endswith("row_max = new_max")


def test_triton_module_imports_and_explains_why_not():
    from course_utils import flash_triton

    reason = flash_triton.unavailable_reason("cpu")
    if reason is None:
        pytest.skip("triton can run here")
    assert "triton" in reason or "CUDA" in reason or "cuda" in reason
    q, k, v = random_qkv(1, 8, 16)
    with pytest.raises(RuntimeError, match="cannot run here"):
        flash_triton.triton_flash_attention(q, k, v)
