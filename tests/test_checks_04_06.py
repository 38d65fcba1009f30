"""The check cells of notebooks 04-06: right answers pass, classic mistakes get named.

Also drives the MaskExplorer widget of notebook 05 without a browser.
"""

from __future__ import annotations

import contextlib
import io
import math

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils.attention import (
    causal_mask,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
    split_heads,
)
from course_utils.checks import CheckFailed, check


def _passes(name, function):
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        check(name, function)  # raises CheckFailed on a wrong answer
    return f"✔ {name}: passed" in output.getvalue()


def _fails_with(name, function, pattern):
    with pytest.raises(CheckFailed, match=pattern):
        check(name, function)


def _not_implemented(*args, **kwargs):
    raise NotImplementedError("a hint")


# --------------------------------------------------------------------------------------------
# 04 self-attention


def _attention(queries, keys, values, dim=-1, scale=None, transpose=lambda t: t.transpose(-2, -1)):
    d = queries.shape[-1]
    scores = queries @ transpose(keys) * (1 / math.sqrt(d) if scale is None else scale)
    weights = torch.softmax(scores, dim=dim)
    return weights @ values, weights


@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")
def test_ex4_1_scaled_dot_product():
    assert _passes("ex4_1_scaled_dot_product", _attention)
    name = "ex4_1_scaled_dot_product"
    _fails_with(name, _not_implemented, "not implemented yet.*a hint")
    _fails_with(name, lambda q, k, v: _attention(q, k, v, dim=-2), "softmax over the query axis")
    _fails_with(name, lambda q, k, v: _attention(q, k, v, scale=1.0), "forgot to scale")
    _fails_with(name, lambda q, k, v: _attention(q, k, v, scale=1 / q.shape[-1]), "by d instead")
    _fails_with(
        name, lambda q, k, v: _attention(q, k, v, scale=math.sqrt(q.shape[-1])), "multiplied"
    )
    _fails_with(name, lambda q, k, v: _attention(q, k, v, scale=1 / math.sqrt(v.shape[-1])), "√d_v")
    _fails_with(name, lambda q, k, v: _attention(q, k, v, transpose=lambda t: t.T), "not keys.T")
    _fails_with(name, lambda q, k, v: _attention(q, k, v)[1], "return the pair")

    def keys_first(queries, keys, values):
        weights = torch.softmax(keys @ queries.transpose(-2, -1) / math.sqrt(8), dim=-1)
        return weights, weights

    _fails_with(name, keys_first, r"shape \(keys, queries\)")


def _self_attention(x, query_weight, key_weight, value_weight):
    return scaled_dot_product_attention(x @ query_weight, x @ key_weight, x @ value_weight)


def test_ex4_2_self_attention():
    name = "ex4_2_self_attention"
    assert _passes(name, _self_attention)
    _fails_with(
        name, lambda x, wq, wk, wv: _self_attention(x, wk, wq, wv), "weights are transposed"
    )
    _fails_with(
        name,
        lambda x, wq, wk, wv: scaled_dot_product_attention(x @ wq, x @ wk, x),
        "attended over x itself",
    )
    _fails_with(
        name,
        lambda x, wq, wk, wv: _attention(x @ wq, x @ wk, x @ wv, scale=1 / math.sqrt(x.shape[-1])),
        "√d_model",
    )
    _fails_with(
        name, lambda x, wq, wk, wv: _self_attention(x, wq.T, wk.T, wv.T), "raised RuntimeError"
    )


def test_ex4_3_sinusoidal_encoding():
    name = "ex4_3_sinusoidal_encoding"
    assert _passes(name, sinusoidal_positional_encoding)
    assert _passes(name, lambda n, d: sinusoidal_positional_encoding(n, d, dtype=torch.float64))

    def halves(n, d):
        encoding = sinusoidal_positional_encoding(n, d)
        return torch.cat([encoding[:, 0::2], encoding[:, 1::2]], dim=1)

    def swapped(n, d):
        encoding = sinusoidal_positional_encoding(n, d)
        return encoding.view(n, d // 2, 2).flip(-1).reshape(n, d)

    def from_one(n, d):
        return sinusoidal_positional_encoding(n + 1, d)[1:]

    _fails_with(name, halves, r"two halves \[sin \| cos\]")
    _fails_with(name, swapped, "sin and cos are swapped")
    _fails_with(name, from_one, "positions start at 1")
    _fails_with(name, _i_over_d, "not i/d")
    _fails_with(name, lambda n, d: torch.zeros(n, d), "values differ")
    _fails_with(name, lambda n, d: torch.zeros(d, n), r"shape \(7, 10\)")


def _i_over_d(n, d):
    positions = torch.arange(n, dtype=torch.float64)[:, None]
    angles = positions / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / d)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(n, d)


# --------------------------------------------------------------------------------------------
# 05 masking


def test_ex5_1_causal_mask():
    name = "ex5_1_causal_mask"
    assert _passes(name, causal_mask)
    _fails_with(name, lambda n: ~causal_mask(n), "mask meaning inverted")
    _fails_with(name, lambda n: causal_mask(n).T, "upper triangle")
    _fails_with(name, lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "diagonal is missing")
    _fails_with(name, lambda n: torch.ones(n, n).tril(), "should be a bool tensor")


def test_ex5_2_padding_mask():
    name = "ex5_2_padding_mask"
    assert _passes(name, padding_mask)
    _fails_with(name, lambda lengths, max_len: ~padding_mask(lengths, max_len), "inverted")
    _fails_with(
        name, lambda lengths, max_len: padding_mask(lengths, max_len).T, r"\(max_len, batch\)"
    )
    _fails_with(
        name,
        lambda lengths, max_len: torch.arange(max_len)[None] <= torch.as_tensor(lengths)[:, None],
        "off by one",
    )


def _masked_attention(queries, keys, values, mask, fill=float("-inf"), after=False, invert=False):
    if invert:
        mask = ~mask
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])
    if after:
        return _zero_after_softmax(scores, values, mask)
    weights = torch.softmax(scores.masked_fill(~mask, fill), dim=-1)
    return weights @ values, weights


def _zero_after_softmax(scores, values, mask):
    weights = torch.softmax(scores, dim=-1) * mask
    return weights @ values, weights


def test_ex5_3_masked_attention():
    name = "ex5_3_masked_attention"
    assert _passes(name, scaled_dot_product_attention)
    _fails_with(name, _masked_attention, "gives NaN")
    _fails_with(
        name, lambda q, k, v, m: _masked_attention(q, k, v, m, fill=-1e9), "uniform weights"
    )
    _fails_with(
        name,
        lambda q, k, v, m: _masked_attention(q, k, v, m, fill=torch.finfo(q.dtype).min),
        "uniform weights",
    )
    _fails_with(name, lambda q, k, v, m: _masked_attention(q, k, v, m, after=True), "renormalising")
    _fails_with(
        name, lambda q, k, v, m: scaled_dot_product_attention(q, k, v, ~m), "mask meaning inverted"
    )
    _fails_with(
        name,
        lambda q, k, v, m: scaled_dot_product_attention(q * math.sqrt(8), k, v, m),
        "forgot the 1/√d",
    )
    _fails_with(
        name, lambda q, k, v, m: scaled_dot_product_attention(q, k, v), "attending to padding"
    )


def test_ex5_4_combined_mask():
    name = "ex5_4_combined_mask"

    def combined(lengths, n):
        return causal_mask(n)[None] & padding_mask(lengths, n)[:, None, :]

    assert _passes(name, combined)
    _fails_with(
        name, lambda lengths, n: causal_mask(n)[None] | padding_mask(lengths, n)[:, None, :], "OR"
    )
    _fails_with(
        name,
        lambda lengths, n: causal_mask(n)[None] & padding_mask(lengths, n)[:, :, None],
        "applied to the queries",
    )
    _fails_with(
        name, lambda lengths, n: causal_mask(n).expand(len(lengths), n, n), "padding is missing"
    )
    _fails_with(
        name,
        lambda lengths, n: padding_mask(lengths, n)[:, None, :].expand(len(lengths), n, n),
        "causal part is missing",
    )
    _fails_with(name, lambda lengths, n: ~combined(lengths, n), "inverted")


# --------------------------------------------------------------------------------------------
# 06 multi-head


def test_ex6_1_split_heads():
    name = "ex6_1_split_heads"
    assert _passes(name, split_heads)
    _fails_with(name, lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), "wrong order")
    _fails_with(
        name, lambda x, h: x.reshape(x.shape[0], x.shape[1], h, -1), "transpose the position"
    )
    _fails_with(
        name,
        lambda x, h: x.reshape(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2),
        "consecutive features",
    )
    _fails_with(name, lambda x, h: split_heads(x, 2), "use the num_heads argument")


def test_ex6_2_merge_heads():
    name = "ex6_2_merge_heads"
    assert _passes(name, merge_heads)
    _fails_with(
        name,
        lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]),
        "transpose heads and positions first",
    )


def _multi_head(query, key, value, wq, wk, wv, wo, num_heads, mask=None, **mistakes):
    split = mistakes.get("split", split_heads)
    queries = split(query @ wq.T, num_heads) * mistakes.get("query_factor", 1.0)
    keys, values = split(key @ wk.T, num_heads), split(value @ wv.T, num_heads)
    if mistakes.get("invert_mask") and mask is not None:
        mask = ~mask
    heads, weights = scaled_dot_product_attention(queries, keys, values, mask)
    output = merge_heads(heads)
    if not mistakes.get("skip_output"):
        output = output @ wo.T
    return output, weights


def test_ex6_3_multi_head_attention():
    name = "ex6_3_multi_head_attention"
    assert _passes(name, _multi_head)

    def view_split(x, num_heads):
        return x.reshape(x.shape[0], num_heads, x.shape[1], -1)

    def no_transpose(q, k, v, wq, wk, wv, wo, h, mask=None):
        return _multi_head(q, k, v, wq.T, wk.T, wv.T, wo.T, h, mask)

    _fails_with(name, lambda *a: _multi_head(*a, split=view_split), "wrong order")
    _fails_with(name, lambda *a: _multi_head(*a, query_factor=math.sqrt(4 / 12)), "√embed_dim")
    _fails_with(name, lambda *a: _multi_head(*a, skip_output=True), "output projection is missing")
    _fails_with(name, lambda *a: _multi_head(*a, invert_mask=True), "invert the mask")
    _fails_with(name, no_transpose, "x @ W.T")
    _fails_with(
        name,
        lambda q, k, v, wq, wk, wv, wo, h, mask=None: _multi_head(q, k, v, wq, wk, wv, wo, h),
        "mask is ignored",
    )

    def averaged(*args):
        output, weights = _multi_head(*args)
        return output, weights.mean(dim=1)

    _fails_with(name, averaged, "do not average")


# --------------------------------------------------------------------------------------------
# MaskExplorer (notebook 05)


def test_mask_explorer_follows_its_controls():
    from course_utils.widgets import MaskExplorer

    explorer = MaskExplorer(length=6, real_length=4, kind="causal + padding")
    assert explorer.redraws == 1
    assert torch.equal(explorer.current_mask, causal_mask(6) & padding_mask([4], 6).expand(6, 6))
    assert torch.allclose(explorer.current_weights.sum(dim=-1), torch.ones(6))

    explorer.kind_selector.value = "causal"
    assert explorer.redraws == 2
    assert torch.equal(explorer.current_mask, causal_mask(6))

    explorer.kind_selector.value = "padding"
    explorer.real_length_slider.value = 0  # no real token: every row fully masked
    assert explorer.redraws == 4
    assert (explorer.current_weights == 0).all() and not torch.isnan(explorer.current_weights).any()

    explorer.real_length_slider.value = 5
    explorer.length_slider.value = 3  # shrinking n clamps the real-token count to 3
    assert explorer.real_length_slider.value == 3 and explorer.real_length_slider.max == 3
    assert explorer.current_mask.shape == (3, 3) and explorer.current_mask.all()
    assert explorer.redraws >= 6
    weights = explorer.current_weights
    assert torch.allclose(weights, torch.softmax(explorer.scores[:3, :3], dim=-1))
    plt.close("all")


def test_mask_explorer_rejects_bad_arguments():
    from course_utils.widgets import MaskExplorer

    with pytest.raises(ValueError, match="kind must be one of"):
        MaskExplorer(kind="future")
    with pytest.raises(ValueError, match=r"real_length must be an int in \[0, length=3\], got 5"):
        MaskExplorer(length=3, real_length=5)
    with pytest.raises(ValueError, match=r"length must be an int in \[1, 12\], got 13"):
        MaskExplorer(length=13)
