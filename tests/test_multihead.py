"""split_heads / merge_heads and MultiHeadAttention against torch.nn.MultiheadAttention."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from course_utils.attention import (
    MultiHeadAttention,
    causal_mask,
    merge_heads,
    padding_mask,
    split_heads,
)
from course_utils.multihead import multi_head_attention_cost

TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}


# --------------------------------------------------------------------------------------------
# split_heads / merge_heads


@pytest.mark.parametrize(
    ("shape", "num_heads"), [((2, 3, 8), 2), ((2, 3, 8), 4), ((5, 12), 3), ((2, 2, 7, 6), 6)]
)
def test_split_heads_is_view_then_transpose(shape, num_heads):
    x = torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)
    *leading, length, embed_dim = shape
    heads = split_heads(x, num_heads)
    head_dim = embed_dim // num_heads
    assert heads.shape == (*leading, num_heads, length, head_dim)
    for head in range(num_heads):
        # head h holds features h·d_h … (h+1)·d_h - 1 of every position
        expected = x[..., head * head_dim : (head + 1) * head_dim]
        assert torch.equal(heads[..., head, :, :], expected)
    assert torch.equal(merge_heads(heads), x)


def test_split_heads_differs_from_the_wrong_view():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    wrong = x.view(2, 2, 3, 4)  # right shape, positions mixed into heads
    assert not torch.equal(split_heads(x, 2), wrong)
    assert torch.equal(split_heads(x, 2), x.view(2, 3, 2, 4).transpose(1, 2))


def test_merge_heads_inverts_split_heads_and_concatenates_heads():
    heads = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    merged = merge_heads(heads)
    assert merged.shape == (2, 4, 15)
    assert torch.equal(merged[:, :, 5:10], heads[:, 1])
    assert torch.equal(split_heads(merged, 3), heads)


def test_split_and_merge_bad_input():
    with pytest.raises(ValueError, match=r"num_heads=3 does not divide embed_dim=8"):
        split_heads(torch.randn(2, 4, 8), 3)
    with pytest.raises(ValueError, match=r"num_heads must be a positive int, got 0"):
        split_heads(torch.randn(2, 4, 8), 0)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., n, embed_dim\), got \(8,\)"):
        split_heads(torch.randn(8), 2)
    with pytest.raises(ValueError, match=r"got \(4, 8\)"):
        merge_heads(torch.randn(4, 8))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        split_heads([[1.0, 2.0]], 1)


# --------------------------------------------------------------------------------------------
# MultiHeadAttention == torch.nn.MultiheadAttention(batch_first=True) with copied weights

# (batch, n queries, m keys, embed_dim, num_heads)
CONFIGS = [(1, 1, 1, 4, 1), (2, 5, 5, 16, 4), (3, 7, 4, 24, 3), (2, 9, 9, 32, 8), (1, 6, 11, 6, 6)]
CONFIG_IDS = ["1x1", "self-5", "cross-7x4", "self-9-8heads", "cross-head_dim-1"]


def _torch_module(embed_dim, num_heads, bias, dtype, seed):
    torch.manual_seed(seed)
    module = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=True, dtype=dtype)
    if bias:  # torch initialises biases to zero; random ones make the copy test meaningful
        with torch.no_grad():
            module.in_proj_bias.normal_()
            module.out_proj.bias.normal_()
    return module.eval()


def _inputs(batch, n, m, embed_dim, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, n, embed_dim, generator=generator, dtype=dtype)
    key = torch.randn(batch, m, embed_dim, generator=generator, dtype=dtype)
    value = torch.randn(batch, m, embed_dim, generator=generator, dtype=dtype)
    return query, key, value


def _masks(batch, n, m, num_heads, seed):
    """(name, our mask True = may attend, torch kwargs with True = ignore), no fully masked rows."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, m + 1, (batch,), generator=generator)
    keys_real = padding_mask(lengths, m)  # (B, m)
    allowed = torch.ones(n, m, dtype=torch.bool).tril(diagonal=max(m - n, 0))  # causal-like
    per_head = torch.rand(batch, num_heads, n, m, generator=generator) < 0.7
    per_head[..., 0] = True
    yield "none", None, {}
    yield "key_padding", keys_real[:, None, None, :], {"key_padding_mask": ~keys_real}
    yield "attn_mask", allowed, {"attn_mask": ~allowed}
    combined = allowed & keys_real[:, None, None, :]
    if combined.any(dim=-1).all():
        yield "both", combined, {"attn_mask": ~allowed, "key_padding_mask": ~keys_real}
    yield (
        "per_head_3d",
        per_head,
        {"attn_mask": ~per_head.reshape(batch * num_heads, n, m)},
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("batch", "n", "m", "embed_dim", "num_heads"), CONFIGS, ids=CONFIG_IDS)
def test_equals_torch_multihead_attention(batch, n, m, embed_dim, num_heads, bias, dtype):
    torch_module = _torch_module(embed_dim, num_heads, bias, dtype, seed=embed_dim + n)
    module = MultiHeadAttention.from_torch(torch_module)
    assert module.query_projection.weight.dtype == dtype
    query, key, value = _inputs(batch, n, m, embed_dim, dtype, seed=n * m)
    for name, mask, torch_masks in _masks(batch, n, m, num_heads, seed=embed_dim):
        with torch.no_grad():
            expected, expected_weights = torch_module(
                query, key, value, average_attn_weights=False, **torch_masks
            )
            without_weights, _ = torch_module(query, key, value, need_weights=False, **torch_masks)
            output, weights = module(query, key, value, mask=mask)
        assert weights.shape == (batch, num_heads, n, m), name
        assert torch.allclose(output, expected, atol=TOLERANCE[dtype], rtol=0), name
        assert torch.allclose(output, without_weights, atol=TOLERANCE[dtype], rtol=0), name
        assert torch.allclose(weights, expected_weights, atol=TOLERANCE[dtype], rtol=0), name


def test_self_attention_fast_path_and_gradients_match_torch():
    torch_module = _torch_module(16, 4, True, torch.float32, seed=1)
    module = MultiHeadAttention.from_torch(torch_module)
    x = torch.randn(3, 6, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # eval + no_grad + self-attention: torch may take its fused fast path
        expected, _ = torch_module(x, x, x, need_weights=False)
        output, _ = module(x, x, x)
    assert torch.allclose(output, expected, atol=1e-6, rtol=0)

    torch_input, our_input = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    torch_module(torch_input, torch_input, torch_input)[0].square().sum().backward()
    module(our_input, our_input, our_input)[0].square().sum().backward()
    assert torch.allclose(our_input.grad, torch_input.grad, atol=1e-5, rtol=0)
    assert torch.allclose(
        module.query_projection.weight.grad, torch_module.in_proj_weight.grad[:16], atol=1e-5
    )


def test_unbatched_and_sequence_first_modules():
    torch_module = _torch_module(8, 2, True, torch.float64, seed=2)
    torch_module.batch_first = False
    module = MultiHeadAttention.from_torch(torch_module)
    query, key, value = _inputs(3, 4, 5, 8, torch.float64, seed=2)
    with torch.no_grad():
        # a (n, B, E) torch module and our (B, n, E) copy compute the same thing
        expected, _ = torch_module(
            query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        )
        output, _ = module(query, key, value)
        unbatched_expected, unbatched_weights = torch_module(
            query[0], key[0], value[0], average_attn_weights=False
        )
        unbatched, weights = module(query[0], key[0], value[0])
    assert torch.allclose(output, expected.transpose(0, 1), atol=1e-12)
    assert torch.allclose(unbatched, unbatched_expected, atol=1e-12)
    assert weights.shape == (2, 4, 5) and torch.allclose(weights, unbatched_weights, atol=1e-12)


def test_fully_masked_query_gives_output_bias_where_torch_gives_nan():
    torch_module = _torch_module(8, 2, True, torch.float32, seed=3)
    module = MultiHeadAttention.from_torch(torch_module)
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(3))
    keys_real = padding_mask([4, 0], 4)  # sequence 1 has no real token at all
    with torch.no_grad():
        output, weights = module(x, x, x, mask=keys_real[:, None, None, :])
        torch_output, _ = torch_module(x, x, x, key_padding_mask=~keys_real)
    assert (weights[1] == 0).all()
    assert torch.allclose(output[1], module.output_projection.bias.expand(4, 8))
    assert torch.isnan(torch_output[1]).all()
    assert torch.allclose(output[0], torch_output[0], atol=1e-6)


def test_fp16_matches_fp32_within_half_precision():
    torch_module = _torch_module(16, 4, True, torch.float32, seed=4)
    module = MultiHeadAttention.from_torch(torch_module)
    query, key, value = _inputs(2, 5, 5, 16, torch.float32, seed=4)
    with torch.no_grad():
        expected, _ = module(query, key, value, mask=causal_mask(5))
        half_output, half_weights = module.half()(
            query.half(), key.half(), value.half(), mask=causal_mask(5)
        )
    assert half_output.dtype == torch.float16 and half_weights.dtype == torch.float16
    assert torch.allclose(half_output.float(), expected, atol=2e-2, rtol=0)


def test_parameters_match_torch_count():
    for bias in (True, False):
        ours = MultiHeadAttention(24, 4, bias=bias)
        theirs = nn.MultiheadAttention(24, 4, bias=bias)
        assert sum(p.numel() for p in ours.parameters()) == sum(
            p.numel() for p in theirs.parameters()
        )
    assert "head_dim=6" in repr(MultiHeadAttention(24, 4))


# --------------------------------------------------------------------------------------------
# Bad input


def test_num_heads_must_divide_embed_dim():
    with pytest.raises(
        ValueError, match=r"num_heads=5 does not divide embed_dim=12.*\[1, 2, 3, 4, 6, 12\]"
    ):
        MultiHeadAttention(12, 5)
    with pytest.raises(ValueError, match="embed_dim must be a positive int, got 0"):
        MultiHeadAttention(0, 1)


def test_inputs_of_the_wrong_shape_are_named():
    module = MultiHeadAttention(8, 2)
    x = torch.randn(2, 3, 8)
    with pytest.raises(
        ValueError, match=r"query must have shape \(\.\.\., n, embed_dim=8\), got \(2, 3, 6\)"
    ):
        module(torch.randn(2, 3, 6), x, x)
    with pytest.raises(
        ValueError,
        match=r"value has m=4 but key has m=3 \(key \(2, 3, 8\), value \(2, 4, 8\)\); "
        "key and value must have the same number of positions",
    ):
        module(x, x, torch.randn(2, 4, 8))
    with pytest.raises(
        ValueError,
        match=r"mask of shape \(2, 3\) does not broadcast to the attention weights of shape \(2, 2, 3, 3\)",
    ):
        module(x, x, x, mask=torch.ones(2, 3, dtype=torch.bool))  # a (B, m) mask, not expanded
    with pytest.raises(TypeError, match="mask must be a bool tensor with True = may attend"):
        module(x, x, x, mask=torch.zeros(3, 3))


def test_from_torch_rejects_what_it_cannot_copy():
    with pytest.raises(ValueError, match=r"kdim=4, vdim=4 but embed_dim=8"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, kdim=4, vdim=4))
    with pytest.raises(ValueError, match="add_bias_kv or add_zero_attn"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))
    with pytest.raises(TypeError, match="must be a torch.nn.MultiheadAttention, got Linear"):
        MultiHeadAttention.from_torch(nn.Linear(8, 8))


# --------------------------------------------------------------------------------------------
# Cost model == torch's FLOP counter


@pytest.mark.parametrize(
    ("batch", "n", "m", "embed_dim", "num_heads"), [(1, 16, 16, 8, 2), (2, 32, 8, 16, 4)]
)
def test_flop_count_matches_torch_flop_counter(batch, n, m, embed_dim, num_heads):
    module = MultiHeadAttention(embed_dim, num_heads)
    query, key, value = _inputs(batch, n, m, embed_dim, torch.float32, seed=5)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        _, weights = module(query, key, value)
    cost = multi_head_attention_cost(batch, n, m, embed_dim, num_heads)
    assert counter.get_total_flops() == cost["total_flops"]
    assert weights.numel() * weights.element_size() == cost["weights_bytes"]


def test_cost_grows_quadratically_with_length():
    short = multi_head_attention_cost(1, 512, 512, 64, 4)
    long = multi_head_attention_cost(1, 1024, 1024, 64, 4)
    assert long["score_flops"] == 4 * short["score_flops"]
    assert long["weights_bytes"] == 4 * short["weights_bytes"]
    assert long["projection_flops"] == 2 * short["projection_flops"]
    with pytest.raises(ValueError, match="num_heads=3 does not divide embed_dim=64"):
        multi_head_attention_cost(1, 8, 8, 64, 3)
