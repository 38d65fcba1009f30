"""Part II (notebooks 08–12), taken as a learner would: one classic mistake per exercise, written as
plain code the way a learner would write it, must fail ``check()`` with the mistake NAMED.

Each test asserts that the failure message holds the spec's message for that mistake, so a mistake
that is only caught ("80 of 80 values differ", a bare shape) fails here. The mistaken functions are
the learner's own code: calling a function of ``course_utils.exercises`` would be refused as a
shortcut.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import CheckFailed, check
from course_utils.exercises import find_exercise
from course_utils.kv_cache import KVCache


def named_mistake(grade_id: str, start: str) -> str:
    """The one message of exercise ``grade_id``'s named mistakes that starts with ``start``."""
    messages = {m.message for m in find_exercise(grade_id).mistakes if m.message.startswith(start)}
    assert len(messages) == 1, (grade_id, start, messages)
    return messages.pop()


def failure_of(grade_id: str, function) -> str:
    with pytest.raises(CheckFailed) as failure:
        check(grade_id, function)
    return str(failure.value)


def assert_named(grade_id: str, function, start: str) -> str:
    message = failure_of(grade_id, function)
    assert named_mistake(grade_id, start) in message, message
    return message


# --------------------------------------------------------------------------------------------------
# 8.1 the residual added to the normalised stream


def test_8_1_feed_forward_residual_added_to_the_normalised_stream_is_named():
    def encoder_block(x, mask, block):
        normed = block.attention_norm(x)
        attended, weights = block.self_attention(normed, normed, normed, mask)
        x = x + attended
        normed = block.feed_forward_norm(x)
        x = normed + block.feed_forward(normed)
        return x, weights

    assert_named(
        "ex8_1_encoder_block",
        encoder_block,
        "it matches adding the feed-forward's output to LN₂(x)",
    )


def test_8_1_both_residuals_added_to_the_normalised_stream_are_named():
    def encoder_block(x, mask, block):
        h = block.attention_norm(x)
        attended, weights = block.self_attention(h, h, h, mask)
        x = h + attended
        h = block.feed_forward_norm(x)
        return h + block.feed_forward(h), weights

    assert_named(
        "ex8_1_encoder_block", encoder_block, "it matches adding each sub-layer's output to the"
    )


# --------------------------------------------------------------------------------------------------
# 8.5 the <bos> off-by-ones: each fails, and is named, on most visible cases


def _greedy(model, source, max_len, bos_index, steps, keep_bos=False, drop=0):
    source_mask = source != model.pad_index
    memory = model.encode(source, source_mask)
    cache = KVCache(len(model.decoder_blocks))
    token = torch.full((len(source),), bos_index, dtype=torch.long)
    tokens = [token] if keep_bos else []
    for _ in range(steps):
        logits, _ = model.decode_step(token, memory, source_mask, cache)
        token = logits.argmax(-1)
        tokens.append(token)
    return torch.stack(tokens, dim=1)[:, drop:]


def _cases_passed(message: str) -> int:
    passed, total = re.match(r"ex8_5_greedy_decode: (\d+)/(\d+) cases pass", message).groups()
    assert int(total) == 5
    return int(passed)


@pytest.mark.parametrize(
    ("steps_more", "keep_bos", "drop", "start"),
    [
        (0, True, 0, "it matches returning <bos> followed by the chosen tokens"),
        (-1, True, 0, "it matches returning <bos> as the first token"),
        (1, False, 1, "it matches dropping the first chosen token"),
        (-1, False, 0, "it matches max_len - 1 chosen tokens"),
    ],
    ids=["bos-kept", "bos-kept-one-step-short", "first-token-dropped", "one-step-short"],
)
def test_8_5_bos_off_by_one_fails_and_is_named_on_most_visible_cases(
    steps_more, keep_bos, drop, start
):
    def greedy_decode(model, source, max_len, bos_index=1):
        steps = max_len + steps_more
        if steps == 0 and not keep_bos:  # torch.stack([]) raises
            raise RuntimeError("stack expects a non-empty TensorList")
        return _greedy(model, source, max_len, bos_index, steps, keep_bos, drop)

    message = assert_named("ex8_5_greedy_decode", greedy_decode, start)
    assert _cases_passed(message) <= 1, message


# --------------------------------------------------------------------------------------------------
# 10.2 reading the memory before writing the current token


def _phi(x):
    return F.elu(x) + 1


def test_10_2_reading_the_weights_before_writing_the_token_is_named():
    def fast_weight_attention(q, k, v):
        phi_q, phi_k = _phi(q), _phi(k)
        W = q.new_zeros(*q.shape[:-2], v.shape[-1], q.shape[-1])
        z = q.new_zeros(*k.shape[:-2], k.shape[-1])
        outputs = []
        for t in range(q.shape[-2]):
            z = z + phi_k[..., t, :]
            read = (W @ phi_q[..., t, :, None])[..., 0]  # W_{t-1}: token t not written yet
            outputs.append(read / (z * phi_q[..., t, :]).sum(-1, keepdim=True))
            W = W + v[..., t, :, None] * phi_k[..., t, None, :]
        return torch.stack(outputs, dim=-2)

    assert_named(
        "ex10_2_fast_weight_attention",
        fast_weight_attention,
        "it matches reading W and z from different steps",
    )


def test_10_2_reading_before_writing_both_is_named():
    def fast_weight_attention(q, k, v):
        phi_q, phi_k = _phi(q), _phi(k)
        W = q.new_zeros(*q.shape[:-2], v.shape[-1], q.shape[-1])
        z = q.new_zeros(*k.shape[:-2], k.shape[-1])
        outputs = []
        for t in range(q.shape[-2]):
            read = (W @ phi_q[..., t, :, None])[..., 0]
            outputs.append(read / (z * phi_q[..., t, :]).sum(-1, keepdim=True))
            W = W + v[..., t, :, None] * phi_k[..., t, None, :]
            z = z + phi_k[..., t, :]
        return torch.stack(outputs, dim=-2)

    assert_named(
        "ex10_2_fast_weight_attention", fast_weight_attention, "it matches reading before writing"
    )


# --------------------------------------------------------------------------------------------------
# 11.4 the returned pair in the wrong order


def test_11_4_weights_returned_before_the_output_is_named():
    def perceiver_cross_attention(latents, inputs, W_q, W_k, W_v):
        queries, keys, values = latents @ W_q.T, inputs @ W_k.T, inputs @ W_v.T
        scores = queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])
        weights = torch.softmax(scores, dim=-1)
        return weights, weights @ values

    assert_named(
        "ex11_4_perceiver_cross_attention",
        perceiver_cross_attention,
        "it matches (weights, output)",
    )


# --------------------------------------------------------------------------------------------------
# 12.1 the softmax over the wrong axis


def _content_scores(memory, key, beta):
    dots = (memory @ key[..., None])[..., 0]
    norms = key.norm(dim=-1, keepdim=True).clamp_min(1e-8) * memory.norm(dim=-1).clamp_min(1e-8)
    return beta[..., None] * dots / norms


@pytest.mark.parametrize("axis", [0, 1], ids=["dim=0", "dim=1"])
def test_12_1_softmax_over_a_leading_axis_is_named(axis):
    def ntm_content_weights(memory, key, beta):
        scores = _content_scores(memory, key, beta)
        return torch.softmax(scores, dim=axis if scores.dim() > axis + 1 else -1)

    assert_named(
        "ex12_1_content_weights",
        ntm_content_weights,
        "it matches a softmax over a leading axis",
    )


# --------------------------------------------------------------------------------------------------
# 12.4 the mask filled with 0, or applied after the softmax


def _pointer_scores(decoder_state, encoder_states, W, U, v):
    return torch.tanh((decoder_state @ W.T)[:, None, :] + encoder_states @ U.T) @ v


def test_12_4_mask_filled_with_zero_is_named():
    def pointer_distribution(decoder_state, encoder_states, W, U, v, available):
        scores = _pointer_scores(decoder_state, encoder_states, W, U, v)
        return scores.masked_fill(~available, 0.0).softmax(dim=-1)

    assert_named(
        "ex12_4_pointer_distribution",
        pointer_distribution,
        "it matches filling the masked scores with 0",
    )


def test_12_4_mask_filled_with_minus_infinity_after_the_softmax_is_named():
    def pointer_distribution(decoder_state, encoder_states, W, U, v, available):
        weights = _pointer_scores(decoder_state, encoder_states, W, U, v).softmax(dim=-1)
        return weights.masked_fill(~available, float("-inf"))

    assert_named(
        "ex12_4_pointer_distribution",
        pointer_distribution,
        "it matches filling the weights with -inf after the softmax",
    )
