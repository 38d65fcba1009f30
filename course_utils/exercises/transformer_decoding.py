"""Exercises 8.3 to 8.5 of notebook 08 (the Transformer): the warm-up schedule, one attention step
against a key/value cache, and the greedy decoding loop.

The cached step's attention and the whole model reach the learner's function as real modules
(``codec.ModuleInput``), built by ``transformer_blocks.random_module``.
"""

from __future__ import annotations

import math

import torch

from course_utils.exercises.transformer_blocks import (
    NOTEBOOK,
    random_lengths,
    random_module,
)
from course_utils.feedback.judge import close, number
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randint
from course_utils.kv_cache import KVCache, cached_self_attention
from course_utils.masks import padding_mask
from course_utils.multihead import MultiHeadAttention, split_heads
from course_utils.transformer import Seq2SeqTransformer, warmup_schedule

# --------------------------------------------------------------------------------------------------
# 8.3 the warm-up schedule


def _warmup_cases(generator: torch.Generator) -> list[Case]:
    def d_model() -> int:  # a power of two, 16 … 1024
        return 2 ** randint(generator, 4, 11)

    warmup = randint(generator, 50, 4001)
    before = randint(generator, 2, warmup)
    after = randint(generator, warmup + 1, 20 * warmup)
    short = randint(generator, 10, 500)
    return [
        # The paper's own numbers: the first step of the schedule it trained with.
        Case("step 1, d_model 512, warm-up 4000 (the paper's)", (1, 512, 4000), fixed=True),
        Case("a step during the warm-up", (before, d_model(), warmup)),
        Case("step = warm-up (where the curves meet)", (warmup, d_model(), warmup)),
        Case("a step after the warm-up", (after, d_model(), warmup)),
        Case(
            "a step far past a short warm-up",
            (randint(generator, 100 * short, 1000 * short), d_model(), short),
        ),
        Case("step 1 with a warm-up of 1 step", (1, d_model(), 1)),
    ]


@mistake("it matches max(…) instead of min(…): the rate is the smaller of the two curves")
def _max_of_curves(step, d_model, warmup_steps):
    return d_model**-0.5 * max(step**-0.5, step * warmup_steps**-1.5)


@mistake(
    "it matches step · warmup_steps^-0.5 for the warm-up: the exponent is -1.5, so both curves "
    "meet at step = warmup_steps"
)
def _warmup_exponent(step, d_model, warmup_steps):
    if step >= warmup_steps:
        return NOT_APPLICABLE  # min() picks the other curve: nothing to see here
    return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-0.5)


@mistake("it matches leaving out the factor d_model^-0.5")
def _no_model_factor(step, d_model, warmup_steps):
    return min(step**-0.5, step * warmup_steps**-1.5)


@mistake("it matches d_model^-1: the factor is d_model^-0.5, one over √d_model")
def _model_factor_squared(step, d_model, warmup_steps):
    return d_model**-1 * min(step**-0.5, step * warmup_steps**-1.5)


@mistake("it matches counting steps from 0: the first step is 1, use step as it comes")
def _zero_based(step, d_model, warmup_steps):
    if step == 1:
        return NOT_APPLICABLE  # 0^-0.5 divides by zero; step 1's answer is not its business
    return warmup_schedule(step - 1, d_model, warmup_steps)


WARMUP_SCHEDULE = Exercise(
    grade_id="ex8_3_warmup_schedule",
    notebook=NOTEBOOK,
    signature="warmup_schedule(step, d_model, warmup_steps)",
    docstring="""
        The learning rate of "Attention Is All You Need" at step = 1, 2, … (a float).

        step, d_model and warmup_steps are positive ints. The rate grows linearly with the step
        up to warmup_steps, then decays as one over the square root of the step; the two curves
        meet at warmup_steps, and both are scaled by one over √d_model (the formula above).
        Forbidden (scores 0): warmup_schedule of course_utils.transformer (reference.warmup_schedule).
    """,
    hint=(
        "two curves, one growing linearly and one decaying as one over the square root of the "
        "step; take the smaller, scaled by one over the square root of the model width"
    ),
    code_hint="return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)",
    reference=warmup_schedule,
    cases=_warmup_cases,
    judge=number("lr", rtol=1e-9),
    mistakes=(
        _max_of_curves,
        _warmup_exponent,
        _no_model_factor,
        _model_factor_squared,
        _zero_based,
    ),
)

# --------------------------------------------------------------------------------------------------
# 8.4 one attention step against a key/value cache


def cached_attention_step_reference(x_new, past_keys, past_values, attention):
    """``course_utils.kv_cache.cached_self_attention`` on a cache holding the past keys and values."""
    cache = KVCache(1)
    cache.append(0, past_keys, past_values)
    output, _ = cached_self_attention(attention, x_new, cache, 0)
    return output, cache.keys[0], cache.values[0]


def _cached_step_cases(generator: torch.Generator) -> list[Case]:
    def case(name, batch, past, embed_dim, num_heads):
        attention = random_module(MultiHeadAttention, (embed_dim, num_heads), generator)
        head_dim = embed_dim // num_heads
        x_new = torch.randn(batch, 1, embed_dim, generator=generator)
        past_keys = torch.randn(batch, num_heads, past, head_dim, generator=generator)
        past_values = torch.randn(batch, num_heads, past, head_dim, generator=generator)
        return Case(name, (x_new, past_keys, past_values, attention))

    return [
        case("B=2, E=8, 2 heads, 3 cached positions", 2, 3, 8, 2),
        case("B=1, E=12, 3 heads, 5 cached positions", 1, 5, 12, 3),
        case("B=3, E=8, 4 heads, 1 cached position", 3, 1, 8, 4),
        case("B=2, E=6, 1 head, 4 cached positions", 2, 4, 6, 1),
        case("B=2, E=8, 2 heads, an empty cache (the first step)", 2, 0, 8, 2),
    ]


def _step_attending(x_new, keys, values, attention, scale=None, dim=-1):
    """softmax(q Kᵀ · scale) V per head (over axis ``dim``), projected out; ``scale`` defaults to
    1/√d_h."""
    heads = attention.num_heads
    query = split_heads(attention.query_projection(x_new), heads)
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    weights = torch.softmax(query @ keys.transpose(-2, -1) * scale, dim=dim)
    merged = (weights @ values).transpose(1, 2).reshape(x_new.shape)
    return attention.output_projection(merged)


def _with_new_position(x_new, past_keys, past_values, attention, in_front=False):
    """The cache with the new key and value appended (or, mistakenly, put in front)."""
    heads = attention.num_heads
    key = split_heads(attention.key_projection(x_new), heads)  # k_t
    value = split_heads(attention.value_projection(x_new), heads)  # v_t
    if in_front:
        return torch.cat([key, past_keys], dim=-2), torch.cat([value, past_values], dim=-2)
    return torch.cat([past_keys, key], dim=-2), torch.cat([past_values, value], dim=-2)


@mistake(
    "it matches attending over the cached positions only: append the new key and value first, "
    "the newest token attends to itself too"
)
def _past_only(x_new, past_keys, past_values, attention):
    if past_keys.shape[-2] == 0:
        return NOT_APPLICABLE
    keys, values = _with_new_position(x_new, past_keys, past_values, attention)
    return _step_attending(x_new, past_keys, past_values, attention), keys, values


@mistake(
    "it matches putting the new key and value in front of the cache: append them at the end, "
    "position t comes after positions 1 … t-1"
)
def _prepended(x_new, past_keys, past_values, attention):
    if past_keys.shape[-2] == 0:
        return NOT_APPLICABLE
    keys, values = _with_new_position(x_new, past_keys, past_values, attention, in_front=True)
    return _step_attending(x_new, keys, values, attention), keys, values


@mistake("it matches no 1/√d_h scaling of the scores")
def _step_unscaled(x_new, past_keys, past_values, attention):
    keys, values = _with_new_position(x_new, past_keys, past_values, attention)
    return _step_attending(x_new, keys, values, attention, scale=1.0), keys, values


@mistake("it matches leaving out the output projection: finish with attention.output_projection")
def _step_without_output_projection(x_new, past_keys, past_values, attention):
    output, keys, values = cached_attention_step_reference(x_new, past_keys, past_values, attention)
    heads = attention.num_heads
    query = split_heads(attention.query_projection(x_new), heads)
    weights = torch.softmax(query @ keys.transpose(-2, -1) / math.sqrt(query.shape[-1]), dim=-1)
    return (weights @ values).transpose(1, 2).reshape(x_new.shape), keys, values


@mistake(
    "it matches a softmax over the query axis, which holds the one new position (so every weight "
    "is 1): normalise each head's scores over the t keys, the last axis"
)
def _step_softmax_over_query(x_new, past_keys, past_values, attention):
    keys, values = _with_new_position(x_new, past_keys, past_values, attention)
    if keys.shape[-2] == 1:
        return NOT_APPLICABLE  # a single key: its weight is 1 either way
    return _step_attending(x_new, keys, values, attention, dim=-2), keys, values


@mistake("it matches returning the values before the keys: return (output, keys, values)")
def _values_before_keys(x_new, past_keys, past_values, attention):
    output, keys, values = cached_attention_step_reference(x_new, past_keys, past_values, attention)
    return output, values, keys


CACHED_ATTENTION_STEP = Exercise(
    grade_id="ex8_4_cached_attention_step",
    notebook=NOTEBOOK,
    signature="cached_attention_step(x_new, past_keys, past_values, attention)",
    docstring="""
        Causal self-attention for the newest position only, against a key/value cache.

        x_new (B, 1, E): the layer's input at the new position t.
        past_keys, past_values (B, H, t-1, d_h): the cached keys and values of positions
        1 … t-1 (t-1 may be 0). attention has query_projection, key_projection,
        value_projection, output_projection and num_heads.
        Returns (output (B, 1, E), keys (B, H, t, d_h), values (B, H, t, d_h)): the
        cache with the new position's key and value appended.
        Forbidden (scores 0): cached_self_attention, MultiHeadAttention.forward (calling attention(...)).
    """,
    hint=(
        "project the new position into a query, a key and a value; the key and value join the end "
        "of the cache; the query attends over every cached position, no mask needed"
    ),
    code_hint=(
        "keys = torch.cat([past_keys, split_heads(attention.key_projection(x_new), H)], dim=-2) "
        "(same for values); scaled_dot_product_attention(q, keys, values) per head; merge_heads; "
        "attention.output_projection"
    ),
    reference=cached_attention_step_reference,
    forbidden=(
        "course_utils.kv_cache.cached_self_attention",
        "course_utils.multihead.MultiHeadAttention.forward",
    ),
    cases=_cached_step_cases,
    input_modules=(MultiHeadAttention,),
    judge=close("output", "keys", "values", atol=1e-5, rtol=1e-5),
    mistakes=(
        _past_only,
        _prepended,
        _step_unscaled,
        _step_without_output_projection,
        _step_softmax_over_query,
        _values_before_keys,
    ),
)

# --------------------------------------------------------------------------------------------------
# 8.5 the greedy decoding loop


def greedy_decode_reference(model, source, max_len, bos_index=1):
    """``Seq2SeqTransformer.greedy_decode`` with its cache: the tokens only."""
    tokens, _ = Seq2SeqTransformer.greedy_decode(model, source, max_len, bos_index=bos_index)
    return tokens


def _varied(tokens: torch.Tensor, bos_index: int) -> bool:
    """Whether greedy output ``tokens`` (B, L) tells the off-by-ones around <bos> from the answer:
    some sentence does not start with <bos>, and (L ≥ 4) some sentence changes token between its
    second and its next-to-last. A random model often repeats one token, which hides them."""
    middle = tokens[:, 1:-1]
    changes = middle.shape[1] < 2 or bool((middle != middle[:, :1]).any())
    return bool((tokens[:, 0] != bos_index).any()) and changes


def _greedy_cases(generator: torch.Generator) -> list[Case]:
    def case(name, batch, source_len, max_len, d_model, num_heads, layers, padded=True):
        source_vocab, target_vocab = 9, 11
        arguments = (source_vocab, target_vocab, d_model, num_heads, layers, layers, 2 * d_model)
        for _ in range(_DRAWS):  # the first model and source whose translation is varied
            model = random_module(Seq2SeqTransformer, arguments, generator)
            source = torch.randint(2, source_vocab, (batch, source_len), generator=generator)
            if padded:  # the first sentence is one word shorter: index 0 is <pad>
                lengths = random_lengths(batch, source_len, generator)
                source = source.masked_fill(~padding_mask(lengths, source_len), 0)
            with torch.random.fork_rng(devices=[]):  # the learner's global RNG is left alone
                built = Seq2SeqTransformer(*arguments)
            built.load_state_dict(model.state)
            if _varied(greedy_decode_reference(built, source, max_len), bos_index=1):
                break
        return Case(name, (model, source, max_len))

    return [
        case("B=2, S=5 with padding, 6 tokens, d=8, 2 heads, 1+1 layers", 2, 5, 6, 8, 2, 1),
        case("B=3, S=4 with padding, 8 tokens, d=12, 3 heads, 2+2 layers", 3, 4, 8, 12, 3, 2),
        case("B=1, S=6, no padding, 5 tokens, d=8, 4 heads, 2+2 layers", 1, 6, 5, 8, 4, 2, False),
        case("B=4, S=3 with padding, 7 tokens, d=8, 2 heads, 1+1 layers", 4, 3, 7, 8, 2, 1),
        case("B=2, S=5 with padding, 1 token, d=8, 2 heads, 1+1 layers", 2, 5, 1, 8, 2, 1),
    ]


_DRAWS = 30  # a random model repeats one token in about a third of the draws


def _decode_loop(model, source, max_len, bos_index=1, *, next_input=None, fresh_cache=False):
    """A greedy loop with one thing changed: what is fed next, or a new cache every step."""
    source_mask = source != model.pad_index
    memory = model.encode(source, source_mask)
    token = torch.full((len(source),), bos_index, dtype=torch.long)
    cache, tokens = KVCache(len(model.decoder_blocks)), []
    for _ in range(max_len):
        cache = KVCache(len(model.decoder_blocks)) if fresh_cache else cache
        logits, _ = model.decode_step(token, memory, source_mask, cache)
        chosen = logits.argmax(-1)
        tokens.append(chosen)
        token = chosen if next_input is None else next_input(token, chosen)
    return torch.stack(tokens, dim=1)


@mistake(
    "it matches feeding <bos> at every step: feed back the token just chosen, y_t = argmax of "
    "the step's logits"
)
def _always_bos(model, source, max_len, bos_index=1):
    if max_len == 1:
        return NOT_APPLICABLE
    return _decode_loop(
        model, source, max_len, bos_index, next_input=lambda previous, chosen: previous
    )


@mistake(
    "it matches a new, empty cache at every step: make one KVCache before the loop and keep it, "
    "so each step sees the earlier positions"
)
def _fresh_cache(model, source, max_len, bos_index=1):
    if max_len == 1:
        return NOT_APPLICABLE
    return _decode_loop(model, source, max_len, bos_index, fresh_cache=True)


@mistake(
    "it matches returning <bos> as the first token: return the max_len chosen tokens, without the "
    "start token"
)
def _bos_included(model, source, max_len, bos_index=1):
    tokens = greedy_decode_reference(model, source, max_len, bos_index)
    start = torch.full((len(source), 1), bos_index, dtype=tokens.dtype)
    return torch.cat([start, tokens], dim=1)[:, :max_len]


@mistake(
    "it matches returning <bos> followed by the chosen tokens, max_len + 1 columns: <bos> is only "
    "the first input; return the max_len chosen tokens alone"
)
def _bos_and_every_token(model, source, max_len, bos_index=1):
    tokens = greedy_decode_reference(model, source, max_len, bos_index)
    start = torch.full((len(source), 1), bos_index, dtype=tokens.dtype)
    return torch.cat([start, tokens], dim=1)


@mistake(
    "it matches dropping the first chosen token (one step too many, then the first column cut): "
    "the token chosen right after <bos> is the first one to return"
)
def _first_token_dropped(model, source, max_len, bos_index=1):
    return greedy_decode_reference(model, source, max_len + 1, bos_index)[:, 1:]


@mistake(
    "it matches max_len - 1 chosen tokens: run max_len steps after <bos>, each step chooses one "
    "token, and return them all"
)
def _one_step_short(model, source, max_len, bos_index=1):
    if max_len == 1:
        return NOT_APPLICABLE  # no step at all: the mistaken code raises instead
    return greedy_decode_reference(model, source, max_len - 1, bos_index)


@mistake(
    "it matches decoding without the source mask: pass source != model.pad_index as the mask, "
    "or the <pad> positions are attended to"
)
def _no_source_mask(model, source, max_len, bos_index=1):
    if bool((source != model.pad_index).all()):
        return NOT_APPLICABLE
    everything = torch.ones_like(source, dtype=torch.bool)
    return Seq2SeqTransformer.greedy_decode(
        model, source, max_len, bos_index=bos_index, source_mask=everything
    )[0]


GREEDY_DECODE = Exercise(
    grade_id="ex8_5_greedy_decode",
    notebook=NOTEBOOK,
    signature="greedy_decode(model, source, max_len, bos_index=1)",
    docstring="""
        Translate greedily, one token at a time, with a key/value cache. Returns tokens (B, max_len).

        source (B, S) int64, <pad> = model.pad_index. source_mask is a (B, S) bool key mask,
        True where source holds a real word (not <pad>): pass it as it is, without adding
        dimensions, to model.encode(source, source_mask) -> memory (B, S, d), called once, and to
        model.decode_step(token (B,), memory, source_mask, cache) -> (logits (B, V), cross_weights).
        From <bos>, call decode_step max_len times with one KVCache(len(model.decoder_blocks)),
        feeding back the most likely token each time. Return the max_len chosen tokens (not <bos>).
        Forbidden (scores 0): Seq2SeqTransformer.greedy_decode, Seq2SeqTransformer.decode.
    """,
    hint=(
        "encode the source once; start every sentence from <bos>; at each step the decoder sees only "
        "the newest token (the cache remembers the rest) and its most likely next word is fed back"
    ),
    code_hint=(
        "source_mask = source != model.pad_index; cache = KVCache(len(model.decoder_blocks)); "
        "token = torch.full((B,), bos_index); loop: logits, _ = model.decode_step(token, memory, "
        "source_mask, cache); token = logits.argmax(-1); collect; torch.stack(tokens, dim=1)"
    ),
    reference=greedy_decode_reference,
    forbidden=(
        "course_utils.transformer.Seq2SeqTransformer.greedy_decode",
        "course_utils.transformer.Seq2SeqTransformer.decode",
    ),
    cases=_greedy_cases,
    input_modules=(Seq2SeqTransformer,),
    judge=close("tokens", atol=0, rtol=0, dtype="int64"),
    mistakes=(
        _always_bos,
        _fresh_cache,
        _bos_included,
        _bos_and_every_token,
        _first_token_dropped,
        _one_step_short,
        _no_source_mask,
    ),
)


EXERCISES = (WARMUP_SCHEDULE, CACHED_ATTENTION_STEP, GREEDY_DECODE)
