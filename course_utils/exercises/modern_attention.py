"""Exercises of notebook 09 (attention in today's language models): RoPE, ALiBi, GQA, sliding windows."""

from __future__ import annotations

import torch

from course_utils.alibi import alibi_bias
from course_utils.dot_product import scaled_dot_product_attention
from course_utils.feedback.judge import close
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randint
from course_utils.grouped_query import grouped_query_attention
from course_utils.rotary import apply_rope
from course_utils.sliding_window import sliding_window_mask

NOTEBOOK = "09_modern_attention"


# --------------------------------------------------------------------------------------------------
# 9.1 rotary position embedding


def _rope_cases(generator: torch.Generator) -> list[Case]:
    def randn(*shape, dtype=torch.float64):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    start = randint(generator, 1, 40)
    gaps = torch.randint(1, 6, (6,), generator=generator)
    return [
        Case("x (5, 4), positions 0 … 4", (randn(5, 4), torch.arange(5))),
        Case(
            "x (2, 3, 6, 8) queries of 3 heads, positions 0 … 5",
            (randn(2, 3, 6, 8), torch.arange(6)),
        ),
        Case(
            "x (1, 2, 4, 16), four consecutive positions from a later start (a later chunk)",
            (randn(1, 2, 4, 16), torch.arange(start, start + 4)),
        ),
        Case("x (6, 6), increasing positions with gaps", (randn(6, 6), torch.cumsum(gaps, 0))),
        Case("x (3, 2), d = 2 (one pair), positions 0 … 2", (randn(3, 2), torch.arange(3))),
        Case(
            "x (2, 7, 12) float32, positions 0 … 6",
            (randn(2, 7, 12, dtype=torch.float32), torch.arange(7)),
        ),
    ]


@mistake(
    "it matches rotating the two halves (x[i], x[i + d/2]) together, the GPT-NeoX layout: this "
    "course (and the RoFormer paper) rotates adjacent pairs (x[2i], x[2i+1])"
)
def _rotated_halves(x, positions):
    d = x.shape[-1]
    if d == 2:
        return NOT_APPLICABLE  # one pair: both layouts agree
    adjacent = torch.cat([x[..., : d // 2, None], x[..., d // 2 :, None]], dim=-1).flatten(-2)
    rotated = apply_rope(adjacent, positions)
    return torch.cat([rotated[..., 0::2], rotated[..., 1::2]], dim=-1)


@mistake(
    "it matches the frequencies base^(-i/d) for pair i: the exponent is -2i/d (pair i holds "
    "features 2i and 2i+1), as in the sinusoidal encoding"
)
def _frequencies_without_two(x, positions):
    if x.shape[-1] == 2:
        return NOT_APPLICABLE  # pair 0 has frequency 1 either way
    return apply_rope(x, positions, base=100.0)  # 10000^(-i/d) = (10000^(1/2))^(-2i/d)


@mistake(
    "it matches rotating by -pos·θ: z·e^{iφ} turns (a, b) into (a cos φ - b sin φ, a sin φ + b cos φ)"
)
def _rotated_backwards(x, positions):
    return apply_rope(x, -positions)


@mistake("it matches positions 0 … n-1: use the positions argument, a later chunk starts elsewhere")
def _positions_ignored(x, positions):
    n = x.shape[-2]
    if torch.equal(positions, torch.arange(n)):
        return NOT_APPLICABLE
    return apply_rope(x, torch.arange(n))


@mistake(
    "it matches writing the rotated pairs back as two halves (every pair's first result, then "
    "every pair's second): pair i's two results go back where it came from, features 2i and 2i+1"
)
def _written_back_as_halves(x, positions):
    if x.shape[-1] == 2:
        return NOT_APPLICABLE  # one pair: both layouts agree
    rotated = apply_rope(x, positions)
    return torch.cat([rotated[..., 0::2], rotated[..., 1::2]], dim=-1)


APPLY_ROPE = Exercise(
    grade_id="ex9_1_apply_rope",
    notebook=NOTEBOOK,
    signature="apply_rope(x, positions)",
    docstring="""
        RoPE: rotate each adjacent pair (x[2i], x[2i+1]) of x by the angle positions[m] · θ_i.

        x (..., n, d) with d even; positions (n,) integers, the position of each of the n rows;
        θ_i is the frequency of pair i = 0 … d/2 - 1 (the formula above).
        Returns a tensor of x's shape and dtype.
        Forbidden (scores 0): apply_rope of course_utils.rotary (reference.apply_rope).
    """,
    hint=(
        "read each adjacent pair as a complex number x[2i] + i·x[2i+1] and multiply it by "
        "e^{i·pos·θ_i}: a rotation by an angle that grows with the position and shrinks with the pair index"
    ),
    code_hint=(
        "theta = 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d); "
        "angles = positions[:, None] * theta; even, odd = x[..., 0::2], x[..., 1::2]; "
        "out[..., 0::2] = even·cos − odd·sin, out[..., 1::2] = even·sin + odd·cos"
    ),
    reference=apply_rope,
    cases=_rope_cases,
    judge=close("rotated", atol=1e-4, rtol=1e-4),
    mistakes=(
        _rotated_halves,
        _frequencies_without_two,
        _rotated_backwards,
        _positions_ignored,
        _written_back_as_halves,
    ),
)

# --------------------------------------------------------------------------------------------------
# 9.2 ALiBi biases


def _alibi_cases(generator: torch.Generator) -> list[Case]:
    def heads() -> int:  # a number of heads other than 8
        drawn = randint(generator, 2, 16)
        return drawn if drawn != 8 else 16

    n, square, random_n = (
        randint(generator, 3, 8),
        randint(generator, 3, 12),
        randint(generator, 3, 12),
    )
    n_q, one_head = randint(generator, 2, 6), randint(generator, 2, 8)
    return [
        Case("8 heads (the paper's slopes 1/2 … 1/256), n_q = n_k", (8, n, n)),
        Case("a number of heads other than 8, n_q = n_k", (heads(), square, square)),
        Case("2 heads, n_q = n_k", (2, random_n, random_n)),
        Case("more keys than queries", (heads(), n_q, n_q + randint(generator, 1, 6))),
        Case("1 head, n_q = n_k", (1, one_head, one_head)),
        Case("a single key (n_k = 1)", (heads(), randint(generator, 2, 8), 1)),
    ]


@mistake(
    "it matches slopes 2^(-8h/H) for h = 0 … H-1: the heads are numbered h = 1 … H, so no slope is 1"
)
def _slopes_from_zero(num_heads, n_q, n_k):
    return alibi_bias(num_heads, n_q, n_k) * 2.0 ** (8 / num_heads)  # m_h of h - 1 = m_h · 2^(8/H)


@mistake("it matches slopes 2^(-h): that is the H = 8 case of 2^(-8h/H), use the number of heads")
def _slopes_for_eight_heads(num_heads, n_q, n_k):
    if num_heads == 8:
        return NOT_APPLICABLE
    slopes = 2.0 ** -torch.arange(1, num_heads + 1, dtype=torch.float32)  # 2^(-h)
    distance = torch.arange(n_q)[:, None] - torch.arange(n_k)[None, :]  # i - j
    return -slopes[:, None, None] * distance


@mistake("it matches +m_h · (i - j): the bias is a penalty, -m_h · (i - j), negative for past keys")
def _bias_sign_flipped(num_heads, n_q, n_k):
    return -alibi_bias(num_heads, n_q, n_k)


@mistake(
    "it matches -m_h · |i - j|: the formula is -m_h · (i - j), positive for future keys; "
    "the causal mask removes those, not the bias"
)
def _absolute_distance(num_heads, n_q, n_k):
    if n_k <= 1:
        return NOT_APPLICABLE  # no future key
    return -alibi_bias(num_heads, n_q, n_k).abs()


ALIBI_BIAS = Exercise(
    grade_id="ex9_2_alibi_bias",
    notebook=NOTEBOOK,
    signature="alibi_bias(num_heads, n_q, n_k)",
    docstring="""
        ALiBi's biases: for each head, a penalty proportional to how far back each key is.

        H = num_heads; head h = 1 … H has the slope m_h of the formula above. Query i and key j
        are numbered from 0; the bias of (i, j) is minus the head's slope times the distance
        i - j, so future keys (j > i) get a positive bias. Returns an (H, n_q, n_k) float32 tensor.
        Forbidden (scores 0): alibi_slopes and alibi_bias of course_utils.alibi
        (reference.alibi_slopes, reference.alibi_bias).
    """,
    hint=(
        "one slope per head, a geometric sequence starting below 1; multiply each head's slope by "
        "the distance i - j between every query and every key, and negate"
    ),
    code_hint=(
        "slopes = 2 ** (-8 * torch.arange(1, H + 1) / H); distance = torch.arange(n_q)[:, None] - "
        "torch.arange(n_k)[None, :]; return -slopes[:, None, None] * distance"
    ),
    reference=alibi_bias,
    forbidden=("course_utils.alibi.alibi_slopes",),
    cases=_alibi_cases,
    judge=close("bias", atol=1e-6, rtol=1e-5),
    mistakes=(_slopes_from_zero, _slopes_for_eight_heads, _bias_sign_flipped, _absolute_distance),
)

# --------------------------------------------------------------------------------------------------
# 9.3 grouped-query attention


def _gqa_cases(generator: torch.Generator) -> list[Case]:
    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    def key_mask(batch, n, m):  # random bool mask (B, 1, n, m), key 0 always visible
        mask = torch.rand(batch, 1, n, m, generator=generator) < 0.6
        mask[..., 0] = True
        return mask

    settings = [  # name, B, H, G, n, m, d, mask
        ("B=2, H=4 query heads, G=2 key/value heads, n=m=5, d=8", 2, 4, 2, 5, 5, 8, None),
        ("B=1, H=6, G=3, n=3, m=7, d=4", 1, 6, 3, 3, 7, 4, None),
        ("B=2, H=4, G=1 (multi-query), n=m=4, d=6", 2, 4, 1, 4, 4, 6, None),
        ("B=1, H=3, G=3 (multi-head), n=m=5, d=4", 1, 3, 3, 5, 5, 4, None),
        ("B=2, H=8, G=2, n=m=6, d=4, causal mask (n, m)", 2, 8, 2, 6, 6, 4, "causal"),
        ("B=2, H=6, G=2, n=4, m=6, d=4, mask (B, 1, n, m)", 2, 6, 2, 4, 6, 4, "random"),
    ]
    cases = []
    for name, batch, heads, groups, n, m, d, kind in settings:
        mask = None
        if kind == "causal":
            mask = torch.ones(n, m, dtype=torch.bool).tril()
        elif kind == "random":
            mask = key_mask(batch, n, m)
        q, k, v = randn(batch, heads, n, d), randn(batch, groups, m, d), randn(batch, groups, m, d)
        cases.append(Case(name, (q, k, v, mask)))
    return cases


@mistake(
    "it matches k.repeat(1, H/G, 1, 1), which cycles the groups (0, 1, 0, 1, …): query heads "
    "h = 0 … H/G - 1 share key/value head 0, so repeat each head in place with repeat_interleave"
)
def _groups_cycled(q, k, v, mask=None):
    groups, group_size = k.shape[1], q.shape[1] // k.shape[1]
    if groups in (1, q.shape[1]):
        return NOT_APPLICABLE  # one group, or one head per group: both orders agree
    keys, values = k.repeat(1, group_size, 1, 1), v.repeat(1, group_size, 1, 1)
    output, _ = scaled_dot_product_attention(q, keys, values, mask)
    return output


@mistake("it matches every query head using key/value head 0: query head h uses head h // (H/G)")
def _first_group_only(q, k, v, mask=None):
    if k.shape[1] == 1:
        return NOT_APPLICABLE
    return grouped_query_attention(q, k[:, :1], v[:, :1], mask)


@mistake("it matches ignoring the mask: pass it on to the attention (True = may attend)")
def _mask_ignored(q, k, v, mask=None):
    if mask is None:
        return NOT_APPLICABLE
    return grouped_query_attention(q, k, v)


@mistake("it matches scores without the 1/√d scaling, d = q.shape[-1]")
def _gqa_unscaled(q, k, v, mask=None):
    return grouped_query_attention(q * q.shape[-1] ** 0.5, k, v, mask)  # (√d q)·k / √d = q·k


GROUPED_QUERY_ATTENTION = Exercise(
    grade_id="ex9_3_grouped_query_attention",
    notebook=NOTEBOOK,
    signature="grouped_query_attention(q, k, v, mask=None)",
    docstring="""
        H query heads sharing G key/value heads: query head h attends with key/value head h // (H/G).

        q (B, H, n, d); k and v (B, G, m, d), G dividing H; mask None or bool (True = may attend),
        broadcastable to (B, H, n, m). Returns the output (B, H, n, d).
        Forbidden (scores 0): torch's F.scaled_dot_product_attention (it has enable_gqa),
        grouped_query_attention of course_utils.grouped_query (reference.grouped_query_attention).
    """,
    hint=(
        "give each query head the key/value head of its group: consecutive query heads share one, "
        "so expand G heads to H by repeating each in place, then attend as multi-head attention does"
    ),
    code_hint=(
        "group_size = H // G; keys = k.repeat_interleave(group_size, dim=1), same for v; "
        "output, _ = reference.scaled_dot_product_attention(q, keys, values, mask)"
    ),
    reference=grouped_query_attention,
    forbidden=("torch.nn.functional.scaled_dot_product_attention",),
    cases=_gqa_cases,
    judge=close("output", atol=1e-6),
    mistakes=(_groups_cycled, _first_group_only, _mask_ignored, _gqa_unscaled),
)

# --------------------------------------------------------------------------------------------------
# 9.4 sliding-window mask


def _window_cases(generator: torch.Generator) -> list[Case]:
    def shorter(window_low: int, n_low: int, n_high: int) -> tuple[int, int]:
        """(n, window) with n in [n_low, n_high] and window in [window_low, n - 1]."""
        n = randint(generator, n_low, n_high + 1)
        return n, randint(generator, window_low, n)

    n_two, n_one, n_equal, n_longer = (randint(generator, 3, 10) for _ in range(4))
    return [
        Case("a window shorter than the sequence", shorter(2, 5, 10)),
        Case("a window of 2", (n_two + 2, 2)),
        Case("a window of at least 3, a longer sequence", shorter(3, 6, 19)),
        Case("a window of 1 (the query itself only)", (n_one, 1)),
        Case("a window as long as the sequence", (n_equal, n_equal)),
        Case("a window longer than the sequence", (n_longer, n_longer + randint(generator, 1, 10))),
    ]


@mistake(
    "it matches i - window <= j <= i, window + 1 keys: a window of w keys is the query itself "
    "and the w - 1 before it, i - window < j"
)
def _one_key_too_many(n, window):
    return sliding_window_mask(n, window + 1)


@mistake(
    "it matches i - window < j < i, without the query itself: j <= i, each position sees itself"
)
def _without_itself(n, window):
    if window == 1:
        return NOT_APPLICABLE
    return sliding_window_mask(n, window) & ~torch.eye(n, dtype=torch.bool)


@mistake(
    "it matches a symmetric band |i - j| < window: keys after the query are the future, keep j <= i"
)
def _symmetric_band(n, window):
    return sliding_window_mask(n, window) | sliding_window_mask(n, window).T


@mistake("it matches the causal mask: also hide the keys at i - window and earlier")
def _window_ignored(n, window):
    if window >= n:
        return NOT_APPLICABLE
    return sliding_window_mask(n, n)


@mistake(
    "it matches i - window + 1 < j <= i, window - 1 keys: a window of w keys is the query itself "
    "and the w - 1 before it"
)
def _one_key_too_few(n, window):
    if window == 1:
        return NOT_APPLICABLE  # no key at all: the mistaken mask is all False
    return sliding_window_mask(n, window - 1)


@mistake(
    "it matches the window looking forward, i <= j < i + window (the transposed mask): query i "
    "sees itself and the keys BEFORE it, never the future"
)
def _window_forward(n, window):
    if n == 1:
        return NOT_APPLICABLE
    return sliding_window_mask(n, window).T


SLIDING_WINDOW_MASK = Exercise(
    grade_id="ex9_4_sliding_window_mask",
    notebook=NOTEBOOK,
    signature="sliding_window_mask(n, window)",
    docstring="""
        The (n, n) bool sliding-window mask, True = may attend: query i sees only key i itself
        and the window - 1 keys just before it (fewer near the start); never a later key.

        n positions, window an int >= 1; window >= n gives the causal mask.
        Forbidden (scores 0): band_mask and sliding_window_mask of course_utils.sliding_window
        (reference.sliding_window_mask).
    """,
    hint=(
        "start from the causal rule (no key after the query) and add a second condition that "
        "removes keys more than window - 1 positions back"
    ),
    code_hint=(
        "i = torch.arange(n)[:, None]; j = torch.arange(n)[None, :]; return (j <= i) & (j > i - window)"
    ),
    reference=sliding_window_mask,
    forbidden=("course_utils.sliding_window.band_mask",),
    cases=_window_cases,
    judge=close("mask"),
    mistakes=(
        _one_key_too_many,
        _without_itself,
        _symmetric_band,
        _window_ignored,
        _one_key_too_few,
        _window_forward,
    ),
)

EXERCISES = (APPLY_ROPE, ALIBI_BIAS, GROUPED_QUERY_ATTENTION, SLIDING_WINDOW_MASK)
