"""Hidden tests of notebook 07: the reference passes every case and classic mistakes are named.

As in test_grade_hidden_02_03.py, inputs and outputs go through the codec round trip the sandboxed
child uses. causal_tile_kind answers with a str, so its cases need a codec that carries strings.
"""

from __future__ import annotations

import json
import math

import torch

from course_utils.flash import online_softmax_stats, tile_kind
from course_utils.grade import codec
from course_utils.grade.hidden import flash

GENERATOR_SEED = 1007


def grade(function, cases) -> list[str | None]:
    """Each case's judge verdict (None = passed) for ``function``, through the codec round trip."""
    verdicts = []
    for case in cases:
        args = [codec.decode_input(json.loads(json.dumps(codec.encode(a)))) for a in case.args]
        output = codec.decode_output(json.loads(json.dumps(codec.encode(function(*args)))))
        verdicts.append(case.judge(output, case.expected))
    return verdicts


def named(function, cases, phrase: str) -> list[str]:
    verdicts = grade(function, cases)
    assert any(verdict is not None for verdict in verdicts), "the mistake passed every case"
    return [verdict for verdict in verdicts if verdict and phrase in verdict]


def build(builder):
    return builder(torch.Generator().manual_seed(GENERATOR_SEED))


def reference_attention(q, k, v, block_q, block_k):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def reference_gradient(weights, values, out, grad_out):
    return weights * (grad_out @ values.transpose(-2, -1) - (grad_out * out).sum(-1, keepdim=True))


def test_references_pass_every_case():
    for builder, reference in (
        (flash._online_softmax_cases, online_softmax_stats),
        (flash._tiled_cases, reference_attention),
        (flash._gradient_cases, reference_gradient),
    ):
        cases = build(builder)
        assert len(cases) >= 3
        assert grade(reference, cases) == [None] * len(cases), builder.__name__


def test_classic_mistakes_are_named():
    def unrescaled_stats(scores, block_size):
        row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype)
        row_sum = torch.zeros_like(row_max)
        for start in range(0, scores.shape[-1], block_size):
            block = scores[..., start : start + block_size]
            row_max = torch.maximum(row_max, block.amax(-1))
            row_sum = row_sum + torch.exp(block - row_max[..., None]).sum(-1)
        return row_max, row_sum

    assert named(unrescaled_stats, build(flash._online_softmax_cases), "without rescaling")
    assert named(
        lambda scores, block: (
            online_softmax_stats(scores[..., : scores.shape[-1] // block * block], block)
            if scores.shape[-1] >= block
            else online_softmax_stats(scores, block)
        ),
        build(flash._online_softmax_cases),
        "last, shorter block is missing",
    )
    assert named(
        lambda q, k, v, bq, bk: torch.softmax(q @ k.transpose(-2, -1), -1) @ v,
        build(flash._tiled_cases),
        "not divided by √d",
    )
    assert named(
        flash._tiled_without_acc_rescale, build(flash._tiled_cases), "output is not rescaled"
    )
    assert named(
        lambda p, v, o, do: p * (do @ v.transpose(-2, -1)),
        build(flash._gradient_cases),
        "forgot to subtract D_i",
    )


def test_tile_kinds_pass_and_mirrored_or_inclusive_rules_are_named():
    cases = flash._tile_cases()
    assert grade(lambda *tile: tile_kind(*tile, True), cases) == [None] * len(cases)
    assert named(lambda q0, q1, k0, k1: tile_kind(k0, k1, q0, q1, True), cases, "mirrored rule")
    assert named(
        lambda q0, q1, k0, k1: tile_kind(q0, q1 + 1, k0, k1 + 1, True), cases, "stops are exclusive"
    )
    verdicts = grade(lambda *tile: 3, cases)
    assert all(verdict and "got a Python number" in verdict for verdict in verdicts)
