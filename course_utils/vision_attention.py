"""Attention inside a CNN: which channels (SE, CBAM), which places (CBAM), which other pixels (self-attention).

An image batch is ``x`` of shape (B, C, H, W). Three ways to weight it:

* **Squeeze-and-excitation** (Hu et al. 2018), one weight per channel::

      s = mean_{h,w} x                         squeeze: (B, C)
      e = σ(W_e ReLU(W_r s + b_r) + b_e)       excitation: (B, C), each weight in (0, 1)
      SE(x)_c = e_c · x_c                      every channel scaled by its weight

* **CBAM** (Woo et al. 2018) weights the channels, then the positions. Its channel attention pools
  each channel twice, by its mean and by its max, and passes both through one shared MLP::

      MLP(p) = W_e ReLU(W_r p + b_r) + b_e      the same weights for both pooled vectors
      e = σ(MLP(mean_{h,w} x) + MLP(max_{h,w} x))    (B, C), eq. 2 of the paper

  Its spatial attention, one weight per position::

      a = σ(conv_{k×k}([mean_c x ; max_c x]))  (B, 1, H, W): pooled over the channels, not space

* **Self-attention over pixels** (non-local blocks, Wang et al. 2018; SAGAN, Zhang et al. 2019):
  the H·W positions become n tokens of C features and every position attends to every other::

      tokens = x.flatten(2).transpose(1, 2)    (B, n = H·W, C): token p = h·W + w
      o, α = Attention(tokens W_qᵀ, tokens W_kᵀ, tokens W_vᵀ)        α: (B, n, n)
      fold o back to (B, C_v, H, W)

  SAGAN adds the result to its input through a learned scalar that starts at 0::

      y = γ · o + x,   γ = 0 at initialisation   (C_v = C)

  so the block is the identity when training starts, and the network lets attention in as γ grows.

The functions take weight tensors in nn.Linear's convention (y = x Wᵀ); the modules hold those
weights as parameters for training. :func:`receptive_field` measures with one backward pass which
input pixels an output pixel depends on.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.helpers.validation import require_positive_int, require_shapes


def squeeze_excitation(
    x: torch.Tensor,
    W_reduce: torch.Tensor,
    b_reduce: torch.Tensor,
    W_expand: torch.Tensor,
    b_expand: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SE block: (B, C, H, W) -> (x with each channel scaled, channel weights (B, C))."""
    require_shapes(
        ("x", x, "(B, C, H, W)"),
        ("W_reduce", W_reduce, "(hidden, C)"),
        ("b_reduce", b_reduce, "(hidden,)"),
        ("W_expand", W_expand, "(C, hidden)"),
        ("b_expand", b_expand, "(C,)"),
        meanings={"C": "number of channels"},
    )
    squeezed = x.mean(dim=(2, 3))  # s_c = (1 / HW) Σ_{h,w} x_chw: (B, C)
    hidden = torch.relu(squeezed @ W_reduce.T + b_reduce)  # z = ReLU(W_r s + b_r): (B, hidden)
    weights = torch.sigmoid(hidden @ W_expand.T + b_expand)  # e = σ(W_e z + b_e): (B, C)
    return weights[:, :, None, None] * x, weights  # SE(x)_c = e_c · x_c


def cbam_channel_weights(
    features: torch.Tensor,
    W_reduce: torch.Tensor,
    b_reduce: torch.Tensor,
    W_expand: torch.Tensor,
    b_expand: torch.Tensor,
) -> torch.Tensor:
    """CBAM's channel attention: (B, C, H, W) -> weights (B, C), each in (0, 1)."""
    require_shapes(
        ("features", features, "(B, C, H, W)"),
        ("W_reduce", W_reduce, "(hidden, C)"),
        ("b_reduce", b_reduce, "(hidden,)"),
        ("W_expand", W_expand, "(C, hidden)"),
        ("b_expand", b_expand, "(C,)"),
        meanings={"C": "number of channels"},
    )

    def shared_mlp(pooled: torch.Tensor) -> torch.Tensor:  # MLP(p) = W_e ReLU(W_r p + b_r) + b_e
        return torch.relu(pooled @ W_reduce.T + b_reduce) @ W_expand.T + b_expand

    average = features.mean(dim=(2, 3))  # mean_{h,w} F: (B, C)
    maximum = features.amax(dim=(2, 3))  # max_{h,w} F: (B, C)
    return torch.sigmoid(shared_mlp(average) + shared_mlp(maximum))  # e = σ(MLP(avg) + MLP(max))


def cbam_spatial_attention(
    features: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor
) -> torch.Tensor:
    """CBAM's spatial map: (B, C, H, W) -> (B, 1, H, W), one weight in (0, 1) per position."""
    require_shapes(
        ("features", features, "(B, C, H, W)"),
        ("conv_weight", conv_weight, "(out, pooled, k, k)"),
        ("conv_bias", conv_bias, "(out,)"),
        sizes={"out": 1, "pooled": 2},
    )
    kernel_size = conv_weight.shape[-1]
    if kernel_size % 2 == 0:
        raise ValueError(f"conv_weight must have an odd kernel size k, got k={kernel_size}")
    average = features.mean(dim=1, keepdim=True)  # mean over the channels: (B, 1, H, W)
    maximum = features.amax(dim=1, keepdim=True)  # max over the channels: (B, 1, H, W)
    pooled = torch.cat([average, maximum], dim=1)  # [mean_c x ; max_c x]: (B, 2, H, W)
    # a = σ(conv(pooled)), padded by k // 2 so that the map keeps H × W
    return torch.sigmoid(F.conv2d(pooled, conv_weight, conv_bias, padding=kernel_size // 2))


def pixel_self_attention(
    x: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor, W_v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel attends to every pixel: (B, C, H, W) -> (output (B, C_v, H, W), weights (B, n, n))."""
    require_shapes(
        ("x", x, "(B, C, H, W)"),
        ("W_q", W_q, "(d, C)"),
        ("W_k", W_k, "(d, C)"),
        ("W_v", W_v, "(C_v, C)"),
        meanings={"C": "number of channels", "d": "query/key width"},
    )
    batch, _, height, width = x.shape
    tokens = x.flatten(2).transpose(1, 2)  # (B, n = H·W, C): token p = h·W + w, its C features
    queries, keys, values = tokens @ W_q.T, tokens @ W_k.T, tokens @ W_v.T  # (B, n, d), (B, n, C_v)
    output, weights = scaled_dot_product_attention(queries, keys, values)  # o_p = Σ_q α_pq v_q
    # (B, n, C_v) -> (B, C_v, n) -> (B, C_v, H, W): positions back onto the grid
    return output.transpose(1, 2).reshape(batch, -1, height, width), weights


class _ChannelBottleneck(nn.Module):
    """The two layers SE and CBAM's channel attention share: C -> C // reduction -> C."""

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        require_positive_int("channels", channels)
        require_positive_int("reduction", reduction)
        hidden = max(1, channels // reduction)
        self.reduce = nn.Linear(channels, hidden)  # W_r, b_r
        self.expand = nn.Linear(hidden, channels)  # W_e, b_e


class SqueezeExcitation(_ChannelBottleneck):
    """:func:`squeeze_excitation` with learned weights; forward returns (scaled x, weights (B, C))."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reduce, expand = self.reduce, self.expand
        return squeeze_excitation(x, reduce.weight, reduce.bias, expand.weight, expand.bias)


class ChannelAttention(_ChannelBottleneck):
    """:func:`cbam_channel_weights` with a learned shared MLP; forward returns the weights (B, C)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        reduce, expand = self.reduce, self.expand
        return cbam_channel_weights(
            features, reduce.weight, reduce.bias, expand.weight, expand.bias
        )


class SpatialAttention(nn.Module):
    """:func:`cbam_spatial_attention` with a learned k × k convolution; forward returns the map."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        require_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size)  # [mean ; max] -> one map

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return cbam_spatial_attention(features, self.conv.weight, self.conv.bias)


class PixelSelfAttention(nn.Module):
    """:func:`pixel_self_attention` with learned projections; forward returns (output, weights)."""

    def __init__(self, channels: int, key_dim: int):
        super().__init__()
        require_positive_int("channels", channels)
        require_positive_int("key_dim", key_dim)
        self.query = nn.Linear(channels, key_dim, bias=False)  # W_q
        self.key = nn.Linear(channels, key_dim, bias=False)  # W_k
        self.value = nn.Linear(channels, channels, bias=False)  # W_v

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return pixel_self_attention(x, self.query.weight, self.key.weight, self.value.weight)


class SelfAttentionBlock(nn.Module):
    """SAGAN's block: y = γ · o + x with o = :func:`pixel_self_attention` of x and γ starting at 0.

    forward(x (B, C, H, W)) returns (y (B, C, H, W), weights (B, n, n)).
    """

    def __init__(self, channels: int, key_dim: int):
        super().__init__()
        self.attention = PixelSelfAttention(channels, key_dim)  # o: C_v = C, so o adds to x
        self.gamma = nn.Parameter(torch.zeros(()))  # γ = 0: the block starts as the identity

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.attention(x)  # o, α
        return self.gamma * attended + x, weights  # y = γ · o + x


def receptive_field(
    layer: Callable[[torch.Tensor], torch.Tensor],
    channels: int,
    size: int,
    row: int,
    col: int,
    seed: int = 0,
) -> torch.Tensor:
    """(size, size) bool: the input pixels that output pixel (row, col) of ``layer`` depends on.

    Pixel (i, j) counts when ∂ Σ_c out[c, row, col] / ∂ x[c', i, j] ≠ 0 for some channel c', measured
    with one backward pass through ``layer`` on a random float64 image (1, channels, size, size):
    ``layer`` maps it to (1, C_out, size, size) and must compute in float64.
    """
    require_positive_int("channels", channels)
    require_positive_int("size", size)
    for name, index in (("row", row), ("col", col)):
        if not 0 <= index < size:
            raise ValueError(f"{name} must be a pixel index in 0 … {size - 1}, got {index}")
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(1, channels, size, size, generator=generator, dtype=torch.float64)
    image.requires_grad_(True)
    output = layer(image)
    output[0, :, row, col].sum().backward()
    return image.grad[0].abs().sum(dim=0) > 0  # any channel of pixel (i, j) moves the output


__all__ = [
    "ChannelAttention",
    "PixelSelfAttention",
    "SelfAttentionBlock",
    "SpatialAttention",
    "SqueezeExcitation",
    "cbam_channel_weights",
    "cbam_spatial_attention",
    "pixel_self_attention",
    "receptive_field",
    "squeeze_excitation",
]
