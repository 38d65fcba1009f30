"""Exercises of notebook 13 (the KV cache at scale): bytes per token, the block-table gather, paged
attention, the absorbed MLA step, the sink + window mask."""

from __future__ import annotations

import math

import torch

from course_utils.cache_size import kv_bytes_per_token
from course_utils.feedback.judge import close, number
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randint, randn
from course_utils.latent_attention import absorbed_mla_step
from course_utils.paged_cache import UNUSED, gather_blocks, paged_attention
from course_utils.sliding_window import sink_window_mask, sliding_window_mask

NOTEBOOK = "13_kv_cache_at_scale"

# --------------------------------------------------------------------------------------------------
# 13.1 bytes per token


def _bytes_cases(generator: torch.Generator) -> list[Case]:
    def heads_and_groups(kv_heads: int | None = None) -> tuple[int, int]:
        groups = kv_heads or 2 ** randint(generator, 1, 4)  # G
        return groups * 2 ** randint(generator, 1, 4), groups  # H = G · 2^k

    def head_dim() -> int:
        return 2 ** randint(generator, 5, 9)

    gqa_heads, gqa_groups = heads_and_groups()
    mqa_heads, _ = heads_and_groups(1)
    mha_heads = 2 ** randint(generator, 2, 7)
    fp32_heads, fp32_groups = heads_and_groups()
    return [
        # A published configuration: its numbers are the point (Llama-2-7B, float16).
        Case("Llama-2-7B's configuration in float16 (the paper's)", (32, 32, 32, 128, 2), fixed=True),
        Case("grouped-query: fewer key/value heads than query heads, float16",
             (randint(generator, 2, 81), gqa_heads, gqa_groups, head_dim(), 2)),
        Case("multi-query: one key/value head, bfloat16",
             (randint(generator, 2, 81), mqa_heads, 1, head_dim(), 2)),
        Case("multi-head: as many key/value heads as query heads, float16",
             (randint(generator, 2, 81), mha_heads, mha_heads, head_dim(), 2)),
        Case("grouped-query in float32 (4 bytes per number)",
             (randint(generator, 2, 81), fp32_heads, fp32_groups, head_dim(), 4)),
        Case("one layer, 8-bit numbers", (1, gqa_heads, gqa_groups, head_dim(), 1)),
    ]  # fmt: skip


@mistake("it matches the keys alone: every layer caches a key AND a value per key/value head")
def _keys_only(layers, num_heads, num_kv_heads, head_dim, bytes_per_element):
    return kv_bytes_per_token(layers, num_heads, num_kv_heads, head_dim, bytes_per_element) // 2


@mistake(
    "it matches counting the query heads H: only the G key/value heads are cached, the query "
    "heads are recomputed at every step"
)
def _query_heads_counted(layers, num_heads, num_kv_heads, head_dim, bytes_per_element):
    if num_heads == num_kv_heads:
        return NOT_APPLICABLE
    return kv_bytes_per_token(layers, num_heads, num_heads, head_dim, bytes_per_element)


@mistake("it matches bits, not bytes: bytes_per_element is already in bytes")
def _bits(layers, num_heads, num_kv_heads, head_dim, bytes_per_element):
    return 8 * kv_bytes_per_token(layers, num_heads, num_kv_heads, head_dim, bytes_per_element)


@mistake("it matches one layer: every layer keeps its own keys and values")
def _one_layer(layers, num_heads, num_kv_heads, head_dim, bytes_per_element):
    if layers == 1:
        return NOT_APPLICABLE
    return kv_bytes_per_token(1, num_heads, num_kv_heads, head_dim, bytes_per_element)


KV_BYTES_PER_TOKEN = Exercise(
    grade_id="ex13_1_kv_bytes_per_token",
    notebook=NOTEBOOK,
    signature="kv_bytes_per_token(layers, num_heads, num_kv_heads, head_dim, bytes_per_element)",
    docstring="""
        How many bytes of keys and values one token adds to the cache (an int).

        layers decoder layers; num_heads query heads sharing num_kv_heads key/value heads
        (num_kv_heads divides num_heads: equal for multi-head, 1 for multi-query attention);
        head_dim features per head; bytes_per_element bytes per number (2 for float16).
        Forbidden (scores 0): kv_bytes_per_token and latent_bytes_per_token of
        course_utils.cache_size (cache_size.kv_bytes_per_token).
    """,
    hint=(
        "count what one token leaves in every layer: a key and a value for each key/value head, "
        "each head_dim numbers; the query heads are not kept"
    ),
    code_hint="return 2 * layers * num_kv_heads * head_dim * bytes_per_element",
    reference=kv_bytes_per_token,
    forbidden=("course_utils.cache_size.latent_bytes_per_token",),
    cases=_bytes_cases,
    judge=number("bytes per token", rtol=1e-12),
    mistakes=(_keys_only, _query_heads_counted, _bits, _one_layer),
)

# --------------------------------------------------------------------------------------------------
# 13.2 the block-table gather


def _block_table(generator, num_blocks: int, used: int, width: int) -> torch.Tensor:
    """``used`` distinct blocks of the pool in shuffled order, padded with UNUSED to ``width``."""
    table = torch.full((width,), UNUSED, dtype=torch.int64)
    table[:used] = torch.randperm(num_blocks, generator=generator)[:used]
    return table


def _gather_case(generator, heads, block_size, length, width=None, dtype=torch.float64):
    used = -(-length // block_size)
    num_blocks = used + randint(generator, 2, 6)
    pages = randn(generator, num_blocks, heads, block_size, randint(generator, 2, 6), dtype=dtype)
    return (pages, _block_table(generator, num_blocks, used, width or used), length)


def _gather_cases(generator: torch.Generator) -> list[Case]:
    def partial(block_size: int, low_blocks: int = 2) -> int:  # a length ending mid-block
        return block_size * randint(generator, low_blocks, 5) + randint(generator, 1, block_size)

    size = randint(generator, 3, 6)
    return [
        Case("several blocks in shuffled order, the last one partly filled",
             _gather_case(generator, randint(generator, 2, 4), size, partial(size))),
        Case("a length that fills its last block",
             _gather_case(generator, 2, size, size * randint(generator, 2, 5))),
        Case("one block, partly filled", _gather_case(generator, 3, size, randint(generator, 1, size))),
        Case("one head", _gather_case(generator, 1, size, partial(size))),
        Case("a block table padded with unused entries (-1)",
             _gather_case(generator, 2, size, partial(size), width=8)),
        Case("float32 pages", _gather_case(generator, 2, size, partial(size), dtype=torch.float32)),
    ]  # fmt: skip


@mistake(
    "it matches reshaping the gathered (blocks, H, block_size, d_h) straight to (H, n, d_h): "
    "move the head axis in front of the blocks first, or the heads' positions get mixed"
)
def _heads_and_blocks_mixed(pages, block_table, length):
    heads, block_size, head_dim = pages.shape[1:]
    used = -(-length // block_size)
    if heads == 1 or used == 1:
        return NOT_APPLICABLE  # nothing to mix
    return pages[block_table[:used]].reshape(heads, used * block_size, head_dim)[:, :length]


@mistake(
    "it matches reading the pool's first blocks 0, 1, 2, …: a sequence's blocks are wherever "
    "the allocator put them; read the ones its block table lists, in its order"
)
def _pool_order(pages, block_table, length):
    used = -(-length // pages.shape[2])
    if torch.equal(block_table[:used], torch.arange(used)):
        return NOT_APPLICABLE
    return gather_blocks(pages, torch.arange(pages.shape[0]), length)


@mistake(
    "it matches the blocks sorted by number: the block table's ORDER is the sequence's order "
    "(its first entry holds positions 0 … block_size - 1)"
)
def _sorted_blocks(pages, block_table, length):
    used = -(-length // pages.shape[2])
    ordered = block_table[:used].sort().values
    if torch.equal(ordered, block_table[:used]):
        return NOT_APPLICABLE
    return gather_blocks(pages, ordered, length)


@mistake(
    "it matches whole blocks, the last one's unused slots included: cut the result to the "
    "sequence's length"
)
def _whole_blocks(pages, block_table, length):
    block_size = pages.shape[2]
    if length % block_size == 0:
        return NOT_APPLICABLE
    return gather_blocks(pages, block_table, -(-length // block_size) * block_size)


@mistake(
    "it matches length // block_size blocks: a partly filled last block still holds positions, "
    "take ⌈length / block_size⌉ blocks"
)
def _last_block_dropped(pages, block_table, length):
    block_size = pages.shape[2]
    if length % block_size == 0 or length < block_size:
        return NOT_APPLICABLE
    return gather_blocks(pages, block_table, length // block_size * block_size)


GATHER_BLOCKS = Exercise(
    grade_id="ex13_2_gather_blocks",
    notebook=NOTEBOOK,
    signature="gather_blocks(pages, block_table, length)",
    docstring="""
        One sequence's keys (or values), read from the pool's blocks through its block table.

        pages (num_blocks, H, block_size, d_h), the pool; block_table (max_blocks,) int64, the
        sequence's blocks in order, then unused entries (-1); length, its number of positions.
        Returns (H, length, d_h): position t is slot t mod block_size of the table's block
        number t // block_size.
        Forbidden (scores 0): gather_blocks of course_utils.paged_cache (paged_cache.gather_blocks).
    """,
    hint=(
        "index the pool with the table's first ⌈length / block_size⌉ entries, put the blocks one "
        "after another along the position axis of each head, and cut to the length"
    ),
    code_hint=(
        "used = -(-length // block_size); blocks = pages[block_table[:used]]  # (used, H, bs, d); "
        "blocks.transpose(0, 1).reshape(H, used * block_size, d)[:, :length]"
    ),
    reference=gather_blocks,
    cases=_gather_cases,
    judge=close("keys", atol=1e-12, rtol=0),
    mistakes=(
        _heads_and_blocks_mixed,
        _pool_order,
        _sorted_blocks,
        _whole_blocks,
        _last_block_dropped,
    ),
)

# --------------------------------------------------------------------------------------------------
# 13.3 paged attention


def _paged_case(generator, lengths, heads, block_size, width=None, dtype=torch.float64):
    used = [-(-length // block_size) for length in lengths]
    width = width or max(used)
    num_blocks = sum(used) + randint(generator, 1, 5)
    head_dim = randint(generator, 3, 9)
    order = torch.randperm(num_blocks, generator=generator)  # the allocator's blocks, shuffled
    table = torch.full((len(lengths), width), UNUSED, dtype=torch.int64)
    start = 0
    for row, count in enumerate(used):
        table[row, :count] = order[start : start + count]
        start += count

    def pool():
        return randn(generator, num_blocks, heads, block_size, head_dim, dtype=dtype)

    q = randn(generator, len(lengths), heads, head_dim, dtype=dtype)
    return (q, pool(), pool(), table, torch.tensor(lengths, dtype=torch.int64))


def _paged_cases(generator: torch.Generator) -> list[Case]:
    size = randint(generator, 2, 5)

    def ragged(count: int) -> list[int]:  # lengths ending mid-block, all different
        lengths = []
        while len(lengths) < count:
            drawn = size * randint(generator, 1, 5) + randint(generator, 1, size)
            lengths += [drawn] if drawn not in lengths else []
        return lengths

    return [
        Case("three sequences of different lengths, shuffled blocks",
             _paged_case(generator, ragged(3), randint(generator, 2, 4), size)),
        Case("a sequence of one token beside longer ones",
             _paged_case(generator, [1, *ragged(2)], 2, size)),
        Case("every length a multiple of the block size",
             _paged_case(generator, [size * randint(generator, 1, 4) for _ in range(3)], 2, size)),
        Case("one sequence (B = 1)", _paged_case(generator, ragged(1), 3, size)),
        Case("one head, block tables wider than needed (-1 padding)",
             _paged_case(generator, ragged(3), 1, size, width=6)),
        Case("float32", _paged_case(generator, ragged(2), 2, size, dtype=torch.float32)),
    ]  # fmt: skip


@mistake(
    "it matches attending every slot of the last block: slots past lengths[b] hold another "
    "request's stale keys; attend positions 0 … lengths[b] - 1 only"
)
def _stale_slots(q, key_pages, value_pages, block_table, lengths):
    block_size = key_pages.shape[2]
    if bool((lengths % block_size == 0).all()):
        return NOT_APPLICABLE
    rounded = -(-lengths // block_size) * block_size
    return paged_attention(q, key_pages, value_pages, block_table, rounded)


@mistake("it matches scores without the 1/√d_h scaling, d_h = q.shape[-1]")
def _unscaled(q, key_pages, value_pages, block_table, lengths):
    return paged_attention(q * math.sqrt(q.shape[-1]), key_pages, value_pages, block_table, lengths)


@mistake(
    "it matches every sequence reading sequence 0's blocks: each row b of block_table and "
    "lengths belongs to query b"
)
def _first_table_for_all(q, key_pages, value_pages, block_table, lengths):
    if q.shape[0] == 1:
        return NOT_APPLICABLE
    batch = q.shape[0]
    return paged_attention(
        q, key_pages, value_pages, block_table[:1].expand(batch, -1), lengths[:1].expand(batch)
    )


@mistake("it matches a softmax over the heads: each head's weights sum to 1 over the positions")
def _softmax_over_heads(q, key_pages, value_pages, block_table, lengths):
    if q.shape[1] == 1:
        return NOT_APPLICABLE
    outputs = []
    for row in range(q.shape[0]):
        length = int(lengths[row])
        keys = gather_blocks(key_pages, block_table[row], length)
        values = gather_blocks(value_pages, block_table[row], length)
        scores = keys @ q[row, :, :, None] / math.sqrt(q.shape[-1])  # (H, n, 1)
        outputs.append((torch.softmax(scores, dim=0) * values).sum(dim=-2))
    return torch.stack(outputs)


PAGED_ATTENTION = Exercise(
    grade_id="ex13_3_paged_attention",
    notebook=NOTEBOOK,
    signature="paged_attention(q, key_pages, value_pages, block_table, lengths)",
    docstring="""
        One decoding step for B sequences whose keys and values live in a paged cache.

        q (B, H, d_h), one query per sequence and head; key_pages and value_pages
        (num_blocks, H, block_size, d_h), the pool; block_table (B, max_blocks) int64, row b
        sequence b's blocks in order, then -1; lengths (B,) int64. Returns (B, H, d_h): each
        head of sequence b attends with scaled dot products over its own lengths[b] positions.
        Forbidden (scores 0): paged_attention and paged_attention_batched of
        course_utils.paged_cache (paged_cache.paged_attention), torch's
        F.scaled_dot_product_attention.
    """,
    hint=(
        "for each sequence, read its keys and values through its block table (your gather, or "
        "paged_cache.gather_blocks), then attend its one query over exactly its own positions"
    ),
    code_hint=(
        "for b in range(B): n = int(lengths[b]); K = paged_cache.gather_blocks(key_pages, "
        "block_table[b], n); V likewise; w = torch.softmax(K @ q[b, :, :, None] / d**0.5, dim=-2); "
        "out[b] = (w * V).sum(dim=-2)"
    ),
    reference=paged_attention,
    forbidden=(
        "course_utils.paged_cache.paged_attention_batched",
        "torch.nn.functional.scaled_dot_product_attention",
    ),
    cases=_paged_cases,
    judge=close("output", atol=1e-6),
    mistakes=(_stale_slots, _unscaled, _first_table_for_all, _softmax_over_heads),
)

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

EXERCISES = (
    KV_BYTES_PER_TOKEN,
    GATHER_BLOCKS,
    PAGED_ATTENTION,
    ABSORBED_MLA_STEP,
    SINK_WINDOW_MASK,
)
