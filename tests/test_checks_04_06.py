"""check() for notebooks 04–06, fed the code a learner would write (never the course's reference).

tests/test_exercise_specs.py already feeds every named mistake of each spec to check() and the grader;
this file writes the same mistakes the way a learner would (`keys.T`, `-1e9`, `view(B, H, n, d_h)`...)
and asserts that check() names them, plus what is not a named mistake: unimplemented stubs, a missing
tuple, a wrong shape or dtype, forbidden shortcuts. Also drives the MaskExplorer widget of notebook 05.
"""

from __future__ import annotations

import contextlib
import io
import math

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

import course_utils.attention as reference
from course_utils.attention import causal_mask, padding_mask
from course_utils.checks import CheckFailed, check
from course_utils.exercises import all_exercises
from course_utils.feedback.spec import visible_seed
from course_utils.positional import positional_frequencies
from course_utils.softmax import masked_softmax


def _passes(name, function):
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        check(name, function)  # raises CheckFailed on a wrong answer
    return f"✔ {name}: passed all" in output.getvalue()


def _fails_with(name, function, pattern):
    with pytest.raises(CheckFailed, match=pattern) as failure:
        check(name, function)
    assert "\n" not in str(failure.value), "a check failure must be one line"


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
    name = "ex4_1_scaled_dot_product"
    assert _passes(name, _attention)
    _fails_with(name, _not_implemented, "not implemented yet.*a hint")
    _fails_with(name, lambda q, k, v: _attention(q, k, v, dim=-2), "softmax over the query axis")
    _fails_with(name, lambda q, k, v: _attention(q, k, v, scale=1.0), "unscaled scores")
    _fails_with(name, lambda q, k, v: _attention(q, k, v, scale=1 / q.shape[-1]), "by d instead")
    _fails_with(
        name, lambda q, k, v: _attention(q, k, v, scale=math.sqrt(q.shape[-1])), "multiplying"
    )
    _fails_with(name, lambda q, k, v: _attention(q, k, v, scale=1 / math.sqrt(v.shape[-1])), "√d_v")
    _fails_with(name, lambda q, k, v: _attention(q, k, v, transpose=lambda t: t.T), "keys.T")
    _fails_with(name, lambda q, k, v: _attention(q, k, v)[1], r"tuple \(output, weights\)")
    _fails_with(name, lambda q, k, v: _attention(q, k, v)[::-1], r"\(weights, output\)")

    def keys_first(queries, keys, values):
        weights = torch.softmax(keys @ queries.transpose(-2, -1) / math.sqrt(8), dim=-1)
        return weights @ values, weights

    _fails_with(name, keys_first, r"keys @ queriesᵀ")
    _fails_with(
        name,
        lambda q, k, v: (F.scaled_dot_product_attention(q, k, v), None),
        "calls torch.nn.functional.scaled_dot_product_attention, which does this exercise for you",
    )


def _self_attention(x, query_weight, key_weight, value_weight):
    return reference.scaled_dot_product_attention(
        x @ query_weight, x @ key_weight, x @ value_weight
    )


def test_ex4_2_self_attention():
    name = "ex4_2_self_attention"
    assert _passes(name, _self_attention)
    _fails_with(name, lambda x, wq, wk, wv: _self_attention(x, wk, wq, wv), "come out transposed")
    _fails_with(
        name,
        lambda x, wq, wk, wv: reference.scaled_dot_product_attention(x @ wq, x @ wk, x),
        "attending over x itself",
    )
    _fails_with(
        name,
        lambda x, wq, wk, wv: _attention(x @ wq, x @ wk, x @ wv, scale=1 / math.sqrt(x.shape[-1])),
        "√d_model",
    )
    _fails_with(
        name,
        lambda x, wq, wk, wv: _self_attention(x, wq.T, wk.T, wv.T),
        r"raised RuntimeError.*it matches x @ W.T",
    )


def _sinusoidal(n, d, dtype=torch.float32):
    positions = torch.arange(n, dtype=torch.float64)[:, None]
    angles = positions / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    encoding = torch.zeros(n, d, dtype=torch.float64)
    encoding[:, 0::2], encoding[:, 1::2] = torch.sin(angles), torch.cos(angles)
    return encoding.to(dtype)


def test_ex4_3_sinusoidal_encoding():
    name = "ex4_3_sinusoidal_encoding"
    assert _passes(name, _sinusoidal)
    assert _passes(name, lambda n, d: _sinusoidal(n, d, torch.float64))

    def halves(n, d):
        encoding = _sinusoidal(n, d)
        return torch.cat([encoding[:, 0::2], encoding[:, 1::2]], dim=1)

    def swapped(n, d):
        return _sinusoidal(n, d).view(n, d // 2, 2).flip(-1).reshape(n, d)

    def from_one(n, d):
        return _sinusoidal(n + 1, d)[1:]

    def i_over_d(n, d):
        positions = torch.arange(n, dtype=torch.float64)[:, None]
        angles = positions / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / d)
        return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(n, d)

    _fails_with(name, halves, r"two halves \[sin \| cos\]")
    _fails_with(name, swapped, "sin and cos swapped")
    _fails_with(name, from_one, "positions starting at 1")
    _fails_with(name, i_over_d, "the exponent i/d")
    _fails_with(name, lambda n, d: torch.zeros(n, d), "values differ")
    n, d = all_exercises()[name].draw_cases(visible_seed(name))[0].args  # the first visible case
    _fails_with(name, lambda n, d: torch.zeros(d, n), rf"shape \({d}, {n}\), expected \({n}, {d}\)")
    _fails_with(
        name,
        lambda n, d: torch.sin(torch.arange(n)[:, None] * positional_frequencies(d)),
        "calls course_utils.positional.positional_frequencies",
    )


# --------------------------------------------------------------------------------------------
# 05 masking


def _causal(n):
    return torch.arange(n)[None, :] <= torch.arange(n)[:, None]


def test_ex5_1_causal_mask():
    name = "ex5_1_causal_mask"
    assert _passes(name, _causal)
    _fails_with(name, lambda n: ~_causal(n), "inverted mask")
    _fails_with(name, lambda n: _causal(n).T, "upper triangle")
    _fails_with(name, lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "without the diagonal")
    _fails_with(name, lambda n: torch.ones(n, n).tril(), "should be a bool tensor")
    _fails_with(name, lambda n: causal_mask(n), "calls course_utils.masks.causal_mask")


def _padding(lengths, max_len):
    return torch.arange(max_len)[None, :] < torch.as_tensor(lengths)[:, None]


def test_ex5_2_padding_mask():
    name = "ex5_2_padding_mask"
    assert _passes(name, _padding)
    _fails_with(name, lambda lengths, max_len: ~_padding(lengths, max_len), "inverted")
    _fails_with(name, lambda lengths, max_len: _padding(lengths, max_len).T, r"\(max_len, batch\)")
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
        weights = torch.softmax(scores, dim=-1) * mask
        return weights @ values, weights
    weights = torch.softmax(scores.masked_fill(~mask, fill), dim=-1)
    return weights @ values, weights


def _masked_attention_answer(queries, keys, values, mask):
    output, weights = _masked_attention(queries, keys, values, mask)
    has_key = mask.any(dim=-1, keepdim=True)
    weights = torch.where(has_key, weights, torch.zeros_like(weights))
    return weights @ values, weights


def test_ex5_3_masked_attention():
    name = "ex5_3_masked_attention"
    assert _passes(name, _masked_attention_answer)
    _fails_with(name, _masked_attention, "gives NaN|0/0 = NaN")
    _fails_with(
        name, lambda q, k, v, m: _masked_attention(q, k, v, m, fill=-1e9), "uniform weights"
    )
    _fails_with(
        name,
        lambda q, k, v, m: _masked_attention(q, k, v, m, fill=torch.finfo(q.dtype).min),
        "uniform weights",
    )
    _fails_with(name, lambda q, k, v, m: _masked_attention(q, k, v, m, after=True), "renormalising")
    _fails_with(name, lambda q, k, v, m: _masked_attention_answer(q, k, v, ~m), "inverted mask")
    _fails_with(
        name,
        lambda q, k, v, m: _masked_attention_answer(q * math.sqrt(q.shape[-1]), k, v, m),
        "unscaled scores",
    )
    _fails_with(
        name, lambda q, k, v, m: _attention(q, k, v), "ignoring the mask, attending to padding"
    )

    def with_course_masked_softmax(queries, keys, values, mask):
        weights = masked_softmax(queries @ keys.transpose(-2, -1) / math.sqrt(8), mask)
        return weights @ values, weights

    _fails_with(name, with_course_masked_softmax, "calls course_utils.softmax.masked_softmax")


def test_ex5_4_combined_mask():
    name = "ex5_4_combined_mask"

    def combined(lengths, n):
        return _causal(n)[None] & _padding(lengths, n)[:, None, :]

    assert _passes(name, combined)
    assert _passes(
        name, lambda lengths, n: causal_mask(n)[None] & padding_mask(lengths, n)[:, None]
    )
    _fails_with(name, lambda lengths, n: _causal(n)[None] | _padding(lengths, n)[:, None, :], "OR")
    _fails_with(
        name,
        lambda lengths, n: _causal(n)[None] & _padding(lengths, n)[:, :, None],
        "applying the padding to the queries",
    )
    _fails_with(
        name, lambda lengths, n: _causal(n).expand(len(lengths), n, n), "the causal mask alone"
    )
    _fails_with(
        name,
        lambda lengths, n: _padding(lengths, n)[:, None, :].expand(len(lengths), n, n),
        "the padding mask alone",
    )
    _fails_with(name, lambda lengths, n: ~combined(lengths, n), "inverted")


# --------------------------------------------------------------------------------------------
# 06 multi-head


def _split(x, num_heads):
    batch, length, embed_dim = x.shape
    return x.view(batch, length, num_heads, embed_dim // num_heads).transpose(1, 2)


def _merge(x):
    batch, num_heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, num_heads * head_dim)


def test_ex6_1_split_heads():
    name = "ex6_1_split_heads"
    assert _passes(name, _split)
    _fails_with(name, lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), "mixing positions")
    _fails_with(name, lambda x, h: x.reshape(x.shape[0], x.shape[1], h, -1), r"\(B, n, H, d_h\)")
    _fails_with(
        name,
        lambda x, h: x.reshape(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2),
        "consecutive features",
    )
    _fails_with(name, lambda x, h: _split(x, 2), "use the num_heads argument")
    _fails_with(
        name, lambda x, h: reference.split_heads(x, h), "calls course_utils.multihead.split_heads"
    )


def test_ex6_2_merge_heads():
    name = "ex6_2_merge_heads"
    assert _passes(name, _merge)
    _fails_with(
        name,
        lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]),
        "swap heads and positions first",
    )
    _fails_with(
        name,
        lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
        "interleaving the heads",
    )


def _multi_head(query, key, value, wq, wk, wv, wo, num_heads, mask=None, **mistakes):
    split = mistakes.get("split", reference.split_heads)
    queries = split(query @ wq.T, num_heads) * mistakes.get("query_factor", 1.0)
    keys, values = split(key @ wk.T, num_heads), split(value @ wv.T, num_heads)
    if mistakes.get("invert_mask") and mask is not None:
        mask = ~mask
    heads, weights = reference.scaled_dot_product_attention(queries, keys, values, mask)
    output = reference.merge_heads(heads)
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

    def scaled_by_embed_dim(q, k, v, wq, wk, wv, wo, h, mask=None):
        return _multi_head(q, k, v, wq, wk, wv, wo, h, mask, query_factor=math.sqrt(1 / h))

    _fails_with(name, lambda *a: _multi_head(*a, split=view_split), "view\\(B, H, n, d_h\\)")
    _fails_with(name, scaled_by_embed_dim, "√embed_dim")
    _fails_with(name, lambda *a: _multi_head(*a, skip_output=True), "output projection")
    _fails_with(name, lambda *a: _multi_head(*a, invert_mask=True), "inverted mask")
    _fails_with(name, no_transpose, "x @ W.T")
    _fails_with(
        name,
        lambda q, k, v, wq, wk, wv, wo, h, mask=None: _multi_head(q, k, v, wq, wk, wv, wo, h),
        "ignoring the mask",
    )

    def averaged(*args):
        output, weights = _multi_head(*args)
        return output, weights.mean(dim=1)

    _fails_with(name, averaged, "averaging the weights over heads")


# --------------------------------------------------------------------------------------------
# MaskExplorer (notebook 05)


def test_mask_explorer_follows_its_controls():
    from course_utils.display.widgets import MaskExplorer

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
    # all-zero weights still get the 0–1 colour scale of probabilities (not a "1e-12" colour bar)
    colour_bar = explorer.weights_image.colorbar
    assert explorer.weights_image.get_clim() == (0.0, 1.0)
    assert (colour_bar.vmin, colour_bar.vmax) == (0.0, 1.0)

    explorer.real_length_slider.value = 5
    explorer.length_slider.value = 3  # shrinking n clamps the real-token count to 3
    assert explorer.real_length_slider.value == 3 and explorer.real_length_slider.max == 3
    assert explorer.current_mask.shape == (3, 3) and explorer.current_mask.all()
    assert explorer.redraws >= 6
    weights = explorer.current_weights
    assert torch.allclose(weights, torch.softmax(explorer.scores[:3, :3], dim=-1))
    plt.close("all")


def test_mask_explorer_rejects_bad_arguments():
    from course_utils.display.widgets import MaskExplorer

    with pytest.raises(ValueError, match="kind must be one of"):
        MaskExplorer(kind="future")
    with pytest.raises(ValueError, match=r"real_length must be an int in \[0, length=3\], got 5"):
        MaskExplorer(length=3, real_length=5)
    with pytest.raises(ValueError, match=r"length must be an int in \[1, 12\], got 13"):
        MaskExplorer(length=13)
