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

Each function checks its inputs with one call into ``validation`` (errors name the argument, what
was expected and what was got), then reads as its equation.
"""

from course_utils.alignment import AdditiveAttention, LuongAttention
from course_utils.dot_product import check_qkv, scaled_dot_product_attention
from course_utils.flash import flash_attention
from course_utils.masks import causal_mask, padding_mask
from course_utils.multihead import MultiHeadAttention, merge_heads, split_heads
from course_utils.pooling import gaussian_kernel_scores, nadaraya_watson, soft_lookup
from course_utils.positional import sinusoidal_positional_encoding
from course_utils.softmax import masked_softmax, softmax

__all__ = [
    "AdditiveAttention",
    "LuongAttention",
    "MultiHeadAttention",
    "causal_mask",
    "check_qkv",
    "flash_attention",
    "gaussian_kernel_scores",
    "masked_softmax",
    "merge_heads",
    "nadaraya_watson",
    "padding_mask",
    "scaled_dot_product_attention",
    "sinusoidal_positional_encoding",
    "soft_lookup",
    "softmax",
    "split_heads",
]
