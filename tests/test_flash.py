"""course_utils.flash: exactness, gradients, O(n) saved memory, tiles, bad input, widget, checks."""

from __future__ import annotations

import math

import pytest
import torch

from course_utils import flash
from course_utils.checks import CheckFailed, check
from course_utils.flash import (
    count_tiles,
    flash_attention,
    flash_attention_forward,
    online_softmax_stats,
    tile_kind,
    tile_schedule,
)


def reference(q, k, v, causal=False):
    """softmax(Q Kᵀ/√d) V in float64 with the full matrix (top-left causal mask)."""
    q, k, v = (t.double() for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        visible = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
        scores = scores.masked_fill(~visible, -math.inf)
    return torch.softmax(scores, dim=-1) @ v


def random_qkv(*shape_q, n_k=None, d_v=None, dtype=torch.float32, seed=0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    *lead, n_q, d = shape_q
    n_k = n_q if n_k is None else n_k
    d_v = d if d_v is None else d_v
    q = torch.randn(*lead, n_q, d, generator=generator, dtype=dtype) * scale
    k = torch.randn(*lead, n_k, d, generator=generator, dtype=dtype) * scale
    v = torch.randn(*lead, n_k, d_v, generator=generator, dtype=dtype)
    return q, k, v


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


@pytest.mark.parametrize(
    "query_scale, key_shift, value_scale, regime",
    [
        (1.0, 0.0, 1.0, "m = 0: scores provably within [-30, 30]"),
        (1.0, -50.0, 1.0, "shifted: every score far below 0"),
        (12.0, 0.0, 1.0, "lazy rescaling: scores in the hundreds"),
        (12.0, 0.0, 1e33, "near-eager: huge values leave almost no headroom"),
    ],
)
def test_every_exponent_regime_is_exact(query_scale, key_shift, value_scale, regime):
    generator = torch.Generator().manual_seed(12)
    q = torch.randn(2, 70, 16, generator=generator) * query_scale
    k = torch.randn(2, 70, 16, generator=generator)
    # Keys that grow along the sequence make the row max jump between key blocks.
    k = k * torch.linspace(0.2, 3.0, 70)[:, None]
    v = torch.randn(2, 70, 8, generator=generator) * value_scale
    if key_shift:  # a constant score offset: q · (k + c·q/|q|²) = q · k + c
        q = torch.ones(2, 70, 16)
        k = k + key_shift * 4.0 / 16
    for causal in (False, True):
        expected = reference(q, k, v, causal)
        out = flash_attention(q, k, v, causal, 16, 8)
        assert torch.isfinite(out).all(), regime
        relative = (out.double() - expected).abs().max() / expected.abs().max()
        assert relative <= 1e-5, (regime, causal, relative)


def test_reference_max_regimes_are_taken():
    """The three ways of choosing m are each used on the data meant to exercise them."""
    seen = {}
    for name, scale in (("zero", 1.0), ("lazy", 12.0)):
        generator = torch.Generator().manual_seed(13)
        q, k, v = (torch.randn(1, 64, 16, generator=generator) for _ in range(3))
        maxima = []
        flash_attention_forward(
            q * scale, k * torch.linspace(0.2, 3.0, 64)[:, None], v, False, 16, 16,
            on_tile=lambda step, maxima=maxima: maxima.append(step.row_max.clone()),
        )  # fmt: skip
        seen[name] = maxima
    assert all(bool((m == 0).all()) for m in seen["zero"])  # m = 0 throughout
    assert not bool((seen["lazy"][0] == 0).all())  # shifted by the first tile's max
    assert any(not torch.equal(a, b) for a, b in zip(seen["lazy"], seen["lazy"][1:], strict=False))


def test_non_contiguous_and_batch_chunking(monkeypatch):
    q, k, v = random_qkv(3, 2, 45, 16, seed=5)
    q_t = q.transpose(0, 1)  # non-contiguous leading dims
    k_t, v_t = k.transpose(0, 1), v.transpose(0, 1)
    expected = reference(q_t, k_t, v_t, True)
    assert (flash_attention(q_t, k_t, v_t, True, 16, 16).double() - expected).abs().max() <= 1e-5
    # Force one batch·head slice per tile pass: the chunked path must give the same answer.
    monkeypatch.setattr(flash, "MAX_TILE_BYTES", 1)
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
    assert "FlashAttention" in type(out.grad_fn).__name__ or "FlashAttention" in str(
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


def test_diagonal_strips_cover_exactly_the_visible_keys(monkeypatch):
    monkeypatch.setattr(flash, "DIAGONAL_STRIP_ROWS", 128)
    diagonal = flash.Tile(3, 3, 1536, 2048, 1536, 2048, "partial")
    strips = flash._diagonal_strips(diagonal)
    assert strips == [
        (1536, 1664, 1664),
        (1664, 1792, 1792),
        (1792, 1920, 1920),
        (1920, 2048, 2048),
    ]
    work = sum(
        (rows_end - rows_start) * (keys_end - 1536) for rows_start, rows_end, keys_end in strips
    )
    assert work / (512 * 512) == 10 / 16  # instead of the whole tile
    # block_q > block_k: the first query rows see no key of this tile, their strip is dropped
    wide = flash.Tile(0, 1, 0, 300, 200, 300, "partial")
    monkeypatch.setattr(flash, "DIAGONAL_STRIP_ROWS", 100)
    assert flash._diagonal_strips(wide) == [(200, 300, 300)]


@pytest.mark.parametrize("strip_rows", [1, 3, 5])
@pytest.mark.parametrize("query_scale", [1.0, 12.0])  # m = 0, and lazy rescaling
@pytest.mark.parametrize("block_q, block_k", [(16, 16), (16, 7), (7, 16), (13, 13)])
def test_diagonal_strips_are_exact(monkeypatch, strip_rows, query_scale, block_q, block_k):
    """Strips of the causal diagonal (the default 128 rows exceed these small blocks) stay exact."""
    monkeypatch.setattr(flash, "DIAGONAL_STRIP_ROWS", strip_rows)
    generator = torch.Generator().manual_seed(14)
    q = torch.randn(2, 61, 16, generator=generator) * query_scale
    k = torch.randn(2, 61, 16, generator=generator) * torch.linspace(0.2, 3.0, 61)[:, None]
    v = torch.randn(2, 61, 8, generator=generator)
    visited = []
    out, _ = flash_attention_forward(
        q, k, v, True, block_q, block_k, on_tile=lambda step: visited.append(step.tile)
    )
    expected = reference(q, k, v, causal=True)
    assert (out.double() - expected).abs().max() / expected.abs().max() <= 1e-5
    assert visited == [t for t in tile_schedule(61, 61, block_q, block_k, True) if t.kind != "skip"]


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
# widget, exercise checks, optional Triton module


def test_tile_explorer_steps_without_a_browser():
    from course_utils.widgets import TileExplorer

    explorer = TileExplorer(n=12, block=4, causal=True)
    assert len(explorer.steps) == 6 and explorer.skipped == 3  # 3 + 2 + 1 tiles computed
    redraws = explorer.redraws
    explorer.slider.value = 1  # second tile: queries [4, 8) × keys [0, 4), not the row's last
    assert explorer.current_step == 1 and explorer.redraws == redraws + 1
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


def answer_online_softmax_stats(scores, block_size):
    return online_softmax_stats(scores, block_size)


def answer_tiled_attention(q, k, v, block_q, block_k):
    return flash_attention(q, k, v, False, block_q, block_k)


def answer_causal_tile_kind(q_start, q_stop, k_start, k_stop):
    return tile_kind(q_start, q_stop, k_start, k_stop, causal=True)


def answer_score_gradient(weights, values, out, grad_out):
    grad_weights = grad_out @ values.transpose(-2, -1)
    return weights * (grad_weights - (grad_out * out).sum(-1, keepdim=True))


def test_exercise_checks_pass_reference_answers():
    check("ex7_1_online_softmax", answer_online_softmax_stats)
    check("ex7_2_tiled_attention", answer_tiled_attention)
    check("ex7_3_causal_tile_kind", answer_causal_tile_kind)
    check("ex7_4_score_gradient", answer_score_gradient)


@pytest.mark.parametrize(
    "name, wrong, needle",
    [
        (
            "ex7_1_online_softmax",
            lambda s, b: (
                s.amax(-1),
                torch.exp(s - s.amax(-1, keepdim=True)).sum(-1) * 0
                + sum(
                    torch.exp(s[..., i : i + b] - s[..., i : i + b].amax(-1, keepdim=True)).sum(-1)
                    for i in range(0, s.shape[-1], b)
                ),
            ),
            "own max",
        ),
        (
            "ex7_2_tiled_attention",
            lambda q, k, v, a, b: (
                torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -2) @ v
            ),
            "query axis",
        ),
        ("ex7_3_causal_tile_kind", lambda a, b, c, d: tile_kind(c, d, a, b, True), "mirrored"),
        ("ex7_4_score_gradient", lambda p, v, o, g: p * (g @ v.transpose(-2, -1)), "subtract D"),
        ("ex7_2_tiled_attention", lambda q, k, v, a, b: None, "did you forget to `return` it?"),
    ],
)
def test_exercise_checks_name_the_mistake(name, wrong, needle):
    with pytest.raises(CheckFailed) as failure:
        check(name, wrong)
    assert needle in str(failure.value)


def test_triton_module_imports_and_explains_why_not():
    from course_utils import flash_triton

    reason = flash_triton.unavailable_reason("cpu")
    if reason is None:
        pytest.skip("triton can run here")
    assert "triton" in reason or "CUDA" in reason or "cuda" in reason
    q, k, v = random_qkv(1, 8, 16)
    with pytest.raises(RuntimeError, match="cannot run here"):
        flash_triton.triton_flash_attention(q, k, v)
