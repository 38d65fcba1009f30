"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), pre-LayerNorm, small.

Every block is a residual stream that sub-layers read through a LayerNorm and write back into
(pre-LN, Xiong et al., 2020: trains without a careful warm-up, unlike the paper's post-LN):

    encoder block:  x ← x + MHA(LN(x), LN(x), LN(x); padding mask)           self-attention
                    x ← x + FFN(LN(x)),   FFN(z) = max(0, z W_1 + b_1) W_2 + b_2

    decoder block:  y ← y + MHA(LN(y), LN(y), LN(y); causal mask)            masked self-attention
                    y ← y + MHA(LN(y), M, M; source padding mask)            cross-attention
                    y ← y + FFN(LN(y))

where M is the encoder's output. Masks are boolean, True = may attend (notebook 05); the
attention is the course's :class:`~course_utils.multihead.MultiHeadAttention` (notebook 06).
Greedy decoding one token at a time can reuse the keys and values of earlier positions
(``course_utils.kv_cache``). The token embeddings are *not* multiplied by √d_model: on this
small model that drowns the sinusoidal positions (notebook 08 shows it).
"""

from __future__ import annotations

import torch
from torch import nn

from course_utils.helpers.validation import require_dtype, require_positive_int, require_shapes
from course_utils.kv_cache import KVCache, cached_self_attention
from course_utils.masks import causal_mask, padding_mask
from course_utils.multihead import MultiHeadAttention
from course_utils.positional import sinusoidal_positional_encoding
from course_utils.seq2seq.data import TranslationData, make_batch
from course_utils.seq2seq.model import Seq2Seq


def warmup_schedule(step: int, d_model: int, warmup_steps: int) -> float:
    """lr(step) = d_model^-0.5 · min(step^-0.5, step · warmup^-1.5), step ≥ 1 (Vaswani et al.).

    Linear growth for ``warmup_steps`` steps, then decay as 1/√step; the peak is at step = warmup.
    """
    require_positive_int("step", step, "the first step is 1")
    require_positive_int("d_model", d_model)
    require_positive_int("warmup_steps", warmup_steps)
    return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def position_wise_feed_forward(d_model: int, ffn_dim: int) -> nn.Sequential:
    """FFN(z) = max(0, z W_1 + b_1) W_2 + b_2, the same two layers at every position."""
    return nn.Sequential(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, d_model))


class _PreNormBlock(nn.Module):
    """What both blocks have: LN + multi-head self-attention, LN + position-wise feed-forward."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int):
        super().__init__()
        require_positive_int("ffn_dim", ffn_dim)
        self.attention_norm = nn.LayerNorm(d_model)
        self.self_attention = MultiHeadAttention(d_model, num_heads)
        self.feed_forward_norm = nn.LayerNorm(d_model)
        self.feed_forward = position_wise_feed_forward(d_model, ffn_dim)


class EncoderBlock(_PreNormBlock):
    """Pre-LN encoder block: ``forward(x (B, n, d), mask)`` → (x (B, n, d), weights (B, H, n, n)).

    ``mask`` (bool, True = may attend) broadcasts to (B, H, n, n): a (B, n) padding mask goes in as
    ``mask[:, None, None, :]``.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        normed = self.attention_norm(x)  # LN(x)
        attended, weights = self.self_attention(normed, normed, normed, mask)
        x = x + attended  # x ← x + MHA(LN(x))
        x = x + self.feed_forward(self.feed_forward_norm(x))  # x ← x + FFN(LN(x))
        return x, weights

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderBlock:
        """An EncoderBlock computing what a ReLU, ``norm_first=True`` torch layer computes (eval)."""
        if not isinstance(layer, nn.TransformerEncoderLayer) or not layer.norm_first:
            raise ValueError(
                "layer must be a torch.nn.TransformerEncoderLayer with norm_first=True, "
                f"got {type(layer).__name__}"
                + (" with norm_first=False" if isinstance(layer, nn.Module) else "")
            )
        attention = layer.self_attn
        block = cls(attention.embed_dim, attention.num_heads, layer.linear1.out_features)
        block.self_attention = MultiHeadAttention.from_torch(attention)
        pairs = (
            (block.attention_norm, layer.norm1),
            (block.feed_forward_norm, layer.norm2),
            (block.feed_forward[0], layer.linear1),
            (block.feed_forward[2], layer.linear2),
        )
        for ours, theirs in pairs:
            ours.load_state_dict(theirs.state_dict())
        return block


class DecoderBlock(_PreNormBlock):
    """Pre-LN decoder block: causal self-attention, cross-attention over the encoder output, FFN.

    ``forward(y (B, T, d), memory (B, S, d), self_mask, memory_mask)`` → (y, cross weights
    (B, H, T, S)); ``step`` does the same for the newest position against a :class:`KVCache`.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int):
        super().__init__(d_model, num_heads, ffn_dim)
        self.cross_attention_norm = nn.LayerNorm(d_model)
        self.cross_attention = MultiHeadAttention(d_model, num_heads)

    def _cross_and_feed_forward(self, y, memory, memory_mask):
        normed = self.cross_attention_norm(y)
        # y ← y + MHA(LN(y), M, M): queries from the target, keys and values from the source
        attended, cross_weights = self.cross_attention(normed, memory, memory, memory_mask)
        y = y + attended
        y = y + self.feed_forward(self.feed_forward_norm(y))  # y ← y + FFN(LN(y))
        return y, cross_weights

    def forward(self, y, memory, self_mask=None, memory_mask=None):
        normed = self.attention_norm(y)
        attended, _ = self.self_attention(normed, normed, normed, self_mask)
        y = y + attended  # y ← y + MHA(LN(y); causal)
        return self._cross_and_feed_forward(y, memory, memory_mask)

    def step(self, y_new, memory, cache: KVCache, layer: int, memory_mask=None):
        """The newest position y_new (B, 1, d) only; its key and value join ``cache``'s layer."""
        # y_t ← y_t + MHA(LN(y_t), LN(y_≤t), LN(y_≤t)), the earlier keys and values from the cache
        normed = self.attention_norm(y_new)
        attended, _ = cached_self_attention(self.self_attention, normed, cache, layer)
        y_new = y_new + attended
        return self._cross_and_feed_forward(y_new, memory, memory_mask)


class Seq2SeqTransformer(nn.Module):
    """Embeddings (+ sinusoidal positions), encoder stack, decoder stack, output projection.

    ``use_positions=False`` is the ablation without positional encodings: the encoder then sees a
    bag of words. Index ``pad_index`` of both vocabularies is padding. ``encoder_block`` and
    ``decoder_block`` are the block classes (notebook 08 passes subclasses whose ``forward`` is the
    learner's).
    """

    def __init__(
        self,
        source_vocab_size: int,
        target_vocab_size: int,
        d_model: int = 64,
        num_heads: int = 4,
        num_encoder_layers: int = 2,
        num_decoder_layers: int = 2,
        ffn_dim: int = 256,
        use_positions: bool = True,
        max_len: int = 512,
        pad_index: int = 0,
        encoder_block: type[EncoderBlock] = EncoderBlock,
        decoder_block: type[DecoderBlock] = DecoderBlock,
    ):
        super().__init__()
        for name, value in (
            ("source_vocab_size", source_vocab_size),
            ("target_vocab_size", target_vocab_size),
            ("num_encoder_layers", num_encoder_layers),
            ("num_decoder_layers", num_decoder_layers),
            ("max_len", max_len),
        ):
            require_positive_int(name, value)
        self.d_model, self.num_heads, self.pad_index = d_model, num_heads, pad_index
        self.use_positions, self.max_len = use_positions, max_len
        self.source_embedding = nn.Embedding(source_vocab_size, d_model, padding_idx=pad_index)
        self.target_embedding = nn.Embedding(target_vocab_size, d_model, padding_idx=pad_index)
        self.register_buffer(
            "positions", sinusoidal_positional_encoding(max_len, d_model), persistent=False
        )  # PE: (max_len, d)
        for name, block_class, base in (
            ("encoder_block", encoder_block, EncoderBlock),
            ("decoder_block", decoder_block, DecoderBlock),
        ):
            if not (isinstance(block_class, type) and issubclass(block_class, base)):
                raise TypeError(
                    f"{name} must be {base.__name__} or a subclass, got {block_class!r}"
                )
        self.encoder_blocks = nn.ModuleList(
            encoder_block(d_model, num_heads, ffn_dim) for _ in range(num_encoder_layers)
        )
        self.decoder_blocks = nn.ModuleList(
            decoder_block(d_model, num_heads, ffn_dim) for _ in range(num_decoder_layers)
        )
        self.encoder_norm = nn.LayerNorm(d_model)  # pre-LN stacks end with a LayerNorm
        self.decoder_norm = nn.LayerNorm(d_model)
        self.output_projection = nn.Linear(d_model, target_vocab_size)

    def _embed(self, embedding: nn.Embedding, tokens: torch.Tensor, start: int = 0):
        x = embedding(tokens)  # (B, n, d)
        end = start + tokens.shape[1]
        if end > self.max_len:
            raise ValueError(f"sequences must be at most max_len={self.max_len} long, got {end}")
        return x + self.positions[start:end] if self.use_positions else x  # x_i + PE[i]

    @staticmethod
    def _require_source_mask(source_mask, batch_and_length: tuple[int, int]) -> None:
        """``source_mask`` is the (B, S) bool key mask: the blocks get it as ``[:, None, None, :]``."""
        if not (
            isinstance(source_mask, torch.Tensor)
            and source_mask.dtype == torch.bool
            and tuple(source_mask.shape) == tuple(batch_and_length)
        ):
            got = (
                f"a {source_mask.dtype} tensor of shape {tuple(source_mask.shape)}"
                if isinstance(source_mask, torch.Tensor)
                else repr(source_mask)
            )
            raise ValueError(
                f"source_mask must be the (B, S) = {tuple(batch_and_length)} bool mask of real "
                f"words (True = not <pad>), got {got}: pass it as it is, without adding dimensions; "
                "encode and decode_step add the head and query dimensions themselves"
            )

    def encode(self, source: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        """M = LN(encoder blocks(embed(source) + PE)): (B, S, d). source_mask: (B, S) bool."""
        self._require_source_mask(source_mask, source.shape[:2])
        x = self._embed(self.source_embedding, source)
        for block in self.encoder_blocks:
            x, _ = block(x, source_mask[:, None, None, :])  # padding keys get zero weight
        return self.encoder_norm(x)

    def decode(self, target_in, memory, source_mask):
        """Teacher-forced decoder: logits (B, T, V) and cross weights (B, layers, H, T, S)."""
        y = self._embed(self.target_embedding, target_in)
        future = causal_mask(target_in.shape[1], device=target_in.device)  # M_ij = (j ≤ i)
        cross_weights = []
        for block in self.decoder_blocks:
            y, weights = block(y, memory, future, source_mask[:, None, None, :])
            cross_weights.append(weights)
        return self.output_projection(self.decoder_norm(y)), torch.stack(cross_weights, 1)

    def _check(self, source, source_mask, target_in=None):
        tensors = [("source", source, "(batch, S)"), ("source_mask", source_mask, "(batch, S)")]
        if target_in is not None:
            tensors.append(("target_in", target_in, "(batch, T)"))
        require_shapes(*tensors)
        require_dtype(
            "integer", source=source, **({} if target_in is None else {"target_in": target_in})
        )
        require_dtype("bool", source_mask=source_mask)

    def forward(self, source, target_in, source_mask):
        """Teacher forcing: logits (B, T, V) and cross-attention weights (B, layers, H, T, S)."""
        self._check(source, source_mask, target_in)
        return self.decode(target_in, self.encode(source, source_mask), source_mask)

    @torch.no_grad()
    def greedy_decode(
        self,
        source,
        max_len: int,
        use_cache: bool = True,
        bos_index: int = 1,
        source_mask=None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed back the most likely token ``max_len`` times: tokens (B, max_len), logits (B, max_len, V).

        ``use_cache=True`` runs each step on the newest token against a :class:`KVCache`;
        ``False`` reruns the decoder on the whole prefix and keeps the last position's logits.
        ``source_mask`` defaults to ``source != pad_index``. Pass an empty ``cache`` to inspect it
        afterwards (its size: ``cache.nbytes()``).
        """
        require_positive_int("max_len", max_len)
        source_mask = source != self.pad_index if source_mask is None else source_mask
        self._check(source, source_mask)
        memory = self.encode(source, source_mask)
        prefix = torch.full((len(source), 1), bos_index, dtype=torch.long, device=source.device)
        cache = KVCache(len(self.decoder_blocks)) if cache is None else cache
        if cache.layers != len(self.decoder_blocks) or cache.length:
            raise ValueError(
                f"cache must be an empty KVCache of {len(self.decoder_blocks)} layers, got one of "
                f"{cache.layers} layers holding {cache.length} positions"
            )
        step_logits = []
        for _ in range(max_len):
            if use_cache:  # only the newest token y_t goes through the decoder
                logits, _ = self.decode_step(prefix[:, -1], memory, source_mask, cache)
            else:  # the whole prefix y_1 … y_t again, every step
                logits = self.decode(prefix, memory, source_mask)[0][:, -1]
            step_logits.append(logits)
            prefix = torch.cat([prefix, logits.argmax(-1, keepdim=True)], dim=1)
        return prefix[:, 1:], torch.stack(step_logits, 1)

    def decode_step(self, token, memory, source_mask, cache: KVCache):
        """One cached step for the newest token (B,): logits (B, V), cross weights (B, layers, H, S).

        The token sits at position ``cache.length``; every layer's key and value join ``cache``.
        ``source_mask`` is the (B, S) bool key mask, as :meth:`encode` takes it.
        """
        self._require_source_mask(source_mask, memory.shape[:2])
        y = self._embed(self.target_embedding, token[:, None], start=cache.length)  # y_t + PE[t]
        cross_weights = []
        for layer, block in enumerate(self.decoder_blocks):
            y, weights = block.step(y, memory, cache, layer, source_mask[:, None, None, :])
            cross_weights.append(weights[..., 0, :])  # (B, H, S)
        logits = self.output_projection(self.decoder_norm(y))[:, 0]
        return logits, torch.stack(cross_weights, 1)


# --------------------------------------------------------------------------------------------------
# Plugging into course_utils.seq2seq: its training loop, greedy translation and evaluation
# --------------------------------------------------------------------------------------------------


class _EncoderAdapter(nn.Module):
    """seq2seq's encoder protocol: ``(source, lengths)`` → (encoder states, summary = None)."""

    def __init__(self, transformer: Seq2SeqTransformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, source, lengths):
        return self.transformer.encode(source, padding_mask(lengths, source.shape[1])), None


class _DecoderAdapter(nn.Module):
    """seq2seq's decoder protocol: ``forward`` (teacher forcing), ``start`` and ``step`` (cached).

    The weights it returns are the last decoder layer's cross-attention, averaged over heads.
    """

    uses_attention = True

    def __init__(self, transformer: Seq2SeqTransformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, target_input, encoder_states, summary, source_mask):
        logits, cross_weights = self.transformer.decode(target_input, encoder_states, source_mask)
        return logits, cross_weights[:, -1].mean(dim=1)  # (B, T, S)

    def start(self, encoder_states, summary, source_mask) -> dict:
        layers = len(self.transformer.decoder_blocks)
        return {"memory": encoder_states, "mask": source_mask, "cache": KVCache(layers)}

    def step(self, previous_token, state: dict):
        logits, cross_weights = self.transformer.decode_step(
            previous_token, state["memory"], state["mask"], state["cache"]
        )
        return logits, cross_weights[:, -1].mean(dim=1)  # (B, S)


def as_seq2seq(transformer: Seq2SeqTransformer, data: TranslationData, name: str = "transformer"):
    """A ``seq2seq.Seq2Seq`` sharing ``transformer``'s weights: ``seq2seq.train``, ``evaluate``,
    ``translate`` and ``alignment_agreement`` then work on it as on the RNN models."""
    if not isinstance(transformer, Seq2SeqTransformer):
        raise TypeError(
            f"transformer must be a Seq2SeqTransformer, got {type(transformer).__name__}"
        )
    return Seq2Seq(_EncoderAdapter(transformer), _DecoderAdapter(transformer), data, name=name)


@torch.no_grad()
def cross_attention_agreement(
    transformer: Seq2SeqTransformer, data: TranslationData, pairs=None
) -> torch.Tensor:
    """(layers, heads): how often each cross-attention head looks where the dictionary says.

    Every pair of ``pairs`` (default: the held-out pairs) is teacher-forced on its reference
    translation. At the position that produces French word k, a head *agrees* when its largest
    weight falls on a source word the dictionary aligns word k with (``data.gold``). The result is
    the fraction of all French words, over all pairs, on which each head agrees.
    """
    pairs = data.held_out if pairs is None else pairs
    layers, heads = len(transformer.decoder_blocks), transformer.num_heads
    agreeing, words = torch.zeros(layers, heads), 0
    device = transformer.output_projection.weight.device
    was_training = transformer.training
    transformer.eval()
    for start in range(0, len(pairs), 200):
        chunk = pairs[start : start + 200]
        batch = make_batch(chunk, data.source_vocab, data.target_vocab).to(device)
        _, weights = transformer(batch.source, batch.target_input, batch.source_mask)
        strongest = weights.argmax(dim=-1).cpu()  # (B, layers, H, T): the source word each looks at
        for row, (source, target) in enumerate(chunk):
            links, _ = data.gold[tuple(source)]
            gold = torch.zeros(len(target), len(source), dtype=torch.bool)  # word k ↔ source j
            for word, link in enumerate(links):
                gold[word, list(link)] = True
            looked_at = strongest[row, :, :, : len(target)]  # (layers, H, words)
            hits = gold[torch.arange(len(target)), looked_at]  # gold[k, argmax_j α_kj]
            agreeing += hits.sum(dim=-1)
            words += len(target)
    transformer.train(was_training)
    return agreeing / words
