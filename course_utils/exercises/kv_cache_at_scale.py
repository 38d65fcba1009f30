"""Exercises 13.1 to 13.3 of notebook 13 (the KV cache at scale): bytes per token, the block-table
gather, paged attention. 13.4 and 13.5 (latent attention, sinks) are in ``kv_cache_latent_and_sinks``."""

from __future__ import annotations

import math

import torch

from course_utils.cache_size import kv_bytes_per_token
from course_utils.feedback.judge import close, number
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randint, randn
from course_utils.paged_cache import UNUSED, gather_blocks, paged_attention

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

EXERCISES = (KV_BYTES_PER_TOKEN, GATHER_BLOCKS, PAGED_ATTENTION)
