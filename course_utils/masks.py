"""Boolean attention masks. Convention throughout the course: True = this query may attend this key.

That is the convention of ``torch.nn.functional.scaled_dot_product_attention``. Beware:
``torch.nn.MultiheadAttention``'s ``key_padding_mask`` and ``attn_mask`` (bool) use the opposite,
True = ignore. Notebook 05 shows the pitfall.
"""

from __future__ import annotations

import torch

from course_utils.helpers.validation import require_dtype, require_positive_int, require_shapes


def causal_mask(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(n, n) bool: query i may attend key j iff j <= i (lower triangle, diagonal included)."""
    require_positive_int("n", n)
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()  # M_ij = (j <= i)


def padding_mask(lengths, max_len: int | None = None) -> torch.Tensor:
    """(B, max_len) bool: True for the first lengths[b] positions of sequence b (real tokens).

    Broadcast it over queries with ``mask[:, None, :]`` to get a (B, 1, max_len) key mask.
    """
    lengths = torch.as_tensor(lengths)
    require_shapes(("lengths", lengths, "(batch,)"))
    require_dtype("integer", lengths=lengths)
    if (lengths < 0).any():
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    longest = int(lengths.max()) if lengths.numel() else 0
    if max_len is None:
        max_len = longest
    if max_len < longest:
        raise ValueError(f"max_len={max_len} is shorter than the longest length {longest}")
    positions = torch.arange(max_len, device=lengths.device)  # j = 0 … max_len - 1
    return positions[None, :] < lengths[:, None]  # M_bj = (j < length_b)
