"""course_utils.flash_fast: equal to the textbook course_utils.flash, and each of its shortcuts exact.

The fast variant changes how the tiles are computed (batched heads, lazy rescaling, a
Cauchy–Schwarz bound instead of the row maximum, a zero reference, diagonal strips), never what
they compute: every test here compares it with ``course_utils.flash`` or the float64 formula.
"""

from __future__ import annotations

import pytest
import torch
from test_flash import random_qkv, reference

from course_utils import flash, flash_fast

CASES = [
    # (n_q, n_k, block_q, block_k)
    (64, 64, 16, 16),
    (37, 53, 8, 16),  # ragged last blocks on both axes, n_q < n_k
    (50, 30, 7, 9),  # n_q > n_k
    (30, 50, 64, 5),  # block_q larger than n_q: clamped
    (1, 1, None, None),
    (100, 100, None, None),  # default blocks larger than n
    (61, 61, 13, 13),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_q, n_k, block_q, block_k", CASES)
def test_forward_equals_the_textbook_algorithm(n_q, n_k, block_q, block_k, causal):
    q, k, v = random_qkv(2, 3, n_q, 16, n_k=n_k, d_v=8, scale=2.0)
    textbook = flash.flash_attention(q, k, v, causal, block_q, block_k)
    fast = flash_fast.flash_attention(q, k, v, causal, block_q, block_k)
    assert fast.shape == textbook.shape == (2, 3, n_q, 8) and fast.dtype == torch.float32
    assert (fast - textbook).abs().max() <= 1e-5  # float32: the order of additions differs
    _, textbook_lse = flash.flash_attention_forward(q, k, v, causal, block_q, block_k)
    _, fast_lse = flash_fast.flash_attention_forward(q, k, v, causal, block_q, block_k)
    assert fast_lse.shape == textbook_lse.shape == (2, 3, n_q)
    assert (fast_lse - textbook_lse).abs().max() <= 1e-5


def test_float64_equals_the_textbook_to_rounding():
    q, k, v = random_qkv(2, 70, 32, dtype=torch.float64, seed=1, scale=3.0)
    for causal in (False, True):
        textbook = flash.flash_attention(q, k, v, causal, 16, 24)
        assert (flash_fast.flash_attention(q, k, v, causal, 16, 24) - textbook).abs().max() <= 1e-12


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "n_q, n_k, block_q, block_k", [(45, 45, 16, 8), (37, 53, 8, 16), (50, 30, 7, 9)]
)
def test_gradients_equal_the_textbook_algorithm(n_q, n_k, block_q, block_k, causal):
    q, k, v = random_qkv(2, 2, n_q, 16, n_k=n_k, d_v=8, seed=7, scale=1.5)
    grad_out = torch.randn(2, 2, n_q, 8, generator=torch.Generator().manual_seed(8))
    grads = {}
    for module in (flash, flash_fast):
        inputs = [t.clone().requires_grad_(True) for t in (q, k, v)]
        module.flash_attention(*inputs, causal, block_q, block_k).backward(grad_out)
        grads[module.__name__] = [t.grad for t in inputs]
    for name, textbook, fast in zip("qkv", *grads.values(), strict=True):
        assert (fast - textbook).abs().max() <= 1e-5, f"d{name}"


def test_gradcheck_float64():
    q, k, v = (
        t.requires_grad_(True) for t in random_qkv(1, 2, 13, 4, n_k=11, dtype=torch.float64, seed=9)
    )
    for causal, block_q, block_k in ((True, 4, 3), (False, 5, 4)):
        assert torch.autograd.gradcheck(
            lambda a, b, c, s=(causal, block_q, block_k): flash_fast.flash_attention(a, b, c, *s),
            (q, k, v),
        )


def test_no_n_by_n_tensor_is_saved_for_backward():
    from test_flash import largest_saved_numel

    n, d = 256, 16
    q, k, v = (t.requires_grad_(True) for t in random_qkv(1, 2, n, d, seed=10))
    fast = largest_saved_numel(
        lambda a, b, c: flash_fast.flash_attention(a, b, c, True, 64, 64), q, k, v
    )
    assert fast <= 2 * n * d  # q, k, v, out flattened: O(n · d); lse: O(n)


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
        out = flash_fast.flash_attention(q, k, v, causal, 16, 8)
        assert torch.isfinite(out).all(), regime
        relative = (out.double() - expected).abs().max() / expected.abs().max()
        assert relative <= 1e-5, (regime, causal, relative)
        textbook = flash.flash_attention(q, k, v, causal, 16, 8)
        assert (out - textbook).abs().max() / textbook.abs().max() <= 1e-5, (regime, causal)


def test_reference_max_regimes_are_taken():
    """The three ways of choosing m are each used on the data meant to exercise them."""
    seen = {}
    for name, scale in (("zero", 1.0), ("lazy", 12.0)):
        generator = torch.Generator().manual_seed(13)
        q, k, v = (torch.randn(1, 64, 16, generator=generator) for _ in range(3))
        maxima = []
        flash_fast.flash_attention_forward(
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
    out = flash_fast.flash_attention(q_t, k_t, v_t, True, 16, 16)
    assert (out.double() - expected).abs().max() <= 1e-5
    # Force one batch·head slice per tile pass: the chunked path must give the same answer.
    monkeypatch.setattr(flash_fast, "MAX_TILE_BYTES", 1)
    chunked = flash_fast.flash_attention(q_t, k_t, v_t, True, 16, 16)
    assert (chunked.double() - expected).abs().max() <= 1e-5


def test_diagonal_strips_cover_exactly_the_visible_keys(monkeypatch):
    monkeypatch.setattr(flash_fast, "DIAGONAL_STRIP_ROWS", 128)
    diagonal = flash.Tile(3, 3, 1536, 2048, 1536, 2048, "partial")
    strips = flash_fast._diagonal_strips(diagonal)
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
    monkeypatch.setattr(flash_fast, "DIAGONAL_STRIP_ROWS", 100)
    assert flash_fast._diagonal_strips(wide) == [(200, 300, 300)]


@pytest.mark.parametrize("strip_rows", [1, 3, 5])
@pytest.mark.parametrize("query_scale", [1.0, 12.0])  # m = 0, and lazy rescaling
@pytest.mark.parametrize("block_q, block_k", [(16, 16), (16, 7), (7, 16), (13, 13)])
def test_diagonal_strips_are_exact(monkeypatch, strip_rows, query_scale, block_q, block_k):
    """Strips of the causal diagonal (the default 128 rows exceed these small blocks) stay exact."""
    monkeypatch.setattr(flash_fast, "DIAGONAL_STRIP_ROWS", strip_rows)
    generator = torch.Generator().manual_seed(14)
    q = torch.randn(2, 61, 16, generator=generator) * query_scale
    k = torch.randn(2, 61, 16, generator=generator) * torch.linspace(0.2, 3.0, 61)[:, None]
    v = torch.randn(2, 61, 8, generator=generator)
    visited = []
    out, _ = flash_fast.flash_attention_forward(
        q, k, v, True, block_q, block_k, on_tile=lambda step: visited.append(step.tile)
    )
    expected = reference(q, k, v, causal=True)
    assert (out.double() - expected).abs().max() / expected.abs().max() <= 1e-5
    computed = flash.tile_schedule(61, 61, block_q, block_k, True)
    assert visited == [tile for tile in computed if tile.kind != "skip"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_equals_the_textbook(dtype):
    q, k, v = (t.to(dtype) for t in random_qkv(2, 40, 16, seed=6))
    fast = flash_fast.flash_attention(q, k, v, True, 16, 16)
    assert fast.dtype == dtype
    textbook = flash.flash_attention(q, k, v, True, 16, 16)
    # both compute in float32 and round once to the half type: at most one rounding step apart
    assert (fast.double() - textbook.double()).abs().max() <= 1e-2
    assert (fast.double() - reference(q, k, v, True)).abs().max() <= 1e-2


def test_empty_sequences():
    q, k, v = random_qkv(2, 5, 8, n_k=0)
    assert torch.equal(flash_fast.flash_attention(q, k, v), torch.zeros(2, 5, 8))
    q, k, v = random_qkv(2, 0, 8, n_k=4)
    assert flash_fast.flash_attention(q, k, v).shape == (2, 0, 8)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda q, k, v: (q.long(), k.long(), v.long()), "dtype torch.int64"),
        (lambda q, k, v: (q, k[..., :4], v), "keys have d=4 but queries have d=8"),
        (lambda q, k, v: (q, k[:1], v[:1]), "leading (batch, head) dimensions"),
    ],
)
def test_bad_inputs_raise_the_textbook_errors(make, needle):
    q, k, v = random_qkv(2, 6, 8)
    with pytest.raises((TypeError, ValueError)) as raised:
        flash_fast.flash_attention(*make(q, k, v))
    assert needle in str(raised.value)
    with pytest.raises(ValueError, match="block_q must be >= 1, got 0"):
        flash_fast.flash_attention(q, k, v, block_q=0)
