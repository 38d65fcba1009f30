"""Notebook 13's library against the plain computation: bytes per token, the paged cache, multi-head
latent attention, the sink + window mask and streaming with sinks; and classic learner mistakes in its
exercises, written as a learner would write them, NAMED by check()."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from course_utils.attention_sinks import (
    attention_on_first_keys,
    cache_query_positions,
    streaming_attention,
    streaming_logits,
    uniform_share_of_first_keys,
)
from course_utils.cache_size import PUBLISHED, kv_bytes_per_token, latent_bytes_per_token
from course_utils.checks import CheckFailed, check
from course_utils.display.block_table_explorer import BlockTableExplorer, replay_schedule
from course_utils.dot_product import scaled_dot_product_attention
from course_utils.exercises import find_exercise
from course_utils.latent_attention import (
    LatentCache,
    MultiHeadLatentAttention,
    absorbed_mla_step,
    expanded_mla_step,
)
from course_utils.masks import causal_mask
from course_utils.multihead import merge_heads, split_heads
from course_utils.paged_cache import (
    BlockAllocator,
    PagedKVCache,
    contiguous_nbytes,
    gather_blocks,
    paged_attention,
    paged_attention_batched,
)
from course_utils.rotary import apply_rope
from course_utils.sliding_window import sink_window_mask, sliding_window_mask
from course_utils.tiny_decoder import TinyDecoder

# --------------------------------------------------------------------------------------------------
# bytes per token


def test_bytes_per_token_counts_keys_and_values_of_the_kv_heads_only():
    assert kv_bytes_per_token(32, 32, 32, 128, 2) == 2 * 32 * 32 * 128 * 2
    assert kv_bytes_per_token(80, 64, 8, 128, 2) == 2 * 80 * 8 * 128 * 2  # H does not count
    assert latent_bytes_per_token(60, 512, 64, 2) == 60 * 576 * 2


def test_published_configurations_give_the_papers_numbers():
    per_token = {model.name: model.bytes_per_token(2) for model in PUBLISHED}
    assert per_token == {
        "Llama-2-7B": 512 * 1024,
        "Llama-2-70B": 320 * 1024,
        "Falcon-7B": 8 * 1024,
        "DeepSeek-V2": 69_120,
    }
    assert all(model.source for model in PUBLISHED)
    # DeepSeek-V2 §2.1.4: the MLA cache equals GQA with 2.25 groups of d_h = 128
    assert per_token["DeepSeek-V2"] == kv_bytes_per_token(60, 128, 1, 128, 2) * 2.25


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0, 8, 8, 64), "layers must be a positive int"),
        ((2, 8, 3, 64), "num_kv_heads=3 does not divide"),
    ],
)
def test_bytes_per_token_refuses_bad_configurations(arguments, message):
    with pytest.raises(ValueError, match=message):
        kv_bytes_per_token(*arguments)


# --------------------------------------------------------------------------------------------------
# the paged cache


def filled_cache(lengths, heads=3, head_dim=5, block_size=4, seed=0):
    """A paged cache holding random keys and values for each length, appended interleaved, and the
    same keys and values kept contiguously (H, n, d_h)."""
    generator = torch.Generator().manual_seed(seed)
    cache = PagedKVCache(64, block_size, heads, head_dim, dtype=torch.float64)
    kept = {
        sequence: tuple(
            torch.randn(heads, length, head_dim, generator=generator, dtype=torch.float64)
            for _ in range(2)
        )
        for sequence, length in enumerate(lengths)
    }
    for position in range(max(lengths)):
        for sequence, length in enumerate(lengths):
            if position < length:
                keys, values = kept[sequence]
                cache.append(sequence, keys[:, position], values[:, position])
    return cache, kept


def test_gather_reads_each_sequence_back_in_order():
    cache, kept = filled_cache([7, 1, 12, 4])
    for sequence, (keys, values) in kept.items():
        table = torch.tensor(cache.block_tables[sequence])
        length = cache.lengths[sequence]
        assert torch.equal(gather_blocks(cache.key_pages, table, length), keys)
        assert torch.equal(gather_blocks(cache.value_pages, table, length), values)


def test_paged_attention_equals_attention_over_the_contiguous_cache():
    lengths = [7, 1, 12, 4, 9]
    cache, kept = filled_cache(lengths)
    block_table, stored = cache.batch(range(len(lengths)))
    queries = torch.randn(
        len(lengths), 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    looped = paged_attention(queries, cache.key_pages, cache.value_pages, block_table, stored)
    batched = paged_attention_batched(
        queries, cache.key_pages, cache.value_pages, block_table, stored
    )
    for sequence, (keys, values) in kept.items():
        expected, _ = scaled_dot_product_attention(queries[sequence][:, None], keys, values)
        torch.testing.assert_close(looped[sequence], expected[:, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-12)


def test_blocks_are_allocated_one_at_a_time_and_reused_after_release():
    cache, _ = filled_cache([4, 5, 9], block_size=4)
    assert {s: len(t) for s, t in cache.block_tables.items()} == {0: 1, 1: 2, 2: 3}
    freed = set(cache.block_tables[2])
    cache.release(2)
    for _ in range(8):
        cache.append(
            7, torch.zeros(3, 5, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)
        )
    assert set(cache.block_tables[7]) <= freed
    unit = cache.block_nbytes() // 4  # one position's keys and values
    assert cache.stored_nbytes() == (4 + 5 + 8) * unit
    assert cache.held_nbytes() == (1 + 2 + 2) * 4 * unit


def test_the_allocator_refuses_running_out_and_double_frees():
    allocator = BlockAllocator(2)
    first = allocator.allocate()
    allocator.allocate()
    with pytest.raises(MemoryError, match="all in use"):
        allocator.allocate()
    allocator.free(first)
    with pytest.raises(ValueError, match="not an allocated block"):
        allocator.free(first)
    with pytest.raises(KeyError):
        PagedKVCache(4, 2, 1, 2).release(3)


def test_paged_attention_refuses_lengths_beyond_the_table():
    cache, _ = filled_cache([3, 5])
    block_table, _ = cache.batch([0, 1])
    with pytest.raises(ValueError, match="lengths must be between 1 and"):
        paged_attention(
            torch.zeros(2, 3, 5, dtype=torch.float64), cache.key_pages, cache.value_pages,
            block_table, torch.tensor([3, 99]),
        )  # fmt: skip


def test_contiguous_bytes_are_measured_on_the_reserved_tensor():
    assert contiguous_nbytes([3, 120], 120, 4, 32, torch.float32) == 2 * 2 * 4 * 120 * 32 * 4


# --------------------------------------------------------------------------------------------------
# multi-head latent attention


@pytest.mark.parametrize("seed", range(3))
def test_absorbed_step_equals_the_expanded_one(seed):
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    batch, heads, head_dim, rope_dim, latent_dim, n = 2, 3, 4, 2, 7, 5
    arguments = (
        draw(batch, heads, head_dim), draw(batch, heads, rope_dim), draw(batch, n, latent_dim),
        draw(batch, n, rope_dim), draw(heads, head_dim, latent_dim), draw(heads, head_dim, latent_dim),
    )  # fmt: skip
    torch.testing.assert_close(
        absorbed_mla_step(*arguments), expanded_mla_step(*arguments), rtol=0, atol=1e-12
    )


def test_decoding_with_the_latent_cache_equals_the_expanded_forward():
    torch.manual_seed(0)
    layer = MultiHeadLatentAttention(16, 4, 8, 12, 4).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    cache = LatentCache()
    with torch.no_grad():
        decoded = torch.cat([layer.step(x[:, t : t + 1], cache) for t in range(9)], dim=1)
        torch.testing.assert_close(decoded, layer(x), rtol=0, atol=1e-12)
    assert cache.nbytes() == 2 * 9 * latent_bytes_per_token(1, 12, 4, 8)


def test_mla_forward_is_the_plain_per_head_computation():
    """Keys and values built per head from the latent, RoPE on the decoupled part, one softmax."""
    torch.manual_seed(1)
    layer = MultiHeadLatentAttention(8, 2, 4, 6, 2).double()
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    latent = x @ layer.down_kv.weight.T
    rope_keys = apply_rope(x @ layer.key_rope.weight.T)
    heads = []
    for head in range(2):
        rows = slice(4 * head, 4 * head + 4)
        keys = latent @ layer.up_key.weight[rows].T
        values = latent @ layer.up_value.weight[rows].T
        queries = x @ layer.query.weight[rows].T
        rope_queries = apply_rope(x @ layer.query_rope.weight[2 * head : 2 * head + 2].T)
        scores = (
            queries @ keys.transpose(-2, -1) + rope_queries @ rope_keys.transpose(-2, -1)
        ) / math.sqrt(6)
        scores = scores.masked_fill(~causal_mask(5), -math.inf)
        heads.append(torch.softmax(scores, dim=-1) @ values)
    expected = torch.cat(heads, dim=-1) @ layer.output.weight.T
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# the sink + window mask, streaming


def test_sink_window_mask_is_the_plain_rule():
    n, window, sinks = 11, 3, 2
    expected = torch.tensor(
        [[j <= i and (j > i - window or j < sinks) for j in range(n)] for i in range(n)]
    )
    assert torch.equal(sink_window_mask(n, window, sinks), expected)
    assert torch.equal(sink_window_mask(n, window, 0), sliding_window_mask(n, window))
    assert torch.equal(sink_window_mask(6, 9, 2), causal_mask(6))
    with pytest.raises(ValueError, match="sinks must be an int >= 0"):
        sink_window_mask(5, 2, -1)


@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_streaming_with_the_whole_sequence_in_the_window_is_the_model(positions):
    torch.manual_seed(0)
    model = TinyDecoder(16, 9, positions, layers=2)
    tokens = torch.randint(0, 16, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(streaming_logits(model, tokens, 20, 0), model(tokens))


def test_streaming_refuses_absolute_positions():
    model = TinyDecoder(16, 9, "sinusoidal")
    with pytest.raises(ValueError, match="relative positions"):
        streaming_logits(model, torch.zeros(1, 4, dtype=torch.int64), 2, 1)


def test_streaming_attention_equals_attention_over_the_compacted_cache():
    """Query i against the cache it would hold while streaming: the sinks and the window, at the
    cache's positions 0 … s + w − 1 (RoPE)."""
    torch.manual_seed(2)
    attention = (
        TinyDecoder(16, 9, "rope", embed_dim=16, num_heads=2).blocks[0]["attention"].double()
    )
    n, window, sinks = 14, 4, 2
    x = torch.randn(1, n, 16, dtype=torch.float64)
    with torch.no_grad():
        streamed, weights = streaming_attention(attention, x, window, sinks)
        for i in range(n):
            kept = sorted({*range(min(sinks, i + 1)), *range(max(0, i - window + 1), i + 1)})
            cached = x[:, kept]
            queries = apply_rope(split_heads(attention.query(cached), 2))[:, :, -1:]
            keys = apply_rope(split_heads(attention.key(cached), 2))
            values = split_heads(attention.value(cached), 2)
            output, _ = scaled_dot_product_attention(queries, keys, values)
            expected = attention.output(merge_heads(output))[:, 0]
            torch.testing.assert_close(streamed[:, i], expected, rtol=0, atol=1e-12)
    assert torch.equal(weights[0, 0] > 0, sink_window_mask(n, window, sinks))
    assert cache_query_positions(n, window, sinks).tolist() == [0, 1, 2, 3, 4] + [5] * (n - 5)


def test_attention_on_first_keys_of_an_even_spread_is_the_even_share():
    n = 12
    even = causal_mask(n).double() / torch.arange(1, n + 1, dtype=torch.float64)[:, None]
    share = attention_on_first_keys(even[None, None], first=2, start=3)
    assert share == pytest.approx(uniform_share_of_first_keys(n, first=2, start=3))


# --------------------------------------------------------------------------------------------------
# the explorer


def test_the_explorer_replays_the_schedule_and_follows_its_slider():
    schedule = [("grow", 0, 5), ("grow", 1, 2), ("end", 0), ("grow", 2, 6)]
    snapshots = replay_schedule(schedule, num_blocks=6, block_size=4)
    assert snapshots[0].owners[:2] == (0, 0) and snapshots[0].filled[:2] == (4, 1)
    assert snapshots[2].block_tables == {1: (2,)}
    assert set(snapshots[3].block_tables[2]) == {0, 1}  # request 0's freed blocks, reused
    explorer = BlockTableExplorer(schedule, num_blocks=6, block_size=4)
    explorer.slider.value = 3
    assert explorer.current == snapshots[3] and explorer.redraws == 2
    assert "sequence 2 grows by 6" in explorer.current_title
    with pytest.raises(ValueError, match="an event is"):
        replay_schedule([("shrink", 0)], 4, 2)


STATIC_PROGRAM = """
import sys
sys.modules["ipywidgets"] = None  # no ipywidgets at all
import matplotlib
matplotlib.use("Agg")
from course_utils.display import widgets
from course_utils.display.block_table_explorer import BlockTableExplorer
assert widgets.INTERACTIVE is False
explorer = BlockTableExplorer([("grow", 0, 5), ("end", 0), ("grow", 1, 3)], num_blocks=4, block_size=4)
explorer.slider.value = 2
print("tables", explorer.current.block_tables, "redraws", explorer.redraws)
"""


def test_the_explorer_falls_back_to_a_static_figure():
    result = subprocess.run(
        [sys.executable, "-c", STATIC_PROGRAM], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tables {1: (0,)} redraws 2" in result.stdout  # request 0's first block, reused


# --------------------------------------------------------------------------------------------------
# learners' mistakes, named


def assert_named(grade_id: str, function, start: str) -> None:
    messages = {m.message for m in find_exercise(grade_id).mistakes if m.message.startswith(start)}
    assert len(messages) == 1, messages
    with pytest.raises(CheckFailed) as failure:
        check(grade_id, function)
    assert messages.pop() in str(failure.value), str(failure.value)


def test_13_1_keys_only_is_named():
    def kv_bytes_per_token(layers, num_heads, num_kv_heads, head_dim, bytes_per_element):
        return layers * num_kv_heads * head_dim * bytes_per_element

    assert_named("ex13_1_kv_bytes_per_token", kv_bytes_per_token, "it matches the keys alone")


def test_13_2_reshape_without_moving_the_heads_is_named():
    def gather_blocks(pages, block_table, length):
        used = -(-length // pages.shape[2])
        blocks = pages[block_table[:used]]
        return blocks.reshape(pages.shape[1], -1, pages.shape[3])[:, :length]

    assert_named("ex13_2_gather_blocks", gather_blocks, "it matches reshaping the gathered")


def test_13_3_attending_the_whole_last_block_is_named():
    def paged_attention(q, key_pages, value_pages, block_table, lengths):
        block_size, outputs = key_pages.shape[2], []
        for b in range(q.shape[0]):
            used = -(-int(lengths[b]) // block_size)
            keys = torch.cat(list(key_pages[block_table[b, :used]].unbind(0)), dim=1)
            values = torch.cat(list(value_pages[block_table[b, :used]].unbind(0)), dim=1)
            weights = torch.softmax(keys @ q[b, :, :, None] / q.shape[-1] ** 0.5, dim=-2)
            outputs.append((weights * values).sum(dim=-2))
        return torch.stack(outputs)

    assert_named("ex13_3_paged_attention", paged_attention, "it matches attending every slot")


def test_13_4_scaling_by_the_head_dimension_alone_is_named():
    def absorbed_mla_step(
        query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up
    ):
        absorbed = torch.einsum("bhk,hkc->bhc", query_content, key_up)
        scores = absorbed @ latent_cache.transpose(-2, -1)
        scores = scores + query_rope @ rope_key_cache.transpose(-2, -1)
        weights = torch.softmax(scores / query_content.shape[-1] ** 0.5, dim=-1)
        return torch.einsum("bhc,hkc->bhk", weights @ latent_cache, value_up)

    assert_named(
        "ex13_4_absorbed_mla_step", absorbed_mla_step, "it matches scaling by 1/√d_h alone"
    )


def test_13_5_sinks_without_the_causal_rule_are_named():
    def sink_window_mask(n, window, sinks):
        i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
        return ((j <= i) & (j > i - window)) | (j < sinks)

    assert_named("ex13_5_sink_window_mask", sink_window_mask, "it matches the sinks visible")
