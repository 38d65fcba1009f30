"""The Transformer blocks, the KV cache and the warm-up schedule (course_utils.transformer, kv_cache)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.kv_cache import KVCache, cached_self_attention, kv_cache_bytes
from course_utils.masks import causal_mask, padding_mask
from course_utils.multihead import MultiHeadAttention
from course_utils.seq2seq import BOS, EOS, bucketed_batches, evaluate, make_data, train
from course_utils.transformer import (
    DecoderBlock,
    EncoderBlock,
    Seq2SeqTransformer,
    as_seq2seq,
    cross_attention_agreement,
    warmup_schedule,
)

D_MODEL, HEADS, FFN = 16, 4, 32


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _small_model(**overrides) -> Seq2SeqTransformer:
    settings = dict(d_model=D_MODEL, num_heads=HEADS, ffn_dim=FFN, max_len=64)
    settings.update(overrides)
    return Seq2SeqTransformer(11, 13, **settings).eval()


def _source_batch():
    lengths = torch.tensor([5, 3, 7])
    source = torch.randint(3, 11, (3, 7))
    source[padding_mask(lengths, 7).logical_not()] = 0  # <pad> after each sentence
    return source, padding_mask(lengths, 7)


# --------------------------------------------------------------------------------------------
# Blocks: shapes and masks


def test_encoder_block_shapes_and_padding_keys_get_zero_weight():
    block = EncoderBlock(D_MODEL, HEADS, FFN)
    x = torch.randn(3, 7, D_MODEL)
    real = padding_mask([5, 3, 7], 7)
    out, weights = block(x, real[:, None, None, :])
    assert out.shape == x.shape
    assert weights.shape == (3, HEADS, 7, 7)
    assert torch.all(weights.masked_select(~real[:, None, None, :].expand_as(weights)) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, HEADS, 7))
    # what sits in a padded position does not change the real positions' outputs
    changed = x.clone()
    changed[0, 5:] = 100.0
    out_changed, _ = block(changed, real[:, None, None, :])
    torch.testing.assert_close(out_changed[0, :5], out[0, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(out_changed[0, 5:], out[0, 5:])


def test_decoder_block_future_positions_cannot_change_past_outputs():
    block = DecoderBlock(D_MODEL, HEADS, FFN)
    y, memory = torch.randn(2, 6, D_MODEL), torch.randn(2, 4, D_MODEL)
    real = padding_mask([4, 2], 4)[:, None, None, :]
    out, cross = block(y, memory, causal_mask(6), real)
    assert out.shape == y.shape and cross.shape == (2, HEADS, 6, 4)
    assert torch.all(cross[1, ..., 2:] == 0)  # padded source keys
    perturbed = y.clone()
    perturbed[:, 3:] += torch.randn(2, 3, D_MODEL)  # change positions 3, 4, 5
    out_perturbed, _ = block(perturbed, memory, causal_mask(6), real)
    torch.testing.assert_close(out_perturbed[:, :3], out[:, :3], rtol=0, atol=1e-6)
    assert not torch.allclose(out_perturbed[:, 3:], out[:, 3:])
    # without the causal mask the past does see the future (so the test above can fail)
    unmasked, _ = block(y, memory, None, real)
    unmasked_perturbed, _ = block(perturbed, memory, None, real)
    assert not torch.allclose(unmasked_perturbed[:, :3], unmasked[:, :3])


def test_model_teacher_forcing_is_causal_and_ignores_source_padding():
    model = _small_model()
    source, source_mask = _source_batch()
    target_in = torch.randint(3, 13, (3, 5))
    logits, cross = model(source, target_in, source_mask)
    assert logits.shape == (3, 5, 13) and cross.shape == (3, 2, HEADS, 5, 7)
    assert torch.all(cross[1, ..., 3:] == 0)
    changed = target_in.clone()
    changed[:, 2:] = 4
    changed_logits, _ = model(source, changed, source_mask)
    torch.testing.assert_close(changed_logits[:, :2], logits[:, :2], rtol=0, atol=1e-5)
    padded_differently = source.clone()
    padded_differently[~source_mask] = 7  # garbage where the mask says padding
    same_logits, _ = model(padded_differently, target_in, source_mask)
    torch.testing.assert_close(same_logits, logits, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Pre-LN structure against torch's own layer


@pytest.mark.parametrize("with_padding", [False, True])
def test_encoder_block_equals_torch_pre_ln_layer(with_padding):
    layer = nn.TransformerEncoderLayer(
        D_MODEL, HEADS, FFN, dropout=0.0, batch_first=True, norm_first=True
    ).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters, so swapping them would show
        for norm in (layer.norm1, layer.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    block = EncoderBlock.from_torch(layer).eval()
    x = torch.randn(3, 7, D_MODEL)
    real = padding_mask([5, 3, 7], 7)
    with torch.no_grad():
        if with_padding:
            expected = layer(x, src_key_padding_mask=~real)  # torch: True = ignore
            got, _ = block(x, real[:, None, None, :])
            expected, got = expected[real], got[real]  # torch's fast path zeroes padded rows
        else:
            expected, got = layer(x), block(x)[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_post_ln_layer_is_not_equal():
    """The comparison above can fail: a post-LN layer with the same weights differs."""
    layer = nn.TransformerEncoderLayer(
        D_MODEL, HEADS, FFN, dropout=0.0, batch_first=True, norm_first=True
    ).eval()
    block = EncoderBlock.from_torch(layer).eval()
    layer.norm_first = False
    x = torch.randn(2, 5, D_MODEL)
    with torch.no_grad():
        assert not torch.allclose(block(x)[0], layer(x), atol=1e-3)
    with pytest.raises(ValueError, match="norm_first=True"):
        EncoderBlock.from_torch(layer)


# --------------------------------------------------------------------------------------------
# Incremental decoding with a KV cache


def test_cached_self_attention_equals_causal_attention_row_by_row():
    attention = MultiHeadAttention(D_MODEL, HEADS)
    x = torch.randn(2, 9, D_MODEL)
    full, full_weights = attention(x, x, x, causal_mask(9))
    cache = KVCache(layers=1)
    for position in range(9):
        out, weights = cached_self_attention(attention, x[:, position : position + 1], cache, 0)
        torch.testing.assert_close(out[:, 0], full[:, position], rtol=0, atol=1e-6)
        torch.testing.assert_close(
            weights[..., 0, :], full_weights[..., position, : position + 1], rtol=0, atol=1e-6
        )
    assert cache.length == 9
    # a prompt of several positions at once is causal among them
    prompt_cache = KVCache(layers=1)
    out, _ = cached_self_attention(attention, x[:, :4], prompt_cache, 0)
    torch.testing.assert_close(out, full[:, :4], rtol=0, atol=1e-6)


@pytest.mark.parametrize("use_positions", [True, False])
def test_cached_greedy_decoding_equals_recomputing_the_prefix(use_positions):
    model = _small_model(use_positions=use_positions)
    source, source_mask = _source_batch()
    steps = 24
    cached_tokens, cached_logits = model.greedy_decode(source, steps, use_cache=True)
    tokens, logits = model.greedy_decode(source, steps, use_cache=False)
    assert cached_logits.shape == (3, steps, 13) and tokens.shape == (3, steps)
    assert torch.equal(cached_tokens, tokens)
    torch.testing.assert_close(cached_logits, logits, rtol=0, atol=1e-5)
    # and each step's logits are those teacher forcing gives on the produced prefix
    target_in = torch.cat([torch.ones(3, 1, dtype=torch.long), tokens[:, :-1]], dim=1)
    forced, _ = model(source, target_in, source_mask)
    torch.testing.assert_close(cached_logits, forced, rtol=0, atol=1e-5)


def test_a_stale_cache_gives_different_logits():
    """The equality above can fail: decoding with a cache that skips a position differs."""
    model = _small_model()
    source, _ = _source_batch()
    _, logits = model.greedy_decode(source, 6, use_cache=False)
    with pytest.raises(ValueError, match="empty KVCache of 2 layers"):
        stale = KVCache(2)
        model.greedy_decode(source, 2, cache=stale)
        model.greedy_decode(source, 2, cache=stale)
    attention = model.decoder_blocks[0].self_attention
    x = torch.randn(3, 4, D_MODEL)
    full, _ = attention(x, x, x, causal_mask(4))
    cache = KVCache(1)
    cached_self_attention(attention, x[:, :1], cache, 0)
    out, _ = cached_self_attention(attention, x[:, 2:3], cache, 0)  # position 1 never cached
    assert not torch.allclose(out[:, 0], full[:, 2], atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cache_bytes_match_the_formula(dtype):
    model = _small_model(num_decoder_layers=3).to(dtype)
    source, _ = _source_batch()
    cache = KVCache(3)
    model.greedy_decode(source, 20, cache=cache)
    assert cache.length == 20
    bytes_per_element = torch.finfo(dtype).bits // 8
    head_dim = D_MODEL // HEADS
    expected = 2 * 3 * HEADS * head_dim * 20 * bytes_per_element * len(source)
    assert cache.nbytes() == expected
    assert kv_cache_bytes(3, HEADS, head_dim, 20, bytes_per_element, batch=3) == expected
    assert kv_cache_bytes(3, HEADS, head_dim, 21, bytes_per_element, batch=3) != expected


# --------------------------------------------------------------------------------------------
# The seq2seq adapter: the RNN models' training, translation and evaluation


def test_as_seq2seq_shares_weights_and_agrees_with_greedy_decode():
    data = make_data(num_pairs=40, held_out=8, seed=0)
    transformer = Seq2SeqTransformer(
        len(data.source_vocab),
        len(data.target_vocab),
        d_model=D_MODEL,
        num_heads=HEADS,
        ffn_dim=FFN,
    )
    model = as_seq2seq(transformer, data)
    assert {id(p) for p in model.parameters()} == {id(p) for p in transformer.parameters()}
    batch = bucketed_batches(data.train, data, 8)[0]
    logits, weights = model(batch)
    expected, cross = transformer(batch.source, batch.target_input, batch.source_mask)
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(weights, cross[:, -1].mean(1), rtol=0, atol=0)
    transformer.eval()
    sources = [list(source) for source, _ in data.held_out[:4]]
    translations = model.translate_batch(sources, max_len=6)
    source = batch.source.new_tensor(
        [data.source_vocab.encode(s) + [0] * (max(map(len, sources)) - len(s)) for s in sources]
    )
    tokens, _ = transformer.greedy_decode(source, 6, bos_index=data.target_vocab.stoi[BOS])
    for row, translation in enumerate(translations):
        assert translation.tokens == data.target_vocab.decode(tokens[row])
        assert translation.weights.shape[-1] == len(sources[row])
    assert data.target_vocab.stoi[EOS] == 2
    log = train(model, data, steps=2, batch_size=8, progress=False)
    assert len(log.losses) == 2
    assert evaluate(model, data.held_out[:4]).total == 4


# --------------------------------------------------------------------------------------------
# Warm-up schedule


def test_warmup_schedule_matches_the_formula_and_peaks_at_warmup():
    d_model, warmup = 64, 100
    values = [warmup_schedule(step, d_model, warmup) for step in range(1, 1001)]
    assert max(range(1000), key=values.__getitem__) + 1 == warmup
    for step in (1, 37, 100, 101, 999):
        expected = d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert warmup_schedule(step, d_model, warmup) == pytest.approx(expected, rel=1e-12)
    assert warmup_schedule(1, 64, 100) == pytest.approx(0.125 * 1e-3)  # linear start
    assert warmup_schedule(400, 64, 100) == pytest.approx(0.125 / 20)  # 1/√step decay


# --------------------------------------------------------------------------------------------
# Bad inputs name the argument, the expectation and what was got


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: warmup_schedule(0, 64, 100), "step must be a positive int.*got 0"),
        (lambda: warmup_schedule(1.5, 64, 100), "step must be a positive int.*got 1.5"),
        (lambda: warmup_schedule(1, 0, 100), "d_model must be a positive int, got 0"),
        (lambda: warmup_schedule(1, 64, -3), "warmup_steps must be a positive int, got -3"),
        (lambda: EncoderBlock(16, 3, 32), "num_heads=3 does not divide embed_dim=16"),
        (lambda: DecoderBlock(16, 4, 0), "ffn_dim must be a positive int, got 0"),
        (lambda: KVCache(0), "layers must be a positive int, got 0"),
        (lambda: kv_cache_bytes(2, 4, 16, 0), "length must be a positive int, got 0"),
        (lambda: Seq2SeqTransformer(0, 13), "source_vocab_size must be a positive int, got 0"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_tensors_raise_clear_errors():
    model = _small_model()
    source, source_mask = _source_batch()
    target_in = torch.randint(3, 13, (3, 5))
    with pytest.raises(ValueError, match=r"source_mask must have shape \(batch, S\), got \(3,\)"):
        model(source, target_in, source_mask[:, 0])
    with pytest.raises(ValueError, match="target_in has batch=2 but source has batch=3"):
        model(source, target_in[:2], source_mask)
    with pytest.raises(
        TypeError, match="source must be an integer tensor, got dtype torch.float32"
    ):
        model(source.float(), target_in, source_mask)
    with pytest.raises(TypeError, match="source_mask must be a bool tensor, got dtype torch.int64"):
        model(source, target_in, source_mask.long())
    with pytest.raises(ValueError, match="at most max_len=64 long, got 65"):
        model.greedy_decode(source, 65)
    with pytest.raises(ValueError, match="layer must be an int in 0..0, got 1"):
        KVCache(1).append(1, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"x_new must have shape \(batch, new, embed_dim=16\)"):
        cached_self_attention(MultiHeadAttention(16, 4), torch.zeros(2, 1, 8), KVCache(1), 0)


def test_encode_and_decode_step_take_the_source_mask_as_it_is():
    """Exercise 8.5 passes the (B, S) mask to both; one indexed [:, None, None, :] is refused
    with a message that says so, not with the blocks' advice to add those dimensions."""
    model = _small_model()
    source, source_mask = _source_batch()
    refused = r"source_mask must be the \(B, S\) = \(3, 7\) bool mask .* without adding dimensions"
    for wrong in (source_mask[:, None, None, :], source_mask.long(), None):
        with pytest.raises(ValueError, match=refused):
            model.encode(source, wrong)
    memory = model.encode(source, source_mask)
    token, cache = torch.ones(3, dtype=torch.long), KVCache(len(model.decoder_blocks))
    with pytest.raises(ValueError, match=refused):
        model.decode_step(token, memory, source_mask[:, None, None, :], cache)
    logits, _ = model.decode_step(token, memory, source_mask, cache)
    assert logits.shape == (3, 13)


# --------------------------------------------------------------------------------------------
# Notebook 08's supports: block classes, cross-attention agreement


def test_the_model_is_built_from_the_block_classes_it_is_given():
    calls = []

    class CountingEncoderBlock(EncoderBlock):
        def forward(self, x, mask=None):
            calls.append("encoder")
            return super().forward(x, mask)

    model = _small_model(encoder_block=CountingEncoderBlock)
    assert all(isinstance(block, CountingEncoderBlock) for block in model.encoder_blocks)
    source, mask = _source_batch()
    model(source, torch.ones(3, 2, dtype=torch.long), mask)
    assert calls == ["encoder", "encoder"]
    with pytest.raises(TypeError, match="decoder_block must be DecoderBlock or a subclass"):
        _small_model(decoder_block=EncoderBlock)
    with pytest.raises(TypeError, match="encoder_block must be EncoderBlock"):
        _small_model(encoder_block=lambda *args: None)


class _DictionaryAttention(Seq2SeqTransformer):
    """Cross weights that put everything on the dictionary's word (layer 0, head 1) or on word 0."""

    def __init__(self, data):
        super().__init__(len(data.source_vocab), len(data.target_vocab), d_model=8, num_heads=2)
        self.data = data

    def forward(self, source, target_in, source_mask):
        batch, target_len = target_in.shape
        weights = torch.zeros(batch, 2, 2, target_len, source.shape[1])
        weights[..., 0] = 1.0  # every head of every layer looks at source word 0 ...
        for row in range(batch):
            words = [self.data.source_vocab.itos[index] for index in source[row].tolist() if index]
            gold = self.data.dictionary_alignment(words)  # (French words, English words)
            weights[row, 0, 1] = 0.0  # ... except head 1 of layer 0, which reads the dictionary
            weights[row, 0, 1, : len(gold), : len(words)] = gold
        return None, weights


def test_cross_attention_agreement_counts_heads_that_look_at_the_dictionary_word():
    data = make_data(num_pairs=300, held_out=40, seed=1)
    agreement = cross_attention_agreement(_DictionaryAttention(data), data)
    assert agreement.shape == (2, 2)
    assert agreement[0, 1] == 1.0  # the argmax of a gold row is one of its gold words
    # the heads that always read word 0 agree exactly where word 0 is the dictionary's word
    expected = sum(
        sum(0 in link for link in data.gold[tuple(source)][0]) for source, _ in data.held_out
    ) / sum(len(target) for _, target in data.held_out)
    for layer, head in ((0, 0), (1, 0), (1, 1)):
        assert agreement[layer, head].item() == pytest.approx(expected)
    assert 0 < expected < 0.5


def test_an_untrained_models_heads_agree_about_as_often_as_chance():
    data = make_data(num_pairs=300, held_out=60, seed=2)
    model = Seq2SeqTransformer(
        len(data.source_vocab), len(data.target_vocab), d_model=16, num_heads=2
    )
    agreement = cross_attention_agreement(model, data)
    assert agreement.shape == (2, 2) and bool((agreement < 0.3).all())
    assert model.training  # restored
