"""Notebook 12's library: NTM addressing, the pointer network and its sorting data, the explorer."""

from __future__ import annotations

import subprocess
import sys

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from course_utils.attention import ntm_content_weights, ntm_sharpen, ntm_shift
from course_utils.display.addressing_explorer import AddressingExplorer
from course_utils.display.static_widgets import INTERACTIVE_NOTE
from course_utils.ntm_addressing import (
    HeadParameters,
    address_sequence,
    ntm_interpolate,
    ntm_read,
    ntm_write,
    slot_cosine,
)
from course_utils.pointer_network import (
    PointerNetwork,
    exact_sort_rate,
    pointer_distribution,
    sorting_batch,
    train_sorter,
)

# --------------------------------------------------------------------------------------------------
# NTM addressing


def test_content_weights_are_a_softmax_of_scaled_cosines():
    generator = torch.Generator().manual_seed(0)
    memory = torch.randn(2, 6, 4, generator=generator, dtype=torch.float64)
    key = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    beta = torch.tensor([0.5, 7.0], dtype=torch.float64)
    cosine = F.cosine_similarity(memory, key[:, None, :], dim=-1)  # torch's, independently
    expected = torch.softmax(beta[:, None] * cosine, dim=-1)
    torch.testing.assert_close(ntm_content_weights(memory, key, beta), expected)
    torch.testing.assert_close(slot_cosine(memory, key), cosine)


def test_content_weights_find_the_matching_slot_whatever_the_key_length():
    memory = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    for scale in (0.01, 1.0, 100.0):
        weights = ntm_content_weights(memory, scale * memory[3], 50.0)
        assert weights.argmax().item() == 3 and weights[3] > 0.9
    sharp = ntm_content_weights(memory, memory[3], torch.tensor(1000.0))  # large β: no overflow
    assert torch.isfinite(sharp).all() and sharp[3] > 0.999


def test_an_all_zero_slot_scores_zero_not_nan():
    memory = torch.zeros(4, 3)
    memory[1] = torch.tensor([1.0, 0.0, 0.0])
    weights = ntm_content_weights(memory, torch.tensor([1.0, 0.0, 0.0]), 2.0)
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(slot_cosine(memory, torch.tensor([1.0, 0.0, 0.0])), memory[:, 0])


def test_shift_plus_one_moves_every_weight_one_slot_forward_circularly():
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4])
    forward = ntm_shift(weights, torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(forward, torch.tensor([0.4, 0.1, 0.2, 0.3]))  # slot 3 wraps to 0
    backward = ntm_shift(weights, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(backward, torch.tensor([0.2, 0.3, 0.4, 0.1]))
    stay = ntm_shift(weights, torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(stay, weights)


def test_shift_is_the_circular_convolution_of_the_formula():
    generator = torch.Generator().manual_seed(2)
    weights = torch.rand(3, 7, generator=generator, dtype=torch.float64).softmax(-1)
    shift = torch.rand(3, 3, generator=generator, dtype=torch.float64).softmax(-1)
    expected = torch.zeros_like(weights)
    for i in range(7):  # w̃_i = Σ_o s_o w_{(i - o) mod N}, written out
        for index, offset in enumerate((-1, 0, 1)):
            expected[:, i] += shift[:, index] * weights[:, (i - offset) % 7]
    torch.testing.assert_close(ntm_shift(weights, shift), expected)
    torch.testing.assert_close(
        ntm_shift(weights, shift).sum(-1), torch.ones(3, dtype=torch.float64)
    )


def test_sharpen_raises_to_gamma_and_renormalises():
    weights = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], dtype=torch.float64)
    gamma = torch.tensor([2.0, 3.0], dtype=torch.float64)
    expected = weights ** gamma[:, None] / (weights ** gamma[:, None]).sum(-1, keepdim=True)
    torch.testing.assert_close(ntm_sharpen(weights, gamma), expected)
    torch.testing.assert_close(ntm_sharpen(weights, 1.0), weights)
    tiny = torch.tensor([1e-30, 2e-30, 0.0])  # (w / max)^γ keeps tiny weights from underflowing
    torch.testing.assert_close(ntm_sharpen(tiny, 4.0), torch.tensor([1 / 17, 16 / 17, 0.0]))


def test_interpolation_gate_picks_content_or_previous():
    content, previous = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(ntm_interpolate(content, previous, 1.0), content)
    torch.testing.assert_close(ntm_interpolate(content, previous, 0.0), previous)
    torch.testing.assert_close(ntm_interpolate(content, previous, 0.25), torch.tensor([0.25, 0.75]))


def _write_inputs(seed: int, batch: int = 3, slots: int = 6, width: int = 4):
    generator = torch.Generator().manual_seed(seed)
    memory = torch.randn(batch, slots, width, generator=generator, dtype=torch.float64)
    weights = torch.randn(batch, slots, generator=generator, dtype=torch.float64).softmax(-1)
    erase = torch.rand(batch, width, generator=generator, dtype=torch.float64)
    add = torch.randn(batch, width, generator=generator, dtype=torch.float64)
    return memory, weights, erase, add


def test_write_is_erase_then_add_slot_by_slot_as_graves_eqs_3_and_4():
    memory, weights, erase, add = _write_inputs(0)
    expected = memory.clone()
    for b in range(memory.shape[0]):
        for i in range(memory.shape[1]):
            erased = memory[b, i] * (1 - weights[b, i] * erase[b])  # eq. 3
            expected[b, i] = erased + weights[b, i] * add[b]  # eq. 4
    before = memory.clone()
    torch.testing.assert_close(ntm_write(memory, weights, erase, add), expected)
    assert torch.equal(memory, before)  # a new memory; the old one is untouched


def test_a_one_hot_full_erase_overwrites_one_slot_and_reading_it_returns_what_was_written():
    memory, _, _, add = _write_inputs(1, batch=2)
    weights = torch.zeros(2, 6, dtype=torch.float64)
    weights[0, 4], weights[1, 0] = 1.0, 1.0
    written = ntm_write(memory, weights, torch.ones(2, 4, dtype=torch.float64), add)
    assert torch.equal(ntm_read(written, weights), add)
    untouched = weights == 0
    assert torch.equal(written[untouched], memory[untouched])


def test_write_takes_any_leading_shape_and_read_is_the_weighted_sum_of_slots():
    memory, weights, erase, add = _write_inputs(2, batch=6)
    shaped = [t.reshape(2, 3, *t.shape[1:]) for t in (memory, weights, erase, add)]
    torch.testing.assert_close(
        ntm_write(*shaped).reshape(6, 6, 4), ntm_write(memory, weights, erase, add)
    )
    torch.testing.assert_close(
        ntm_read(memory, weights), torch.einsum("bn,bnm->bm", weights, memory)
    )
    single = ntm_write(memory[0], weights[0], erase[0], add[0])
    torch.testing.assert_close(single, ntm_write(memory, weights, erase, add)[0])


def test_write_bad_input_names_the_argument():
    memory, weights, erase, add = _write_inputs(3)
    with pytest.raises(ValueError, match="erase has M=3 but memory has M=4"):
        ntm_write(memory, weights, erase[:, :3], add)
    with pytest.raises(ValueError, match=r"weights have batch=\(2,\) but memory has batch=\(3,\)"):
        ntm_write(memory, weights[:2], erase, add)
    with pytest.raises(TypeError, match="add must be a floating-point tensor"):
        ntm_write(memory, weights, erase, add.long())
    with pytest.raises(
        ValueError, match=r"weights have batch=\(3, 6\) but memory has batch=\(3,\)"
    ):
        ntm_read(memory, weights[..., None])


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="key has M=3 but memory has M=4"):
        ntm_content_weights(torch.zeros(5, 4), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match=r"shift must have shape \(\.\.\., 3\)"):
        ntm_shift(torch.ones(5) / 5, torch.ones(4) / 4)
    with pytest.raises(ValueError, match="beta must be a number or a tensor of the leading shape"):
        ntm_content_weights(torch.zeros(2, 5, 4), torch.zeros(2, 4), torch.ones(3))
    with pytest.raises(ValueError, match="gamma must be a number or a tensor"):
        ntm_sharpen(torch.ones(2, 5) / 5, torch.ones(5))
    with pytest.raises(TypeError, match="weights must be a floating-point tensor"):
        ntm_sharpen(torch.ones(5, dtype=torch.long), 2.0)
    with pytest.raises(ValueError, match="at least one step"):
        address_sequence(torch.zeros(4, 2), torch.ones(4) / 4, [])


def _walk(gamma: float, steps: int = 6):
    """A content jump to slot 2, then location-only steps with a soft +1 shift."""
    memory = torch.randn(10, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    start = torch.full((10,), 0.1, dtype=torch.float64)
    soft_forward = torch.tensor([0.05, 0.1, 0.85], dtype=torch.float64)
    heads = [HeadParameters(memory[2], 30.0, 1.0, torch.tensor([0.0, 1.0, 0.0]), 1.0)]
    heads += [HeadParameters(memory[0], 1.0, 0.0, soft_forward, gamma)] * steps
    return address_sequence(memory, start, heads)


def test_location_steps_move_the_weighting_one_slot_each_and_sharpening_keeps_it_peaked():
    sharp, blurred = _walk(gamma=3.0), _walk(gamma=1.0)
    peaks = [step.sharpened.argmax().item() for step in sharp]
    assert peaks == [2, 3, 4, 5, 6, 7, 8]
    assert min(step.sharpened.max().item() for step in sharp) > 0.9
    assert blurred[-1].sharpened.max().item() < 0.6  # a soft shift alone spreads the weight


# --------------------------------------------------------------------------------------------------
# Pointer network


def test_pointer_distribution_is_a_masked_softmax_of_additive_scores():
    generator = torch.Generator().manual_seed(4)
    state, encoded = (
        torch.randn(2, 3, generator=generator),
        torch.randn(2, 5, 4, generator=generator),
    )
    W, U, v = torch.randn(6, 3), torch.randn(6, 4), torch.randn(6)
    available = torch.tensor([[True, True, False, True, False], [False, True, False, False, False]])
    distribution = pointer_distribution(state, encoded, W, U, v, available)
    hidden = torch.tanh((state @ W.T)[:, None, :] + encoded @ U.T)  # tanh(W d + U e_j)
    expected = (hidden @ v).masked_fill(~available, float("-inf")).softmax(-1)
    torch.testing.assert_close(distribution, expected)
    assert distribution[1, 1] == 1.0
    with pytest.raises(TypeError, match="available must be a bool tensor"):
        pointer_distribution(state, encoded, W, U, v, available.float())


def test_sorting_batch_answers_sort_the_real_numbers_and_ignore_padding():
    numbers, lengths, targets = sorting_batch(64, 3, 6, torch.Generator().manual_seed(5))
    assert numbers.shape == targets.shape == (64, 6) and lengths.min() >= 3 and lengths.max() <= 6
    for row, length in enumerate(lengths.tolist()):
        order = targets[row, :length]
        assert sorted(order.tolist()) == list(range(length))
        assert bool((numbers[row, order].diff() > 0).all())
        assert bool((targets[row, length:] == -100).all())
    with pytest.raises(ValueError, match="min_length=5 must be <= max_length=4"):
        sorting_batch(2, 5, 4, torch.Generator())


def test_pointer_network_emits_one_position_per_input_and_never_repeats_one():
    model = PointerNetwork(hidden_dim=8, attention_dim=8)
    for length in (3, 11):  # any length: the output "vocabulary" is the input positions
        numbers, lengths, _ = sorting_batch(4, length, length, torch.Generator().manual_seed(6))
        scores, choices = model(numbers, lengths)
        assert scores.shape == (4, length, length) and choices.shape == (4, length)
        assert all(sorted(row) == list(range(length)) for row in choices.tolist())


def test_without_the_pointed_mask_padding_is_still_never_chosen():
    model = PointerNetwork(hidden_dim=8, attention_dim=8, mask_pointed=False)
    numbers, lengths, _ = sorting_batch(32, 2, 6, torch.Generator().manual_seed(7))
    scores, choices = model(numbers, lengths)
    for row, length in enumerate(lengths.tolist()):
        assert bool((choices[row, :length] < length).all())
        assert bool((scores[row, :, length:] == torch.finfo(scores.dtype).min).all())


def test_a_short_training_run_learns_to_sort_some_sequences():
    model, losses = train_sorter(seed=0, steps=60, batch=64, hidden_dim=32)
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10])
    assert exact_sort_rate(model, length=5, seed=1, count=200) > 0.9  # measured 1.00, 3 seeds


# --------------------------------------------------------------------------------------------------
# The explorer, with ipywidgets and without


def test_addressing_explorer_follows_the_slider():
    steps = _walk(gamma=3.0)
    explorer = AddressingExplorer(steps, notes=["content: slot 2"] + ["shift +1"] * 6)
    assert explorer.redraws == 1 and explorer.current_step == 0
    explorer.slider.value = 4
    assert explorer.redraws == 2 and explorer.current_weights.argmax().item() == 6
    torch.testing.assert_close(explorer.current_stages.shifted, steps[4].shifted)
    explorer.slider.value = 100  # clamped to the last step
    assert explorer.current_step == len(steps) - 1
    plt.close("all")


def test_addressing_explorer_bad_input():
    with pytest.raises(ValueError, match="at least one step"):
        AddressingExplorer([])
    with pytest.raises(ValueError, match="notes has 1 entries for 7 steps"):
        AddressingExplorer(_walk(gamma=2.0), notes=["x"])


STATIC_PROGRAM = """
import sys
sys.modules["ipywidgets"] = None  # no ipywidgets at all
import matplotlib
matplotlib.use("Agg")
import torch
from course_utils.display import widgets
from course_utils.display.addressing_explorer import AddressingExplorer
from course_utils.ntm_addressing import HeadParameters, address_sequence
assert widgets.INTERACTIVE is False
memory = torch.eye(5)
heads = [HeadParameters(memory[1], 50.0, 1.0, torch.tensor([0.0, 0.0, 1.0]), 2.0)] * 3
explorer = AddressingExplorer(address_sequence(memory, torch.ones(5) / 5, heads))
explorer.slider.value = 2
print("peak", explorer.current_weights.argmax().item(), "redraws", explorer.redraws)
print(repr(explorer.widget))
"""


def test_addressing_explorer_falls_back_to_a_static_figure():
    result = subprocess.run(
        [sys.executable, "-c", STATIC_PROGRAM], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "peak 2 redraws 2" in result.stdout  # content finds slot 1, the shift moves it to 2
    assert INTERACTIVE_NOTE in result.stdout
