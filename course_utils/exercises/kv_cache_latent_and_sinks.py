"""Exercises 13.4 and 13.5 of notebook 13 (the KV cache at scale): the absorbed multi-head latent
attention step and the sink + window mask."""

from __future__ import annotations

import math

import torch

from course_utils.exercises.kv_cache_at_scale import NOTEBOOK
from course_utils.feedback.judge import close
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randint, randn
from course_utils.latent_attention import absorbed_mla_step
from course_utils.sliding_window import sink_window_mask, sliding_window_mask

# --------------------------------------------------------------------------------------------------
# 13.4 the absorbed MLA step


def _mla_case(generator, batch, heads, head_dim, latent_dim, n, dtype=torch.float64):
    rope_dim = 2 * randint(generator, 1, 3)

    def draw(*shape):
        return randn(generator, *shape, dtype=dtype)

    return (
        draw(batch, heads, head_dim),  # query_content
        draw(batch, heads, rope_dim),  # query_rope
        draw(batch, n, latent_dim),  # latent_cache
        draw(batch, n, rope_dim),  # rope_key_cache
        draw(heads, head_dim, latent_dim) / math.sqrt(latent_dim),  # key_up
        draw(heads, head_dim, latent_dim) / math.sqrt(latent_dim),  # value_up
    )


def _mla_cases(generator: torch.Generator) -> list[Case]:
    def size(low: int, high: int) -> int:
        return randint(generator, low, high)

    head_dim = size(2, 6)
    return [
        Case("two heads, a few cached tokens", _mla_case(generator, 2, 2, head_dim, size(6, 10), size(3, 8))),
        Case("one cached token (the first step)", _mla_case(generator, 2, 3, head_dim, size(6, 10), 1)),
        Case("a latent wider than a head", _mla_case(generator, 1, 4, head_dim, head_dim + size(4, 8), size(3, 8))),
        Case("a latent narrower than a head", _mla_case(generator, 2, 2, size(6, 9), size(2, 5), size(3, 8))),
        Case("one head", _mla_case(generator, 2, 1, head_dim, size(6, 10), size(3, 8))),
        Case("float32", _mla_case(generator, 2, 2, head_dim, size(6, 10), size(3, 8), dtype=torch.float32)),
    ]  # fmt: skip


def _scaled_by(features: int, query_content, query_rope, *cache):
    """The absorbed step with its scores divided by √features instead of √(d_h + d_h^R)."""
    factor = math.sqrt((query_content.shape[-1] + query_rope.shape[-1]) / features)
    return absorbed_mla_step(query_content * factor, query_rope * factor, *cache)


@mistake(
    "it matches scaling by 1/√d_h alone: the score adds a content and a RoPE dot product, so "
    "scale by 1/√(d_h + d_h^R)"
)
def _head_dim_scale(query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up):
    cache = (latent_cache, rope_key_cache, key_up, value_up)
    return _scaled_by(query_content.shape[-1], query_content, query_rope, *cache)


@mistake(
    "it matches scaling by 1/√d_c, the latent's size: the scores are dot products of "
    "d_h + d_h^R features, scale by 1/√(d_h + d_h^R)"
)
def _latent_scale(query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up):
    if latent_cache.shape[-1] == query_content.shape[-1] + query_rope.shape[-1]:
        return NOT_APPLICABLE
    cache = (latent_cache, rope_key_cache, key_up, value_up)
    return _scaled_by(latent_cache.shape[-1], query_content, query_rope, *cache)


@mistake(
    "it matches leaving out the RoPE part: add q^R · k^R_j (the decoupled positions) to each "
    "content score"
)
def _rope_dropped(query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up):
    return absorbed_mla_step(
        query_content, torch.zeros_like(query_rope), latent_cache, rope_key_cache, key_up, value_up
    )


@mistake(
    "it matches key_up and value_up swapped: key_up absorbs into the query, value_up expands "
    "the weighted latent"
)
def _up_projections_swapped(
    query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up
):
    return absorbed_mla_step(
        query_content, query_rope, latent_cache, rope_key_cache, value_up, key_up
    )


@mistake(
    "it matches returning the weighted sum of latents (B, H, d_c): expand it to each head's "
    "d_h features with value_up"
)
def _not_expanded(query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up):
    identity = torch.eye(latent_cache.shape[-1], dtype=value_up.dtype)
    identity = identity.expand(value_up.shape[0], -1, -1)
    return absorbed_mla_step(
        query_content, query_rope, latent_cache, rope_key_cache, key_up, identity
    )


ABSORBED_MLA_STEP = Exercise(
    grade_id="ex13_4_absorbed_mla_step",
    notebook=NOTEBOOK,
    signature="absorbed_mla_step(query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up)",
    docstring="""
        One decoding step of multi-head latent attention, reading only what MLA caches.

        query_content (B, H, d_h) and query_rope (B, H, d_r): the new token's content and RoPE
        queries (already rotated); latent_cache (B, n, d_c): the cached latents; rope_key_cache
        (B, n, d_r): the cached RoPE keys, shared by the heads; key_up and value_up (H, d_h, d_c):
        head h's up-projections. Returns each head's output (B, H, d_h). Absorb key_up into the
        query; build no per-head key or value tensor of the n positions.
        Forbidden (scores 0): absorbed_mla_step and expanded_mla_step of
        course_utils.latent_attention (latent_attention.absorbed_mla_step), torch's
        F.scaled_dot_product_attention.
    """,
    hint=(
        "turn each head's content query into a query over latents with key_up, score it against "
        "the latents and add the RoPE scores, softmax over the n tokens, mix the latents with "
        "those weights, and only then expand with value_up"
    ),
    code_hint=(
        "absorbed = torch.einsum('bhk,hkc->bhc', query_content, key_up); scores = (absorbed @ "
        "latent_cache.transpose(-2, -1) + query_rope @ rope_key_cache.transpose(-2, -1)) / "
        "(d_h + d_r) ** 0.5; mix = torch.softmax(scores, -1) @ latent_cache; "
        "return torch.einsum('bhc,hkc->bhk', mix, value_up)"
    ),
    reference=absorbed_mla_step,
    forbidden=(
        "course_utils.latent_attention.expanded_mla_step",
        "torch.nn.functional.scaled_dot_product_attention",
    ),
    cases=_mla_cases,
    judge=close("output", atol=1e-5, rtol=1e-5),
    mistakes=(
        _head_dim_scale,
        _latent_scale,
        _rope_dropped,
        _up_projections_swapped,
        _not_expanded,
    ),
)

# --------------------------------------------------------------------------------------------------
# 13.5 the sink + window mask


def _sink_cases(generator: torch.Generator) -> list[Case]:
    window = randint(generator, 2, 6)
    return [
        Case("a window and sinks, a sequence several windows long",
             (window * randint(generator, 3, 5), window, randint(generator, 2, 5))),
        Case("one sink", (randint(generator, 8, 16), randint(generator, 2, 5), 1)),
        Case("no sink: the plain window", (randint(generator, 6, 14), window, 0)),
        Case("a window of 1 (the query itself) and sinks",
             (randint(generator, 6, 12), 1, randint(generator, 2, 4))),
        Case("more sinks than the window", (randint(generator, 10, 16), 2, randint(generator, 3, 6))),
        Case("a window longer than the sequence", (randint(generator, 4, 9), 12, randint(generator, 1, 3))),
    ]  # fmt: skip


@mistake(
    "it matches the sinks visible to every query, even queries before them: a sink is still a "
    "key, and no key after the query may be seen"
)
def _sinks_see_the_future(n, window, sinks):
    if sinks <= 1:
        return NOT_APPLICABLE
    return sink_window_mask(n, window, sinks) | (torch.arange(n)[None, :] < sinks)


@mistake("it matches sinks + 1 first positions: the sinks are positions 0 … sinks - 1")
def _one_sink_too_many(n, window, sinks):
    if window >= n:
        return NOT_APPLICABLE
    return sink_window_mask(n, window, sinks + 1)


@mistake(
    "it matches the plain sliding window: also keep the first `sinks` positions for every query"
)
def _sinks_ignored(n, window, sinks):
    if sinks == 0 or window >= n:
        return NOT_APPLICABLE
    return sliding_window_mask(n, window)


@mistake(
    "it matches a window of window + 1 keys: the window is the query itself and the window - 1 "
    "keys before it"
)
def _window_one_too_many(n, window, sinks):
    if window >= n:
        return NOT_APPLICABLE
    return sink_window_mask(n, window + 1, sinks)


@mistake("it matches the sinks alone (and the query itself): keep the window of recent keys too")
def _window_ignored(n, window, sinks):
    if window == 1:
        return NOT_APPLICABLE
    return sink_window_mask(n, 1, sinks)


SINK_WINDOW_MASK = Exercise(
    grade_id="ex13_5_sink_window_mask",
    notebook=NOTEBOOK,
    signature="sink_window_mask(n, window, sinks)",
    docstring="""
        The (n, n) bool mask of a sliding window with attention sinks, True = may attend.

        Query i sees key i itself and the window - 1 keys just before it, as in notebook 09, and
        also the first `sinks` positions of the sequence; never a key after i. sinks 0 gives the
        plain window; window at least n gives the causal mask.
        Forbidden (scores 0): sink_window_mask, sliding_window_mask and band_mask of
        course_utils.sliding_window (sliding_window.sink_window_mask).
    """,
    hint=(
        "start from the sliding-window rule of notebook 09 and let a second condition, 'the key "
        "is one of the first sinks positions', also open a key; the causal rule stays for both"
    ),
    code_hint=(
        "i = torch.arange(n)[:, None]; j = torch.arange(n)[None, :]; "
        "return (j <= i) & ((j > i - window) | (j < sinks))"
    ),
    reference=sink_window_mask,
    forbidden=(
        "course_utils.sliding_window.sliding_window_mask",
        "course_utils.sliding_window.band_mask",
    ),
    cases=_sink_cases,
    judge=close("mask"),
    mistakes=(
        _sinks_see_the_future,
        _one_sink_too_many,
        _sinks_ignored,
        _window_one_too_many,
        _window_ignored,
    ),
)

EXERCISES = (ABSORBED_MLA_STEP, SINK_WINDOW_MASK)
