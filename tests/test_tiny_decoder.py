"""The tiny decoder of notebook 09 (three position schemes, grouped key/value heads) and its task."""

from __future__ import annotations

import pytest
import torch

from course_utils.length_extrapolation import LatestSignalTask, accuracy_by_length, train_decoder
from course_utils.tiny_decoder import POSITION_SCHEMES, TinyDecoder


def latest_signal_by_loop(tokens, task):
    answers = torch.full_like(tokens, task.signals)
    for row in range(tokens.shape[0]):
        latest = task.signals
        for i, token in enumerate(tokens[row].tolist()):
            if token >= task.noise:
                latest = token - task.noise
            answers[row, i] = latest
    return answers


def test_latest_signal_answers():
    task = LatestSignalTask(noise=3, signals=4, p=0.3)
    tokens, answers = task.batch(5, 30, torch.Generator().manual_seed(0))
    assert tokens.shape == answers.shape == (5, 30)
    assert int(tokens.max()) < task.vocab_size and int(answers.max()) < task.num_classes
    assert torch.equal(answers, latest_signal_by_loop(tokens, task))


@pytest.mark.parametrize("positions", POSITION_SCHEMES)
def test_decoder_is_causal_and_shaped(positions):
    torch.manual_seed(0)
    model = TinyDecoder(10, 5, positions, embed_dim=16, num_heads=4, num_kv_heads=2, layers=2)
    tokens = torch.randint(0, 10, (2, 9))
    logits = model(tokens)
    assert logits.shape == (2, 9, 5)
    changed = tokens.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 10  # the future changes
    assert torch.allclose(model(changed)[:, :6], logits[:, :6], atol=1e-6)
    assert not torch.allclose(model(changed)[:, 6:], logits[:, 6:])


def test_grouped_copy_pools_key_value_heads():
    torch.manual_seed(0)
    model = TinyDecoder(10, 5, "rope", embed_dim=16, num_heads=4)
    tokens = torch.randint(0, 10, (2, 7))
    assert torch.allclose(model.grouped(4)(tokens), model(tokens), atol=1e-6)
    single = model.grouped(1)
    attention = single.blocks[0]["attention"]
    assert attention.key.weight.shape == (4, 16) and attention.num_kv_heads == 1
    original = model.blocks[0]["attention"].key.weight.reshape(4, 4, 16)
    assert torch.allclose(attention.key.weight, original.mean(dim=0))
    assert not torch.allclose(single(tokens), model(tokens))


def test_rejects_unknown_positions():
    with pytest.raises(ValueError, match="positions must be one of"):
        TinyDecoder(10, 5, "learned")


def test_training_lowers_the_loss_and_accuracy_is_measured():
    torch.manual_seed(0)
    task = LatestSignalTask()
    model = TinyDecoder(task.vocab_size, task.num_classes, "alibi", embed_dim=16)
    before = accuracy_by_length(model, task, [16], seed=1)[16]
    losses = train_decoder(model, task, steps=60, train_length=16, seed=0)
    after = accuracy_by_length(model, task, [16, 32], seed=1)
    assert sum(losses[-10:]) < sum(losses[:10]) * 0.7
    assert after[16] > before + 0.2 and set(after) == {16, 32}
