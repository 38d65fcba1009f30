"""Exercises 11.1 and 11.2 of notebook 11 (attention in vision): the SE block and CBAM's spatial map.

11.3 and 11.4, the attention over image tokens, are in ``vision_tokens``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_utils.feedback.judge import close
from course_utils.feedback.shared_mistakes import swapped_pair
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randn
from course_utils.vision_attention import cbam_spatial_attention, squeeze_excitation

NOTEBOOK = "11_attention_in_vision"


# --------------------------------------------------------------------------------------------------
# 11.1 squeeze-and-excitation


def _se_cases(generator: torch.Generator) -> list[Case]:
    settings = [  # name, B, C, H, W, hidden, scale of x
        ("x (2, 4, 5, 5), hidden 2", 2, 4, 5, 5, 2, 1.0),
        ("x (3, 6, 4, 7), hidden 3", 3, 6, 4, 7, 3, 1.0),
        ("x (1, 8, 3, 3), hidden 2", 1, 8, 3, 3, 2, 1.0),
        ("x (2, 4, 3, 4): as many channels as columns", 2, 4, 3, 4, 2, 1.0),
        ("x (2, 3, 1, 1): one pixel per channel", 2, 3, 1, 1, 1, 1.0),
        ("x (2, 5, 6, 6) with large values, hidden 2", 2, 5, 6, 6, 2, 10.0),
    ]
    cases = []
    for name, batch, channels, height, width, hidden, scale in settings:
        x = randn(generator, batch, channels, height, width, scale=scale) + 0.5
        W_reduce = randn(generator, hidden, channels) / math.sqrt(channels)
        b_reduce = randn(generator, hidden)
        W_expand = randn(generator, channels, hidden) / math.sqrt(hidden)
        b_expand = randn(generator, channels)
        cases.append(Case(name, (x, W_reduce, b_reduce, W_expand, b_expand)))
    return cases


def _se(weights_of, x, squeezed, activation=torch.relu, gate=torch.sigmoid):
    """The SE block from a given squeeze, with the switches the mistakes below flip."""
    W_reduce, b_reduce, W_expand, b_expand = weights_of
    weights = gate(activation(squeezed @ W_reduce.T + b_reduce) @ W_expand.T + b_expand)
    return weights[:, :, None, None] * x, weights


@mistake(
    "it matches a softmax over the channels: the excitation is a sigmoid per channel, each "
    "weight in (0, 1) on its own (channels do not compete for a share)"
)
def _se_softmax(x, *weights_of):
    return _se(weights_of, x, x.mean(dim=(2, 3)), gate=lambda z: torch.softmax(z, dim=-1))


@mistake(
    "it matches max pooling: the squeeze is the average of each channel over its H × W positions"
)
def _se_max_pool(x, *weights_of):
    return _se(weights_of, x, x.amax(dim=(2, 3)))


@mistake(
    "it matches averaging over axes (1, 2), the channels and the rows: squeeze over the spatial "
    "axes (2, 3), so that each channel gets one number"
)
def _se_pooled_over_channels(x, *weights_of):
    if x.shape[1] != x.shape[3]:
        return NOT_APPLICABLE  # the mistaken code raises a shape error instead
    return _se(weights_of, x, x.mean(dim=(1, 2)))  # (B, W): fits W_reduce only when W = C


@mistake("it matches no ReLU between the two layers: z = ReLU(W_reduce s + b_reduce)")
def _se_no_relu(x, *weights_of):
    return _se(weights_of, x, x.mean(dim=(2, 3)), activation=lambda z: z)


@mistake(
    "it matches returning x unscaled: multiply each channel by its weight, e[:, :, None, None] * x"
)
def _se_unscaled(x, W_reduce, b_reduce, W_expand, b_expand):
    _, weights = squeeze_excitation(x, W_reduce, b_reduce, W_expand, b_expand)
    return x, weights


@mistake(
    "it matches returning the weights as (B, C, 1, 1), the shape that scales x: return them as "
    "(B, C), one weight per channel"
)
def _se_weights_kept_4d(x, W_reduce, b_reduce, W_expand, b_expand):
    scaled, weights = squeeze_excitation(x, W_reduce, b_reduce, W_expand, b_expand)
    return scaled, weights[:, :, None, None]


SE_BLOCK = Exercise(
    grade_id="ex11_1_se_block",
    notebook=NOTEBOOK,
    signature="se_block(x, W_reduce, b_reduce, W_expand, b_expand)",
    docstring="""
        Squeeze-and-excitation. Returns (x with each channel scaled by its weight, weights (B, C)).

        x (B, C, H, W); W_reduce (hidden, C), b_reduce (hidden,), W_expand (C, hidden), b_expand (C,):
        two linear layers, each weight stored (out, in) as nn.Linear stores it.
        Forbidden (scores 0): SqueezeExcitation.forward and squeeze_excitation (the course's).
    """,
    hint=(
        "squeeze each channel to one number (its average over the positions), excite with the two "
        "small layers (ReLU between, a sigmoid at the end), then scale each channel by its weight"
    ),
    code_hint=(
        "s = x.mean(dim=(2, 3)); e = torch.sigmoid(torch.relu(s @ W_reduce.T + b_reduce) @ "
        "W_expand.T + b_expand); return e[:, :, None, None] * x, e"
    ),
    reference=squeeze_excitation,
    forbidden=("course_utils.vision_attention.SqueezeExcitation.forward",),
    cases=_se_cases,
    judge=close("scaled x", "weights", atol=1e-8),
    mistakes=(
        _se_softmax,
        _se_max_pool,
        _se_pooled_over_channels,
        _se_no_relu,
        _se_unscaled,
        _se_weights_kept_4d,
        swapped_pair(squeeze_excitation),
    ),
)

# --------------------------------------------------------------------------------------------------
# 11.2 CBAM's spatial attention map


def _spatial_cases(generator: torch.Generator) -> list[Case]:
    settings = [  # name, B, C, H, W, k, shift of the features
        ("features (2, 4, 6, 6), 3 × 3 conv", 2, 4, 6, 6, 3, 0.0),
        ("features (1, 8, 5, 7), 7 × 7 conv", 1, 8, 5, 7, 7, 0.0),
        ("features (3, 3, 4, 4), 1 × 1 conv", 3, 3, 4, 4, 1, 0.0),
        ("features (2, 5, 8, 8), 5 × 5 conv, every feature negative", 2, 5, 8, 8, 5, -3.0),
        ("features (2, 1, 4, 5), one channel, 3 × 3 conv", 2, 1, 4, 5, 3, 0.0),
    ]
    cases = []
    for name, batch, channels, height, width, kernel, shift in settings:
        features = randn(generator, batch, channels, height, width)
        if shift:
            features = shift - features.abs()  # every feature below the shift
        conv_weight = randn(generator, 1, 2, kernel, kernel) / kernel
        conv_bias = randn(generator, 1)
        cases.append(Case(name, (features, conv_weight, conv_bias)))
    return cases


def _pooled_map(features, conv_weight, conv_bias, pooled, padding=None, squash=torch.sigmoid):
    kernel_size = conv_weight.shape[-1]
    padding = kernel_size // 2 if padding is None else padding
    return squash(F.conv2d(pooled, conv_weight, conv_bias, padding=padding))


@mistake(
    "it matches [max ; mean]: stack the mean over the channels first (the conv's input 0), "
    "then the max"
)
def _max_then_mean(features, conv_weight, conv_bias):
    if features.shape[1] == 1:
        return NOT_APPLICABLE  # one channel: mean = max
    pooled = torch.cat([features.amax(1, keepdim=True), features.mean(1, keepdim=True)], dim=1)
    return _pooled_map(features, conv_weight, conv_bias, pooled)


@mistake(
    "it matches pooling over the positions (axes 2, 3): CBAM's spatial map pools over the "
    "channels, axis 1, keeping one value per position"
)
def _pooled_over_space(features, conv_weight, conv_bias):
    average = features.mean(dim=(2, 3), keepdim=True)
    maximum = features.amax(dim=(2, 3), keepdim=True)
    pooled = torch.cat([average, maximum], dim=1)
    return _pooled_map(features, conv_weight, conv_bias, pooled)


@mistake("it matches the raw convolution: squash it with a sigmoid, so each weight is in (0, 1)")
def _no_sigmoid(features, conv_weight, conv_bias):
    pooled = torch.cat([features.mean(1, keepdim=True), features.amax(1, keepdim=True)], dim=1)
    return _pooled_map(features, conv_weight, conv_bias, pooled, squash=lambda z: z)


@mistake(
    "it matches a softmax over the H × W positions: CBAM uses a sigmoid per position (several "
    "places may all matter)"
)
def _softmax_over_positions(features, conv_weight, conv_bias):
    pooled = torch.cat([features.mean(1, keepdim=True), features.amax(1, keepdim=True)], dim=1)
    scores = _pooled_map(features, conv_weight, conv_bias, pooled, squash=lambda z: z)
    return torch.softmax(scores.flatten(1), dim=-1).reshape(scores.shape)


@mistake("it matches a convolution without padding: pad by k // 2 so that the map keeps H × W")
def _no_padding(features, conv_weight, conv_bias):
    if conv_weight.shape[-1] == 1:
        return NOT_APPLICABLE
    pooled = torch.cat([features.mean(1, keepdim=True), features.amax(1, keepdim=True)], dim=1)
    return _pooled_map(features, conv_weight, conv_bias, pooled, padding=0)


SPATIAL_ATTENTION_MAP = Exercise(
    grade_id="ex11_2_spatial_attention_map",
    notebook=NOTEBOOK,
    signature="spatial_attention_map(features, conv_weight, conv_bias)",
    docstring="""
        CBAM's spatial attention: (B, C, H, W) -> (B, 1, H, W), one weight in (0, 1) per position.

        conv_weight (1, 2, k, k) with k odd and conv_bias (1,) are the convolution's parameters; its
        input channel 0 is the mean over the channels, input channel 1 the max.
        Forbidden (scores 0): SpatialAttention.forward and cbam_spatial_attention (the course's).
    """,
    hint=(
        "pool over the channels, not over space: the mean and the max at every position, stacked "
        "as two maps; convolve them into one map of the same size and squash it into (0, 1)"
    ),
    code_hint=(
        "pooled = torch.cat([features.mean(1, keepdim=True), features.amax(1, keepdim=True)], 1); "
        "torch.sigmoid(F.conv2d(pooled, conv_weight, conv_bias, padding=k // 2))"
    ),
    reference=cbam_spatial_attention,
    forbidden=("course_utils.vision_attention.SpatialAttention.forward",),
    cases=_spatial_cases,
    judge=close("map", atol=1e-8),
    mistakes=(
        _max_then_mean,
        _pooled_over_space,
        _no_sigmoid,
        _softmax_over_positions,
        _no_padding,
    ),
)

EXERCISES = (SE_BLOCK, SPATIAL_ATTENTION_MAP)
