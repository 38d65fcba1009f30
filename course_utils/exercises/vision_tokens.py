"""Exercises 11.3 and 11.4 of notebook 11 (attention in vision): attention over image tokens, pixel
self-attention and Perceiver cross-attention."""

from __future__ import annotations

import math

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.exercises.vision_attention import NOTEBOOK
from course_utils.feedback.judge import close
from course_utils.feedback.shared_mistakes import swapped_pair
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randn
from course_utils.perceiver import perceiver_cross_attention
from course_utils.vision_attention import pixel_self_attention

# Multi-head attention the course and torch already compute: calling it does 11.3 or 11.4 for the learner.
_MULTI_HEAD_FORWARDS = (
    "course_utils.multihead.MultiHeadAttention.forward",
    "torch.nn.functional.multi_head_attention_forward",
)

# --------------------------------------------------------------------------------------------------
# 11.3 self-attention over pixel positions


def _pixel_cases(generator: torch.Generator) -> list[Case]:
    settings = [  # name, B, C, H, W, d, C_v
        ("x (2, 4, 3, 5), d = 2, C_v = 4", 2, 4, 3, 5, 2, 4),
        ("x (1, 6, 4, 4), d = 3, C_v = 6", 1, 6, 4, 4, 3, 6),
        ("x (2, 3, 2, 6), d = 3, C_v = 2", 2, 3, 2, 6, 3, 2),
        ("x (3, 8, 3, 2), d = 2, C_v = 8", 3, 8, 3, 2, 2, 8),
        ("x (2, 5, 1, 7): one row, d = 5, C_v = 3", 2, 5, 1, 7, 5, 3),
    ]
    cases = []
    for name, batch, channels, height, width, key_dim, value_dim in settings:
        x = randn(generator, batch, channels, height, width)
        W_q, W_k = (randn(generator, key_dim, channels) for _ in range(2))
        W_v = randn(generator, value_dim, channels) / math.sqrt(channels)
        cases.append(Case(name, (x, W_q, W_k, W_v)))
    return cases


def _attend_pixels(x, W_q, W_k, W_v, scale=None, dim=-1, reshape_in=False, reshape_out=False):
    """The layer, with the switches the mistakes below flip."""
    batch, channels, height, width = x.shape
    if reshape_in:
        tokens = x.reshape(batch, height * width, channels)
    else:
        tokens = x.flatten(2).transpose(1, 2)
    queries, keys, values = tokens @ W_q.T, tokens @ W_k.T, tokens @ W_v.T
    scale = math.sqrt(W_q.shape[0]) if scale is None else scale
    weights = torch.softmax(queries @ keys.transpose(1, 2) / scale, dim=dim)
    output = weights @ values  # (B, n, C_v)
    if not reshape_out:
        output = output.transpose(1, 2)  # (B, C_v, n), as the fold needs it
    return output.reshape(batch, -1, height, width), weights


_MIXED_TOKENS = (
    "it matches x.reshape(B, H·W, C): the right shape, but it cuts the flat memory into rows that "
    "mix channels and positions; flatten the positions, x.flatten(2), then transpose(1, 2)"
)


@mistake(_MIXED_TOKENS)
def _channels_mixed_into_positions(x, W_q, W_k, W_v):
    return _attend_pixels(x, W_q, W_k, W_v, reshape_in=True)


@mistake(_MIXED_TOKENS)
def _channels_mixed_both_ways(x, W_q, W_k, W_v):  # the output folded back by reshape too
    return _attend_pixels(x, W_q, W_k, W_v, reshape_in=True, reshape_out=True)


@mistake(
    "it matches folding the (B, n, C_v) output with reshape(B, C_v, H, W): transpose it to "
    "(B, C_v, n) first"
)
def _folded_without_transpose(x, W_q, W_k, W_v):
    return _attend_pixels(x, W_q, W_k, W_v, reshape_out=True)


@mistake(
    "it matches numbering the positions column by column (w·H + h): number them row by row, "
    "p = h·W + w, as x.flatten(2) does"
)
def _column_major_positions(x, W_q, W_k, W_v):
    if x.shape[2] == 1 or x.shape[3] == 1:
        return NOT_APPLICABLE  # one row or one column: both orders agree
    output, weights = _attend_pixels(x.transpose(2, 3), W_q, W_k, W_v)  # (B, C_v, W, H)
    return output.transpose(2, 3), weights


@mistake("it matches scores without the 1/√d scaling, d = W_q.shape[0]")
def _pixel_unscaled(x, W_q, W_k, W_v):
    return _attend_pixels(x, W_q, W_k, W_v, scale=1.0)


@mistake("it matches scaling by √C (the channels): scale by √d, the width of queries and keys")
def _scaled_by_channels(x, W_q, W_k, W_v):
    channels = x.shape[1]
    if channels == W_q.shape[0]:
        return NOT_APPLICABLE
    return _attend_pixels(x, W_q, W_k, W_v, scale=math.sqrt(channels))


@mistake(
    "it matches a softmax over the queries (dim=-2): each pixel's weights over all pixels sum to "
    "1, a softmax over the last axis"
)
def _pixel_softmax_over_queries(x, W_q, W_k, W_v):
    return _attend_pixels(x, W_q, W_k, W_v, dim=-2)


PIXEL_SELF_ATTENTION = Exercise(
    grade_id="ex11_3_pixel_self_attention",
    notebook=NOTEBOOK,
    signature="pixel_self_attention(x, W_q, W_k, W_v)",
    docstring="""
        Self-attention over the H·W pixel positions. Returns (output (B, C_v, H, W), weights (B, n, n)).

        x (B, C, H, W); W_q and W_k (d, C), W_v (C_v, C), stored (out, in) as nn.Linear stores them.
        Position p = h·W + w (row by row) is a token of C features; n = H·W; scale by √d.
        Forbidden (scores 0): PixelSelfAttention.forward, MultiHeadAttention.forward,
        F.multi_head_attention_forward, pixel_self_attention (the course's).
    """,
    hint=(
        "turn the image into n = H·W tokens of C features (one per position, row by row), attend "
        "as in notebook 04, then put the output tokens back onto the H × W grid"
    ),
    code_hint=(
        "tokens = x.flatten(2).transpose(1, 2) is (B, H·W, C); output, weights = "
        "reference.scaled_dot_product_attention(tokens @ W_q.T, tokens @ W_k.T, tokens @ W_v.T); "
        "output.transpose(1, 2).reshape(B, -1, H, W)"
    ),
    reference=pixel_self_attention,
    forbidden=("course_utils.vision_attention.PixelSelfAttention.forward", *_MULTI_HEAD_FORWARDS),
    cases=_pixel_cases,
    judge=close("output", "weights", atol=1e-8),
    mistakes=(
        _channels_mixed_into_positions,
        _channels_mixed_both_ways,
        _folded_without_transpose,
        _column_major_positions,
        _pixel_unscaled,
        _scaled_by_channels,
        _pixel_softmax_over_queries,
        swapped_pair(pixel_self_attention),
    ),
)

# --------------------------------------------------------------------------------------------------
# 11.4 Perceiver cross-attention


def _perceiver_cases(generator: torch.Generator) -> list[Case]:
    settings = [  # name, m, B, n, D, d, scale of the inputs
        ("m = 3 latents, B = 2, n = 7 inputs, D = 4, d = 4", 3, 2, 7, 4, 4, 1.0),
        ("m = 1 latent, B = 3, n = 5 inputs, D = 6, d = 2", 1, 3, 5, 6, 2, 1.0),
        ("m = 4 latents, B = 1, n = 10 inputs, D = 5, d = 3", 4, 1, 10, 5, 3, 1.0),
        ("m = 6 latents, B = 2, n = 6 inputs (m = n), D = 4, d = 4", 6, 2, 6, 4, 4, 1.0),
        ("m = 2 latents, B = 2, n = 9 inputs, D = 8, d = 8, large inputs", 2, 2, 9, 8, 8, 10.0),
    ]
    cases = []
    for name, latent_count, batch, length, width, projected, scale in settings:
        latents = randn(generator, latent_count, width)
        inputs = randn(generator, batch, length, width, scale=scale)
        W_q, W_k, W_v = (randn(generator, projected, width) / math.sqrt(width) for _ in range(3))
        cases.append(Case(name, (latents, inputs, W_q, W_k, W_v)))
    return cases


@mistake(
    "it matches the inputs as queries and the latents as keys and values: in a Perceiver the m "
    "latents ask (queries) and the n inputs answer (keys, values), so the output has m rows"
)
def _inputs_as_queries(latents, inputs, W_q, W_k, W_v):
    return scaled_dot_product_attention(inputs @ W_q.T, latents @ W_k.T, latents @ W_v.T)


@mistake(
    "it matches a softmax over the latents (dim=-2): each latent's weights over the n inputs sum "
    "to 1, a softmax over the last axis"
)
def _softmax_over_latents(latents, inputs, W_q, W_k, W_v):
    if latents.shape[0] == 1:
        return NOT_APPLICABLE
    scores = (latents @ W_q.T) @ (inputs @ W_k.T).transpose(1, 2) / math.sqrt(W_q.shape[0])
    weights = torch.softmax(scores, dim=-2)
    return weights @ (inputs @ W_v.T), weights


@mistake("it matches scaling by √D (the feature width): scale by √d, the projected width")
def _scaled_by_feature_width(latents, inputs, W_q, W_k, W_v):
    projected, width = W_q.shape
    if projected == width:
        return NOT_APPLICABLE
    shrunk = latents * math.sqrt(projected / width)  # 1/√D = (1/√d)·√(d/D)
    return perceiver_cross_attention(shrunk, inputs, W_q, W_k, W_v)


@mistake("it matches projecting with x @ W: nn.Linear's convention (used here) is y = x @ W.T")
def _projected_with_w(latents, inputs, W_q, W_k, W_v):
    if W_q.shape[0] != W_q.shape[1]:
        return NOT_APPLICABLE  # the mistaken code raises a shape error instead
    return perceiver_cross_attention(latents, inputs, W_q.T, W_k.T, W_v.T)


@mistake("it matches scores without the 1/√d scaling, d = W_q.shape[0]")
def _perceiver_unscaled(latents, inputs, W_q, W_k, W_v):
    grown = latents * math.sqrt(W_q.shape[0])  # (√d q)·k / √d = q·k
    return perceiver_cross_attention(grown, inputs, W_q, W_k, W_v)


PERCEIVER_CROSS_ATTENTION = Exercise(
    grade_id="ex11_4_perceiver_cross_attention",
    notebook=NOTEBOOK,
    signature="perceiver_cross_attention(latents, inputs, W_q, W_k, W_v)",
    docstring="""
        m latents read n inputs. Returns (output (B, m, d), weights (B, m, n)).

        latents (m, D), the same for every example; inputs (B, n, D); W_q, W_k, W_v (d, D), stored
        (out, in) as nn.Linear stores them; the latents ask, the inputs answer; scale by √d.
        Forbidden (scores 0): MultiHeadAttention.forward, F.multi_head_attention_forward,
        perceiver_cross_attention (the course's).
    """,
    hint=(
        "the latents ask and the inputs answer: project the latents into queries, the inputs into "
        "keys and values, and attend as in notebook 04"
    ),
    code_hint=(
        "reference.scaled_dot_product_attention(latents @ W_q.T, inputs @ W_k.T, inputs @ W_v.T): "
        "the (m, d) queries broadcast over the batch"
    ),
    reference=perceiver_cross_attention,
    forbidden=_MULTI_HEAD_FORWARDS,
    cases=_perceiver_cases,
    judge=close("output", "weights", atol=1e-8),
    mistakes=(
        _inputs_as_queries,
        _softmax_over_latents,
        _scaled_by_feature_width,
        _projected_with_w,
        _perceiver_unscaled,
        swapped_pair(perceiver_cross_attention),
    ),
)

EXERCISES = (PIXEL_SELF_ATTENTION, PERCEIVER_CROSS_ATTENTION)
