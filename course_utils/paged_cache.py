"""A paged key/value cache: fixed-size blocks and a block table (Kwon et al., 2023, "PagedAttention").

A contiguous cache (notebook 08's ``KVCache``) gives each sequence one tensor. A server that
batches many requests must reserve, for each, room for the longest it may become; most end far
earlier, and the reserved room is wasted. vLLM borrows the operating system's answer, paging:

    the pool     key_pages, value_pages: (num_blocks, H, block_size, d_h)   fixed-size blocks
    a sequence   its block table [b_0, b_1, …]: token t lives in block b_{t // block_size},
                 slot t mod block_size

A sequence takes a new block only when its last one is full, so at most block_size − 1 slots per
sequence are unused (internal fragmentation), and a finished sequence's blocks return to the pool
for the next request. Attention reads a sequence's keys through its block table:

    K_b = [key_pages[b_0]; key_pages[b_1]; …][:length]        (:func:`gather_blocks`)
    o_b = softmax(q_b K_bᵀ / √d_h) V_b                          (:func:`paged_attention`)

equal to attention over the contiguous cache. :func:`paged_attention_batched` does every sequence
at once (the blocks of all block tables gathered in one indexing, the slots past each length
masked), tested equal to the loop.
"""

from __future__ import annotations

import math

import torch

from course_utils.helpers.validation import require_positive_int, require_shapes
from course_utils.softmax import masked_softmax, softmax

UNUSED = -1  # a block-table entry past a sequence's last block


class BlockAllocator:
    """The pool's free blocks: ``allocate()`` hands out the lowest free block, ``free`` returns one."""

    def __init__(self, num_blocks: int):
        require_positive_int("num_blocks", num_blocks)
        self.num_blocks = num_blocks
        self.free_blocks = list(range(num_blocks))  # every block free at the start

    @property
    def num_free(self) -> int:
        return len(self.free_blocks)

    def allocate(self) -> int:
        if not self.free_blocks:
            raise MemoryError(f"the pool's {self.num_blocks} blocks are all in use")
        self.free_blocks.sort()
        return self.free_blocks.pop(0)

    def free(self, block: int) -> None:
        if not 0 <= block < self.num_blocks or block in self.free_blocks:
            raise ValueError(f"block {block} is not an allocated block of 0..{self.num_blocks - 1}")
        self.free_blocks.append(block)


class PagedKVCache:
    """One layer's keys and values for many sequences, in blocks of ``block_size`` positions.

    ``append(sequence, key, value)`` stores one position (key and value (H, d_h)) of a sequence,
    taking a block from the allocator when its last block is full; ``release(sequence)`` gives
    its blocks back. ``block_tables[sequence]`` lists its blocks in order, ``lengths[sequence]``
    its positions.
    """

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        num_heads: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        for name, value in (("block_size", block_size), ("num_heads", num_heads)):
            require_positive_int(name, value)
        require_positive_int("head_dim", head_dim)
        self.block_size = block_size
        self.allocator = BlockAllocator(num_blocks)
        shape = (num_blocks, num_heads, block_size, head_dim)
        self.key_pages = torch.zeros(shape, dtype=dtype, device=device)
        self.value_pages = torch.zeros(shape, dtype=dtype, device=device)
        self.block_tables: dict[int, list[int]] = {}
        self.lengths: dict[int, int] = {}

    def append(self, sequence: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Store the next position of ``sequence`` (a new sequence starts empty)."""
        heads, head_dim = self.key_pages.shape[1], self.key_pages.shape[3]
        require_shapes(
            ("key", key, "(heads, head_dim)"),
            ("value", value, "(heads, head_dim)"),
            sizes={"heads": heads, "head_dim": head_dim},
        )
        table = self.block_tables.setdefault(sequence, [])
        length = self.lengths.get(sequence, 0)
        if length == len(table) * self.block_size:  # the last block is full (or there is none)
            table.append(self.allocator.allocate())
        block, slot = table[length // self.block_size], length % self.block_size  # t → (b, t mod)
        self.key_pages[block, :, slot] = key
        self.value_pages[block, :, slot] = value
        self.lengths[sequence] = length + 1

    def release(self, sequence: int) -> None:
        """The sequence ended: its blocks go back to the pool."""
        if sequence not in self.block_tables:
            raise KeyError(f"sequence {sequence!r} holds no blocks")
        for block in self.block_tables.pop(sequence):
            self.allocator.free(block)
        del self.lengths[sequence]

    def batch(self, sequences) -> tuple[torch.Tensor, torch.Tensor]:
        """(block_table (B, max_blocks) int64 padded with ``UNUSED``, lengths (B,) int64)."""
        tables = [self.block_tables[sequence] for sequence in sequences]
        widest = max(len(table) for table in tables)
        block_table = torch.full((len(tables), widest), UNUSED, dtype=torch.int64)
        for row, table in enumerate(tables):
            block_table[row, : len(table)] = torch.tensor(table, dtype=torch.int64)
        lengths = torch.tensor([self.lengths[sequence] for sequence in sequences])
        return block_table.to(self.key_pages.device), lengths.to(self.key_pages.device)

    def block_nbytes(self) -> int:
        """Bytes of one block's keys and values, measured on the pool's tensors."""
        page = self.key_pages[0]
        return 2 * page.numel() * page.element_size()

    def held_nbytes(self) -> int:
        """Bytes of the blocks the live sequences hold (their keys and values)."""
        held = sum(len(table) for table in self.block_tables.values())
        return held * self.block_nbytes()

    def stored_nbytes(self) -> int:
        """Bytes the stored positions themselves need: what no cache can do without."""
        return sum(self.lengths.values()) * self.block_nbytes() // self.block_size


def gather_blocks(pages: torch.Tensor, block_table: torch.Tensor, length: int) -> torch.Tensor:
    """One sequence's keys (or values) (H, length, d_h), read from its blocks in table order.

    pages (num_blocks, H, block_size, d_h); block_table (max_blocks,) int64, its first
    ⌈length / block_size⌉ entries the sequence's blocks.
    """
    require_shapes(("pages", pages, "(num_blocks, heads, block_size, head_dim)"))
    block_size = pages.shape[2]
    used = -(-length // block_size)  # ⌈length / block_size⌉ blocks hold the sequence
    blocks = pages[block_table[:used]]  # (used, H, block_size, d_h), in table order
    heads, head_dim = pages.shape[1], pages.shape[3]
    stacked = blocks.transpose(0, 1).reshape(heads, used * block_size, head_dim)  # [P_b0; P_b1; …]
    return stacked[:, :length]  # the last block's unused slots cut


def paged_attention(
    q: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor,
    block_table: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """One decoding step for B sequences whose keys and values live in pages.

    q (B, H, d_h), one query per sequence; key_pages and value_pages (num_blocks, H, block_size,
    d_h); block_table (B, max_blocks) int64; lengths (B,). Returns (B, H, d_h): sequence b's query
    attends its own lengths[b] positions, as over a contiguous cache.
    """
    _check_paged(q, key_pages, value_pages, block_table, lengths)
    outputs = []
    for sequence in range(q.shape[0]):
        length = int(lengths[sequence])
        keys = gather_blocks(key_pages, block_table[sequence], length)  # K_b: (H, n_b, d_h)
        values = gather_blocks(value_pages, block_table[sequence], length)  # V_b
        scores = keys @ q[sequence, :, :, None] / math.sqrt(q.shape[-1])  # K_b q_b / √d_h
        weights = softmax(scores, dim=-2)  # over the n_b positions
        outputs.append((weights * values).sum(dim=-2))  # Σ_t a_t v_t: (H, d_h)
    return torch.stack(outputs)


def paged_attention_batched(
    q: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor,
    block_table: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """:func:`paged_attention` for every sequence at once: one gather, the slots past each
    length masked. Equal to the loop (tested)."""
    _check_paged(q, key_pages, value_pages, block_table, lengths)
    batch, heads, head_dim = q.shape
    block_size, widest = key_pages.shape[2], block_table.shape[1]
    blocks = block_table.clamp(min=0)  # UNUSED entries read block 0, masked below

    def stacked(pages):  # (B, max_blocks, H, bs, d) → (B, H, max_blocks·bs, d)
        return pages[blocks].transpose(1, 2).reshape(batch, heads, widest * block_size, head_dim)

    keys, values = stacked(key_pages), stacked(value_pages)
    positions = torch.arange(widest * block_size, device=q.device)
    stored = positions[None, :] < lengths[:, None].to(q.device)  # (B, slots): t < length_b
    scores = (keys @ q[..., None]).squeeze(-1) / math.sqrt(head_dim)  # (B, H, slots)
    weights = masked_softmax(scores, stored[:, None, :])
    return (weights[..., None] * values).sum(dim=-2)


def _check_paged(q, key_pages, value_pages, block_table, lengths) -> None:
    sizes = require_shapes(
        ("q", q, "(B, H, d_h)"),
        ("key_pages", key_pages, "(num_blocks, H, block_size, d_h)"),
        ("value_pages", value_pages, "(num_blocks, H, block_size, d_h)"),
        ("block_table", block_table, "(B, max_blocks)"),
        ("lengths", lengths, "(B,)"),
    )
    capacity = sizes["max_blocks"] * sizes["block_size"]
    if bool((lengths < 1).any()) or bool((lengths > capacity).any()):
        raise ValueError(
            f"lengths must be between 1 and max_blocks · block_size = {capacity}, "
            f"got {lengths.tolist()}"
        )


def contiguous_nbytes(lengths, reserved_length: int, heads: int, head_dim: int, dtype) -> int:
    """Bytes of a contiguous cache that reserves ``reserved_length`` positions per sequence,
    measured on the tensor it allocates: (B, H, reserved_length, d_h), keys and values."""
    keys = torch.empty(len(lengths), heads, reserved_length, head_dim, dtype=dtype)
    return 2 * keys.numel() * keys.element_size()


__all__ = [
    "UNUSED",
    "BlockAllocator",
    "PagedKVCache",
    "contiguous_nbytes",
    "gather_blocks",
    "paged_attention",
    "paged_attention_batched",
]
