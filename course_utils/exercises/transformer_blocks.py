"""Exercises 8.1 and 8.2 of notebook 08 (the Transformer): the pre-LN encoder and decoder blocks.

The blocks reach the learner's function as real modules (``codec.ModuleInput``): the learner writes
the forward pass that wires their sub-layers, so the cases give every LayerNorm random gains and
biases — with the default ones (1 and 0) two norms could not be told apart. The helpers that build
such inputs serve ``transformer_decoding`` too.
"""

from __future__ import annotations

import torch

from course_utils.feedback.codec import ModuleInput
from course_utils.feedback.judge import close
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake
from course_utils.helpers.seeding import seeded
from course_utils.masks import causal_mask, padding_mask
from course_utils.transformer import DecoderBlock, EncoderBlock

NOTEBOOK = "08_transformer"


def random_module(module_class, arguments: tuple, generator: torch.Generator) -> ModuleInput:
    """``module_class(*arguments)`` with seeded weights and random LayerNorm gains and biases."""
    module_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with seeded(module_seed):  # seeded initialisation; the global RNG is untouched
        module = module_class(*arguments)
    with torch.no_grad():
        for submodule in module.modules():
            if isinstance(submodule, torch.nn.LayerNorm):
                shape = submodule.weight.shape
                submodule.weight.copy_(1 + 0.5 * torch.randn(shape, generator=generator))
                submodule.bias.copy_(0.5 * torch.randn(shape, generator=generator))
    return ModuleInput(module_class, arguments, module.state_dict())


def key_padding(lengths, length: int) -> torch.Tensor:
    """(B, 1, 1, m): True for the real keys, broadcast over heads and queries."""
    return padding_mask(torch.as_tensor(lengths), length)[:, None, None, :]


def random_lengths(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths[0] = length - 1  # at least one padded key in every such case
    return lengths


# --------------------------------------------------------------------------------------------------
# 8.1 the pre-LN encoder block


def encoder_block_reference(x, mask, block):
    """x ← x + MHA(LN₁(x)); x ← x + FFN(LN₂(x)): ``EncoderBlock.forward``."""
    return EncoderBlock.forward(block, x, mask)


def _encoder_cases(generator: torch.Generator) -> list[Case]:
    def case(name, batch, length, d_model, num_heads, ffn_dim, mask_kind):
        block = random_module(EncoderBlock, (d_model, num_heads, ffn_dim), generator)
        x = torch.randn(batch, length, d_model, generator=generator)
        if mask_kind == "padding":
            mask = key_padding(random_lengths(batch, length, generator), length)
        elif mask_kind == "causal":
            mask = causal_mask(length)
        else:
            mask = None
        return Case(name, (x, mask, block))

    return [
        case("B=2, n=5, d=8, 2 heads, FFN 16, no mask", 2, 5, 8, 2, 16, None),
        case(
            "B=3, n=6, d=8, 2 heads, FFN 16, key padding mask (B, 1, 1, n)",
            3,
            6,
            8,
            2,
            16,
            "padding",
        ),
        case("B=2, n=4, d=12, 3 heads, FFN 20, (n, n) causal mask", 2, 4, 12, 3, 20, "causal"),
        case("B=1, n=7, d=12, 4 heads, FFN 24, key padding mask", 1, 7, 12, 4, 24, "padding"),
        case("B=2, n=1, d=6, 1 head, FFN 12, one position", 2, 1, 6, 1, 12, None),
    ]


def _self_attended(x, mask, block):
    """MHA(LN₁(x)) and its weights: the first sub-layer's branch, which every variant below shares."""
    normed = block.attention_norm(x)
    return block.self_attention(normed, normed, normed, mask)


@mistake(
    "it matches the post-LN block of the 2017 paper, x ← LN(x + MHA(x)): here each sub-layer reads "
    "LN(x) and adds its output to the un-normalised x"
)
def _post_norm(x, mask, block):
    attended, weights = block.self_attention(x, x, x, mask)
    x = block.attention_norm(x + attended)
    return block.feed_forward_norm(x + block.feed_forward(x)), weights


@mistake(
    "it matches adding the attention's output to LN(x) instead of x: the residual stream carries x "
    "itself, x ← x + MHA(LN(x))"
)
def _residual_from_normed(x, mask, block):
    attended, weights = _self_attended(x, mask, block)
    x = block.attention_norm(x) + attended
    return x + block.feed_forward(block.feed_forward_norm(x)), weights


@mistake(
    "it matches adding the feed-forward's output to LN₂(x) instead of x: the residual stream "
    "carries x itself, x ← x + FFN(LN₂(x))"
)
def _feed_forward_residual_from_normed(x, mask, block):
    attended, weights = _self_attended(x, mask, block)
    x = x + attended
    normed = block.feed_forward_norm(x)
    return normed + block.feed_forward(normed), weights


@mistake(
    "it matches adding each sub-layer's output to the normalised stream, LN(x) + sub-layer(LN(x)), "
    "in both sub-layers: the residual stream carries x itself, add each output to x"
)
def _both_residuals_from_normed(x, mask, block):
    normed = block.attention_norm(x)
    attended, weights = block.self_attention(normed, normed, normed, mask)
    x = normed + attended
    normed = block.feed_forward_norm(x)
    return normed + block.feed_forward(normed), weights


@mistake("it matches no residual around the attention: x ← x + MHA(LN(x)), keep the x + …")
def _no_attention_residual(x, mask, block):
    x, weights = _self_attended(x, mask, block)
    return x + block.feed_forward(block.feed_forward_norm(x)), weights


def _feed_forward_reading(norm, x, mask, block):
    """The right attention sub-layer, then x ← x + FFN(norm(x)): two mistakes pick the wrong norm."""
    attended, weights = _self_attended(x, mask, block)
    x = x + attended
    return x + block.feed_forward(norm(x)), weights


@mistake(
    "it matches the feed-forward reading x without its LayerNorm: x ← x + FFN(LN₂(x)) with "
    "block.feed_forward_norm"
)
def _feed_forward_unnormed(x, mask, block):
    return _feed_forward_reading(lambda stream: stream, x, mask, block)


@mistake(
    "it matches one LayerNorm used for both sub-layers: the feed-forward has its own, "
    "block.feed_forward_norm"
)
def _one_norm_for_both(x, mask, block):
    return _feed_forward_reading(block.attention_norm, x, mask, block)


@mistake(
    "it matches the attention and the feed-forward both reading the block's input (the parallel "
    "block): the feed-forward reads x after the attention has been added"
)
def _parallel_sublayers(x, mask, block):
    attended, weights = _self_attended(x, mask, block)
    return x + attended + block.feed_forward(block.feed_forward_norm(x)), weights


@mistake("it matches ignoring the mask: pass it to block.self_attention")
def _encoder_mask_ignored(x, mask, block):
    if mask is None:
        return NOT_APPLICABLE
    return EncoderBlock.forward(block, x, None)


ENCODER_BLOCK = Exercise(
    grade_id="ex8_1_encoder_block",
    notebook=NOTEBOOK,
    signature="encoder_block(x, mask, block)",
    docstring="""
        One pre-LN encoder block. Returns (x, weights).

        x (B, n, d); mask None or bool, True = may attend, broadcastable to (B, H, n, n).
        block has block.attention_norm, block.self_attention (multi-head attention,
        called as block.self_attention(query, key, value, mask) -> (output, weights)),
        block.feed_forward_norm and block.feed_forward. Returns x (B, n, d) and the
        attention weights (B, H, n, n).
        Forbidden (scores 0): EncoderBlock.forward, i.e. calling block(...) itself.
    """,
    hint=(
        "two residual sub-layers: each reads a LayerNorm of the stream and adds its output back to "
        "the stream itself; attention first, then the feed-forward"
    ),
    code_hint=(
        "normed = block.attention_norm(x); attended, weights = block.self_attention(normed, normed, "
        "normed, mask); x = x + attended; x = x + block.feed_forward(block.feed_forward_norm(x))"
    ),
    reference=encoder_block_reference,
    forbidden=("course_utils.transformer.EncoderBlock.forward",),
    cases=_encoder_cases,
    input_modules=(EncoderBlock,),
    judge=close("x", "weights", atol=1e-5, rtol=1e-5),
    mistakes=(
        _post_norm,
        _residual_from_normed,
        _feed_forward_residual_from_normed,
        _both_residuals_from_normed,
        _no_attention_residual,
        _feed_forward_unnormed,
        _one_norm_for_both,
        _parallel_sublayers,
        _encoder_mask_ignored,
    ),
)

# --------------------------------------------------------------------------------------------------
# 8.2 the decoder block


def decoder_block_reference(y, memory, self_mask, memory_mask, block):
    """y ← y + MHA(LN(y); causal); y ← y + MHA(LN(y), M, M); y ← y + FFN(LN(y))."""
    return DecoderBlock.forward(block, y, memory, self_mask, memory_mask)


def _decoder_cases(generator: torch.Generator) -> list[Case]:
    def case(name, batch, target, source, d_model, num_heads, ffn_dim, padded=True, causal=True):
        block = random_module(DecoderBlock, (d_model, num_heads, ffn_dim), generator)
        y = torch.randn(batch, target, d_model, generator=generator)
        memory = torch.randn(batch, source, d_model, generator=generator)
        self_mask = causal_mask(target) if causal else None
        memory_mask = (
            key_padding(random_lengths(batch, source, generator), source) if padded else None
        )
        return Case(name, (y, memory, self_mask, memory_mask, block))

    return [
        case("B=2, T=4, S=5, d=8, 2 heads, causal mask, source padding", 2, 4, 5, 8, 2, 16),
        case("B=3, T=5, S=3, d=12, 3 heads, causal mask, source padding", 3, 5, 3, 12, 3, 20),
        case(
            "B=2, T=3, S=6, d=8, 4 heads, causal mask, no source padding", 2, 3, 6, 8, 4, 16, False
        ),
        case("B=1, T=S=5, d=6, 2 heads, causal mask, source padding", 1, 5, 5, 6, 2, 12),
        case("B=2, T=1, S=5, d=8, 1 head, one target position", 2, 1, 5, 8, 1, 16),
    ]


def _decoder_variant(y, memory, self_mask, memory_mask, block, *, cross_keys=None, order="sca"):
    """A mis-wired decoder block: ``cross_keys(normed y, memory)`` gives the cross-attention's keys and
    values; ``order`` is the order of self-attention (s), cross-attention (c) and the FFN (a)."""
    cross_weights = None
    for sublayer in order:
        if sublayer == "s":
            normed = block.attention_norm(y)
            attended, _ = block.self_attention(normed, normed, normed, self_mask)
        elif sublayer == "c":
            normed = block.cross_attention_norm(y)
            keys = memory if cross_keys is None else cross_keys(normed, memory)
            attended, cross_weights = block.cross_attention(normed, keys, keys, memory_mask)
        else:
            attended = block.feed_forward(block.feed_forward_norm(y))
        y = y + attended
    return y, cross_weights


@mistake(
    "it matches the cross-attention attending over the target again: its keys and values are the "
    "encoder's output, block.cross_attention(LN(y), memory, memory, memory_mask)"
)
def _cross_over_target(y, memory, self_mask, memory_mask, block):
    if memory_mask is not None:
        return NOT_APPLICABLE  # the (B, 1, 1, S) mask does not fit T keys
    return _decoder_variant(
        y, memory, self_mask, self_mask, block, cross_keys=lambda normed, memory: normed
    )


@mistake(
    "it matches normalising the memory with block.cross_attention_norm: that norm is for the "
    "queries; the encoder's output is already normalised, use memory as it comes"
)
def _memory_normed(y, memory, self_mask, memory_mask, block):
    return _decoder_variant(
        y,
        memory,
        self_mask,
        memory_mask,
        block,
        cross_keys=lambda normed, memory: block.cross_attention_norm(memory),
    )


@mistake(
    "it matches the cross-attention before the self-attention: causal self-attention comes first"
)
def _cross_first(y, memory, self_mask, memory_mask, block):
    return _decoder_variant(y, memory, self_mask, memory_mask, block, order="csa")


@mistake(
    "it matches self-attention without the causal mask: pass self_mask to block.self_attention, "
    "or each position sees the words after it"
)
def _no_causal_mask(y, memory, self_mask, memory_mask, block):
    if self_mask is None or y.shape[1] == 1:
        return NOT_APPLICABLE
    return DecoderBlock.forward(block, y, memory, None, memory_mask)


@mistake("it matches the cross-attention ignoring memory_mask: padded source words get weight")
def _memory_mask_ignored(y, memory, self_mask, memory_mask, block):
    if memory_mask is None:
        return NOT_APPLICABLE
    return DecoderBlock.forward(block, y, memory, self_mask, None)


@mistake(
    "it matches returning the self-attention's weights: return the cross-attention's, "
    "(B, H, T, S), the ones that align target words with source words"
)
def _self_weights_returned(y, memory, self_mask, memory_mask, block):
    if y.shape[1] != memory.shape[1]:
        return NOT_APPLICABLE  # shapes differ: no value to match
    normed = block.attention_norm(y)
    _, self_weights = block.self_attention(normed, normed, normed, self_mask)
    output, _ = DecoderBlock.forward(block, y, memory, self_mask, memory_mask)
    return output, self_weights


@mistake(
    "it matches adding each sub-layer's output to the normalised stream, LN(y) + sub-layer(LN(y)): "
    "the residual stream carries y itself, add each output to y"
)
def _decoder_residuals_from_normed(y, memory, self_mask, memory_mask, block):
    normed = block.attention_norm(y)
    y = normed + block.self_attention(normed, normed, normed, self_mask)[0]
    normed = block.cross_attention_norm(y)
    attended, cross_weights = block.cross_attention(normed, memory, memory, memory_mask)
    y = normed + attended
    normed = block.feed_forward_norm(y)
    return normed + block.feed_forward(normed), cross_weights


DECODER_BLOCK = Exercise(
    grade_id="ex8_2_decoder_block",
    notebook=NOTEBOOK,
    signature="decoder_block(y, memory, self_mask, memory_mask, block)",
    docstring="""
        One pre-LN decoder block. Returns (y, cross_weights).

        y (B, T, d), the target so far; memory (B, S, d), the encoder's output.
        self_mask: bool, True = may attend, broadcastable to (B, H, T, T) (causal), or None;
        memory_mask: bool, broadcastable to (B, H, T, S) (source padding), or None.
        block has attention_norm, self_attention, cross_attention_norm, cross_attention,
        feed_forward_norm, feed_forward; each attention is called as
        attention(query, key, value, mask) -> (output, weights).
        Returns y (B, T, d) and the cross-attention weights (B, H, T, S).
        Forbidden (scores 0): DecoderBlock.forward (calling block(...) itself), DecoderBlock.step,
        DecoderBlock._cross_and_feed_forward.
    """,
    hint=(
        "three residual sub-layers, each reading a LayerNorm of the stream: masked self-attention "
        "over the target, then attention from the target to the source, then the feed-forward"
    ),
    code_hint=(
        "normed = block.cross_attention_norm(y); attended, cross_weights = "
        "block.cross_attention(normed, memory, memory, memory_mask); y = y + attended — between "
        "the self-attention (with self_mask) and the feed-forward"
    ),
    reference=decoder_block_reference,
    forbidden=(
        "course_utils.transformer.DecoderBlock.forward",
        "course_utils.transformer.DecoderBlock._cross_and_feed_forward",
        "course_utils.transformer.DecoderBlock.step",  # the same block, one position at a time
    ),
    cases=_decoder_cases,
    input_modules=(DecoderBlock,),
    judge=close("y", "cross_weights", atol=1e-5, rtol=1e-5),
    mistakes=(
        _cross_over_target,
        _memory_normed,
        _cross_first,
        _no_causal_mask,
        _memory_mask_ignored,
        _self_weights_returned,
        _decoder_residuals_from_normed,
    ),
)


EXERCISES = (ENCODER_BLOCK, DECODER_BLOCK)
