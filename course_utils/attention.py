"""The course's reference implementations of attention, in one namespace.

Notebooks import from here; each concept lives in its own module:

* ``softmax``      — stable softmax and masked softmax
* ``masks``        — causal and padding masks (True = may attend)
* ``pooling``      — soft lookup and Nadaraya–Watson attention pooling (notebook 01)
* ``alignment``    — additive (Bahdanau) and multiplicative (Luong) attention modules (02, 03)
* ``dot_product``  — scaled dot-product attention (04)
* ``positional``   — sinusoidal positional encodings (04)
* ``multihead``    — split/merge heads and multi-head attention (06)
* ``flash``        — tiled attention with online softmax and a recomputing backward (07)
* ``rotary`` ``alibi`` ``grouped_query`` ``sliding_window`` — RoPE, ALiBi, grouped-query attention, sliding windows (09)
* ``linear_attention`` — linear attention as a fast weight programmer, and the delta rule (10)
* ``vision_attention`` ``perceiver`` — SE, CBAM's channel and spatial attention, pixel self-attention, Perceiver cross-attention (11)
* ``ntm_addressing`` — Neural Turing Machine addressing of a memory, and its write (12)

Each function checks its inputs with one call into ``validation`` (errors name the argument, what
was expected and what was got), then reads as its equation.
"""

from course_utils.alibi import alibi_bias, alibi_slopes
from course_utils.alignment import AdditiveAttention, LuongAttention
from course_utils.dot_product import check_qkv, scaled_dot_product_attention
from course_utils.flash import flash_attention
from course_utils.grouped_query import grouped_query_attention
from course_utils.linear_attention import (
    delta_rule_attention,
    fast_weight_attention,
    linear_attention,
)
from course_utils.masks import causal_mask, padding_mask
from course_utils.multihead import MultiHeadAttention, merge_heads, split_heads
from course_utils.ntm_addressing import ntm_content_weights, ntm_sharpen, ntm_shift, ntm_write
from course_utils.perceiver import perceiver_cross_attention
from course_utils.pooling import gaussian_kernel_scores, nadaraya_watson, soft_lookup
from course_utils.positional import sinusoidal_positional_encoding
from course_utils.rotary import apply_rope
from course_utils.sliding_window import sliding_window_mask
from course_utils.softmax import masked_softmax, softmax
from course_utils.vision_attention import (
    cbam_channel_weights,
    cbam_spatial_attention,
    pixel_self_attention,
    squeeze_excitation,
)

__all__ = [
    "AdditiveAttention",
    "LuongAttention",
    "MultiHeadAttention",
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "causal_mask",
    "cbam_channel_weights",
    "cbam_spatial_attention",
    "check_qkv",
    "delta_rule_attention",
    "fast_weight_attention",
    "flash_attention",
    "gaussian_kernel_scores",
    "grouped_query_attention",
    "linear_attention",
    "masked_softmax",
    "merge_heads",
    "nadaraya_watson",
    "ntm_content_weights",
    "ntm_sharpen",
    "ntm_shift",
    "ntm_write",
    "padding_mask",
    "perceiver_cross_attention",
    "pixel_self_attention",
    "scaled_dot_product_attention",
    "sinusoidal_positional_encoding",
    "sliding_window_mask",
    "soft_lookup",
    "softmax",
    "split_heads",
    "squeeze_excitation",
]
