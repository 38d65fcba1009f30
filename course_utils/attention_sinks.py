"""Streaming past the window: a sliding-window cache with attention sinks (Xiao et al., 2024).

A decoder that streams a text longer than anything it was trained on cannot keep every key and
value: its cache would grow without end, and its position scheme meets offsets it never saw.
StreamingLLM keeps two parts of the cache,

    cache at query i = the first s positions (the sinks) + the last w positions (the window)

and gives positions *inside the cache*, not in the text: the window's keys keep their offsets
i − j < w, and the sinks sit just before the window, at offsets of at most s + w − 1. Every offset a
query meets is then one it met in training when s + w is at most the training length.

Why keep the first tokens at all? Trained language models put a large share of many heads' attention
on the first tokens, whatever they hold: the softmax must give its mass somewhere, and the first
tokens are seen by every query. Evicting them moves that mass onto the window and changes every
output. Whether a model has such sinks is a fact about its training: :func:`attention_on_first_keys`
measures it, and notebook 13 measures what the sinks change for the tiny decoder of notebook 09.

:func:`streaming_logits` runs a :class:`~course_utils.tiny_decoder.TinyDecoder` (RoPE or ALiBi) as
if it streamed with such a cache, every query at once: the mask :func:`sink_window_mask` says which
keys are cached, and the sinks' offsets are the cache's. With ``window >= n`` it is the model itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_utils.alibi import alibi_slopes
from course_utils.helpers.validation import require_positive_int, require_shapes
from course_utils.multihead import merge_heads, split_heads
from course_utils.rotary import apply_rope
from course_utils.sliding_window import sink_window_mask
from course_utils.softmax import masked_softmax
from course_utils.tiny_decoder import GroupedSelfAttention, TinyDecoder


def cache_query_positions(n: int, window: int, sinks: int) -> torch.Tensor:
    """(n,) the position of query i inside its cache: i until the cache is full, then s + w − 1.

    The cache of query i holds positions 0 … i while i < s + w − 1; after that the s sinks sit at
    0 … s − 1 and the window's w keys at s … s + w − 1, the query itself last.
    """
    return torch.arange(n).clamp(max=sinks + window - 1)


def streaming_attention(
    attention: GroupedSelfAttention, x: torch.Tensor, window: int, sinks: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention of ``attention`` over a cache of ``sinks`` first and ``window`` last keys.

    x (B, n, E) is the layer's input. Window keys keep their offsets i − j; a sink key j is at
    offset p_i − j, p_i = :func:`cache_query_positions`. Returns the output (B, n, E) and the
    weights (B, H, n, n), zero outside the cache.
    """
    n = x.shape[-2]
    heads, kv_heads, head_dim = attention.num_heads, attention.num_kv_heads, attention.head_dim
    queries = split_heads(attention.query(x), heads)  # (B, H, n, d_h)
    keys = split_heads(attention.key(x), kv_heads)  # (B, G, n, d_h)
    values = split_heads(attention.value(x), kv_heads)
    query_positions = cache_query_positions(n, window, sinks).to(x.device)  # p_i
    window_queries = sink_queries = queries
    if attention.positions == "rope":  # q at i for window keys, at p_i for sinks; k_j at j
        window_queries, keys = apply_rope(queries), apply_rope(keys)
        sink_queries = apply_rope(queries, query_positions)
    keys = keys.repeat_interleave(heads // kv_heads, dim=1)  # key head h // (H/G)
    values = values.repeat_interleave(heads // kv_heads, dim=1)
    scale = 1.0 / math.sqrt(head_dim)
    is_sink = torch.arange(n, device=x.device) < sinks  # key j < s
    scores = (
        torch.where(  # q_i · k_j / √d_h, each key at its offset in the cache
            is_sink, sink_queries @ keys.transpose(-2, -1), window_queries @ keys.transpose(-2, -1)
        )
        * scale
    )
    if attention.positions == "alibi":  # − m_h · offset, the offset inside the cache
        key_positions = torch.arange(n, device=x.device)[None, :]
        query_at = torch.where(is_sink, query_positions[:, None], key_positions.T)  # p_i or i
        offsets = (query_at - key_positions).to(scores)
        scores = scores - alibi_slopes(heads).to(scores)[:, None, None] * offsets
    cached = sink_window_mask(n, window, sinks, x.device)  # j <= i, and a sink or in the window
    weights = masked_softmax(scores, cached)
    return attention.output(merge_heads(weights @ values)), weights


def _check_streaming(model: TinyDecoder, tokens: torch.Tensor, window: int, sinks: int) -> None:
    require_shapes(("tokens", tokens, "(batch, n)"))
    require_positive_int("window", window, "how many recent keys the cache keeps")
    if isinstance(sinks, bool) or not isinstance(sinks, int) or sinks < 0:
        raise ValueError(f"sinks must be an int >= 0 (first positions kept), got {sinks!r}")
    if model.positions not in ("rope", "alibi"):
        raise ValueError(
            "streaming needs relative positions (a model with positions 'rope' or 'alibi'): "
            f"a {model.positions!r} model adds absolute positions to its tokens, got {model.positions!r}"
        )


@torch.no_grad()
def streaming_run(
    model: TinyDecoder, tokens: torch.Tensor, window: int, sinks: int = 0
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``model`` read through a cache of ``sinks`` first and ``window`` last positions.

    tokens (B, n) → logits (B, n, classes) and each layer's weights (B, H, n, n). The blocks are
    the model's own (pre-LN, notebook 08); only the attention sees fewer keys.
    """
    _check_streaming(model, tokens, window, sinks)
    x = model.embedding(tokens)  # (B, n, E), no position table (RoPE / ALiBi)
    layer_weights = []
    for block in model.blocks:
        attended, weights = streaming_attention(
            block["attention"], block["attention_norm"](x), window, sinks
        )
        x = x + attended  # x ← x + Attn(LN(x))
        x = x + block["feed_forward"](block["feed_forward_norm"](x))  # x ← x + FFN(LN(x))
        layer_weights.append(weights)
    return model.readout(model.final_norm(x)), layer_weights


def streaming_logits(
    model: TinyDecoder, tokens: torch.Tensor, window: int, sinks: int = 0
) -> torch.Tensor:
    """The logits of :func:`streaming_run`; ``window >= n`` gives ``model(tokens)``."""
    return streaming_run(model, tokens, window, sinks)[0]


def streaming_loss(
    model: TinyDecoder,
    tokens: torch.Tensor,
    answers: torch.Tensor,
    window: int,
    sinks: int = 0,
    start: int = 0,
) -> float:
    """Cross-entropy of :func:`streaming_logits` against ``answers`` (B, n) on positions start … n − 1."""
    logits = streaming_logits(model, tokens, window, sinks)
    return F.cross_entropy(logits[:, start:].flatten(0, 1), answers[:, start:].flatten()).item()


def attention_on_first_keys(weights: torch.Tensor, first: int, start: int) -> float:
    """Mean share of attention that queries ``start`` … n − 1 give the ``first`` keys.

    ``weights`` (B, H, n, n). A model with attention sinks gives them far more than their share
    of the keys a query sees (``first`` / (i + 1) for query i, :func:`uniform_share_of_first_keys`).
    """
    require_shapes(("weights", weights, "(batch, heads, n, n)"))
    return weights[..., start:, :first].sum(dim=-1).mean().item()


def uniform_share_of_first_keys(n: int, first: int, start: int) -> float:
    """What :func:`attention_on_first_keys` would be if every query spread its attention evenly."""
    queries = torch.arange(start, n, dtype=torch.float64)
    return (first / (queries + 1)).mean().item()  # query i sees i + 1 keys


__all__ = [
    "attention_on_first_keys",
    "cache_query_positions",
    "streaming_attention",
    "streaming_logits",
    "streaming_loss",
    "streaming_run",
    "uniform_share_of_first_keys",
]
