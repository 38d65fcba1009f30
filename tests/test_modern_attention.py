"""Notebook 09's library: RoPE, ALiBi, grouped-query attention, sliding windows.

Each is compared with torch or with an independent formula: RoPE with complex multiplication
(torch.polar), ALiBi with its formula written per entry, GQA with torch's SDPA(enable_gqa=True),
the sliding-window mask with an explicit loop and the banded tiled attention with masked naive
attention.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_utils.attention import (
    alibi_bias,
    alibi_slopes,
    apply_rope,
    causal_mask,
    grouped_query_attention,
    scaled_dot_product_attention,
    sliding_window_mask,
)
from course_utils.flash import TILE_FULL, TILE_PARTIAL, TILE_SKIP
from course_utils.grouped_query import mean_pool_heads
from course_utils.kv_cache import KVCache
from course_utils.sliding_window import (
    band_key_blocks,
    band_tile_kind,
    banded_flash_attention,
    merge_tile,
)


def randn(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# RoPE


def rope_by_complex_numbers(x, positions, base=10000.0):
    """z_i = x[2i] + i·x[2i+1] times e^{i·pos·base^(-2i/d)}, with torch's complex numbers."""
    d = x.shape[-1]
    pairs = torch.view_as_complex(
        x.to(torch.float64).reshape(*x.shape[:-1], d // 2, 2).contiguous()
    )
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.to(torch.float64)[:, None] * theta[None, :]
    rotated = pairs * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).reshape(x.shape).to(x.dtype)


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 7, 8), (1, 16, 64)])
def test_rope_is_complex_rotation_of_adjacent_pairs(shape):
    x = randn(*shape)
    positions = torch.arange(shape[-2])
    assert torch.allclose(apply_rope(x), rope_by_complex_numbers(x, positions), atol=1e-12)


def test_rope_takes_positions_and_base():
    x = randn(2, 4, 6)
    positions = torch.tensor([3, 10, 11, 400])
    expected = rope_by_complex_numbers(x, positions, base=500.0)
    assert torch.allclose(apply_rope(x, positions, base=500.0), expected, atol=1e-12)
    # a later position of a cached decoder: rotating row 3 alone at position 3 = row 3 of the whole
    assert torch.allclose(apply_rope(x[..., 3:, :], torch.tensor([3])), apply_rope(x)[..., 3:, :])


def test_rope_keeps_norms_dtype_and_position_zero():
    x = randn(3, 9, 8, dtype=torch.float32)
    rotated = apply_rope(x)
    assert rotated.dtype == torch.float32 and rotated.shape == x.shape
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.equal(rotated[:, 0], x[:, 0])  # angle 0 at position 0


def test_rope_scores_depend_only_on_the_offset():
    q, k = randn(1, 16), randn(1, 16, seed=1)
    length = 40
    queries = apply_rope(q.expand(length, 16))  # the same q at every position m
    keys = apply_rope(k.expand(length, 16))  # the same k at every position n
    scores = queries @ keys.T  # scores[m, n]
    for offset in (-5, 0, 3, 17):
        diagonal = torch.diagonal(scores, offset=-offset)  # all (m, n) with m − n = offset
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-9)


def test_rope_is_not_the_half_split_layout():
    x = randn(4, 8)
    half = x.shape[-1] // 2
    halves = torch.cat([x[..., :half], x[..., half:]], dim=-1)
    neox = torch.view_as_real(
        torch.complex(halves[..., :half], halves[..., half:])
        * torch.polar(
            torch.ones(4, half, dtype=torch.float64),
            torch.arange(4, dtype=torch.float64)[:, None]
            * 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8),
        )
    )
    assert not torch.allclose(apply_rope(x), neox.permute(0, 2, 1).reshape(4, 8))


@pytest.mark.parametrize(
    ("x", "kwargs", "message"),
    [
        (torch.randn(3, 5), {}, "even feature size d"),
        (torch.randn(3, 4), {"positions": torch.arange(4)}, "positions must have shape (n=3,)"),
        (torch.arange(12).reshape(3, 4), {}, "floating-point"),
        (torch.randn(3, 4), {"base": 1.0}, "base must be a number > 1"),
    ],
)
def test_rope_rejects_bad_input(x, kwargs, message):
    with pytest.raises(
        (TypeError, ValueError), match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        apply_rope(x, **kwargs)


# --------------------------------------------------------------------------------------------
# ALiBi


def test_alibi_slopes_are_the_geometric_sequence():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0**-h for h in range(1, 9)]))
    assert torch.allclose(alibi_slopes(4), torch.tensor([2.0 ** (-8 * h / 4) for h in range(1, 5)]))
    assert alibi_slopes(1).tolist() == [2.0**-8]


@pytest.mark.parametrize(("heads", "n_q", "n_k"), [(4, 5, 5), (3, 2, 7), (1, 6, 1)])
def test_alibi_bias_is_the_formula(heads, n_q, n_k):
    bias = alibi_bias(heads, n_q, n_k)
    assert bias.shape == (heads, n_q, n_k) and bias.dtype == torch.float32
    for h in range(heads):
        slope = 2.0 ** (-8 * (h + 1) / heads)
        for i in range(n_q):
            for j in range(n_k):
                assert math.isclose(bias[h, i, j].item(), -slope * (i - j), rel_tol=1e-6)


def test_alibi_rejects_bad_counts():
    with pytest.raises(ValueError, match="num_heads must be a positive int"):
        alibi_slopes(0)
    with pytest.raises(ValueError, match="n_k must be a positive int"):
        alibi_bias(2, 3, 0)


# --------------------------------------------------------------------------------------------
# Grouped-query attention


@pytest.mark.parametrize(("heads", "groups"), [(4, 4), (4, 2), (6, 1), (8, 2)])
@pytest.mark.parametrize("causal", [False, True])
def test_gqa_equals_torch_sdpa_with_enable_gqa(heads, groups, causal):
    q = randn(2, heads, 5, 8)
    k, v = randn(2, groups, 7, 8, seed=1), randn(2, groups, 7, 3, seed=2)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    assert torch.allclose(grouped_query_attention(q, k, v, causal=causal), expected, atol=1e-12)


def test_gqa_with_a_bool_mask_equals_torch():
    q, k, v = randn(2, 6, 4, 8), randn(2, 3, 6, 8, seed=1), randn(2, 3, 6, 8, seed=2)
    mask = randn(2, 1, 4, 6, seed=3) > 0
    mask[..., 0] = True  # no fully masked row (torch gives NaN there, the course zeros)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    assert torch.allclose(grouped_query_attention(q, k, v, mask), expected, atol=1e-12)


def test_gqa_is_multi_head_attention_on_repeated_key_value_heads():
    q, k, v = randn(1, 4, 3, 2), randn(1, 2, 3, 2, seed=1), randn(1, 2, 3, 2, seed=2)
    # query heads 0, 1 use key/value head 0; heads 2, 3 use head 1 (repeat_interleave, not repeat)
    expected, _ = scaled_dot_product_attention(q, k[:, [0, 0, 1, 1]], v[:, [0, 0, 1, 1]])
    assert torch.allclose(grouped_query_attention(q, k, v), expected, atol=1e-12)


def test_gqa_rejects_bad_input():
    q, k = randn(1, 6, 3, 4), randn(1, 4, 3, 4)
    with pytest.raises(ValueError, match="G=4 does not divide H=6"):
        grouped_query_attention(q, k, k)
    with pytest.raises(ValueError, match="k has d=5 but q has d=4"):
        grouped_query_attention(q, randn(1, 2, 3, 5), randn(1, 2, 3, 5))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        grouped_query_attention(q, k[:, :2], k[:, :2], mask=torch.zeros(3, 3))


def test_kv_cache_of_grouped_heads_shrinks_by_h_over_g():
    heads, head_dim, length = 8, 16, 10
    sizes = {}
    for groups in (8, 4, 2, 1):
        cache = KVCache(layers=2)
        for layer in range(2):
            cache.append(
                layer, randn(1, groups, length, head_dim), randn(1, groups, length, head_dim)
            )
        sizes[groups] = cache.nbytes()
    assert all(sizes[heads] == sizes[groups] * heads // groups for groups in sizes)


def test_mean_pool_heads():
    weight = randn(4 * 3, 5)  # 4 heads of d_h = 3
    assert torch.equal(mean_pool_heads(weight, 4, 4), weight)
    heads = weight.reshape(4, 3, 5)
    assert torch.allclose(mean_pool_heads(weight, 4, 1), heads.mean(0))
    pooled = mean_pool_heads(weight, 4, 2).reshape(2, 3, 5)
    assert torch.allclose(pooled[0], (heads[0] + heads[1]) / 2)
    assert torch.allclose(pooled[1], (heads[2] + heads[3]) / 2)
    with pytest.raises(ValueError, match="num_groups=3 does not divide num_heads=4"):
        mean_pool_heads(weight, 4, 3)


# --------------------------------------------------------------------------------------------
# Sliding window


@pytest.mark.parametrize(("n", "window"), [(1, 1), (6, 1), (6, 3), (7, 7), (5, 20)])
def test_sliding_window_mask_is_the_band(n, window):
    expected = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            expected[i, j] = i - window < j <= i
    assert torch.equal(sliding_window_mask(n, window), expected)


def test_sliding_window_mask_extremes():
    assert torch.equal(sliding_window_mask(5, 5), causal_mask(5))
    assert torch.equal(sliding_window_mask(5, 1), torch.eye(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="window must be a positive int"):
        sliding_window_mask(5, 0)


@pytest.mark.parametrize(
    ("n", "window", "block"), [(37, 5, 8), (64, 64, 16), (100, 1, 16), (50, 200, 7), (33, 17, 32)]
)
def test_banded_flash_attention_equals_masked_attention(n, window, block):
    q, k, v = randn(2, 3, n, 8), randn(2, 3, n, 8, seed=1), randn(2, 3, n, 5, seed=2)
    expected, _ = scaled_dot_product_attention(q, k, v, sliding_window_mask(n, window))
    assert torch.allclose(banded_flash_attention(q, k, v, window, block), expected, atol=1e-12)


def test_banded_flash_attention_float32_and_float16():
    q, k, v = (randn(1, 2, 40, 8, dtype=torch.float32, seed=seed) for seed in range(3))
    expected, _ = scaled_dot_product_attention(q, k, v, sliding_window_mask(40, 9))
    assert torch.allclose(banded_flash_attention(q, k, v, 9, 16), expected, atol=1e-5)
    half = banded_flash_attention(q.half(), k.half(), v.half(), 9, 16)
    assert half.dtype == torch.float16
    assert torch.allclose(half.float(), expected, atol=3e-3)


def test_band_tiles_classify_like_the_mask():
    n, window, block = 48, 11, 8
    mask = sliding_window_mask(n, window)
    for q_start in range(0, n, block):
        needed = set(band_key_blocks(q_start, q_start + block, block, window))
        for k_index, k_start in enumerate(range(0, n, block)):
            tile = mask[q_start : q_start + block, k_start : k_start + block]
            kind = band_tile_kind(q_start, q_start + block, k_start, k_start + block, window)
            expected = TILE_SKIP if not tile.any() else TILE_FULL if tile.all() else TILE_PARTIAL
            assert kind == expected
            assert (k_index in needed) == (kind != TILE_SKIP)


def test_band_visits_a_number_of_tiles_independent_of_n():
    for n in (256, 1024, 4096):
        visited = [len(band_key_blocks(q, q + 64, 64, 100)) for q in range(0, n, 64)]
        assert max(visited) == math.ceil(99 / 64) + 1


def test_merge_tile_folds_tiles_into_the_softmax_of_their_concatenation():
    scores, values = randn(3, 10), randn(10, 4)
    scores[1, 6:] = -math.inf  # a row the second tile hides entirely
    state = merge_tile((None, None, None), scores[:, :6], values[:6])
    row_max, row_sum, acc = merge_tile(state, scores[:, 6:], values[6:])
    assert torch.allclose(row_max[:, 0], scores.amax(dim=-1))  # m
    assert torch.allclose(acc / row_sum, torch.softmax(scores, dim=-1) @ values)  # O = acc / l


def test_banded_flash_attention_rejects_bad_input():
    q = randn(1, 4, 8)
    with pytest.raises(ValueError, match="window must be a positive int"):
        banded_flash_attention(q, q, q, 0)
    with pytest.raises(ValueError, match="same length n"):
        banded_flash_attention(q, randn(1, 5, 8), randn(1, 5, 8), 2)


def test_rope_angles_are_made_on_the_positions_device():
    """A CUDA decoder passes CUDA positions; the frequencies must follow them (here: the meta device)."""
    from course_utils.rotary import rope_angles

    angles = rope_angles(torch.arange(4, device="meta"), 8)
    assert angles.device.type == "meta" and angles.shape == (4, 4)
