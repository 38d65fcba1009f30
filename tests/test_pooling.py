"""Soft lookup and Nadaraya–Watson pooling (notebook 01's reference)."""

import pytest
import torch

from course_utils.attention import gaussian_kernel_scores, nadaraya_watson, soft_lookup


def test_soft_lookup_limits_are_hard_lookup_and_mean():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6]])
    values = torch.tensor([[1.0], [2.0], [3.0]])
    query = torch.tensor([1.0, 0.2])
    cold, cold_weights = soft_lookup(query, keys, values, temperature=1e-3)
    hot, _ = soft_lookup(query, keys, values, temperature=1e4)
    assert torch.equal(cold_weights.argmax(), (keys @ query).argmax())
    torch.testing.assert_close(cold, values[0])
    torch.testing.assert_close(hot, values.mean(0), atol=1e-3, rtol=0)


def test_nadaraya_watson_rows_sum_to_one_and_outputs_stay_in_hull():
    points = torch.linspace(0, 1, 9)
    targets = torch.sin(6 * points)
    predictions, weights = nadaraya_watson(torch.linspace(-0.5, 1.5, 7), points, targets, 0.2)
    torch.testing.assert_close(weights.sum(1), torch.ones(7))
    assert ((predictions >= targets.min()) & (predictions <= targets.max())).all()


def test_gaussian_kernel_scores_formula():
    scores = gaussian_kernel_scores(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 2.0]), 0.5)
    torch.testing.assert_close(scores, torch.tensor([[0.0, -8.0], [-2.0, -2.0]]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="temperature must be a positive number, got 0"):
        soft_lookup(torch.ones(2), torch.ones(3, 2), torch.ones(3, 1), temperature=0)
    with pytest.raises(ValueError, match=r"keys have d=2 but query has d=3 \(query \(3,\), keys"):
        soft_lookup(torch.ones(3), torch.ones(3, 2), torch.ones(3, 1))
    with pytest.raises(ValueError, match="bandwidth must be a positive number"):
        nadaraya_watson(torch.ones(2), torch.ones(3), torch.ones(3), -1.0)
    with pytest.raises(
        ValueError,
        match=r"values have m=4 but key_points have m=3 \(key_points \(3,\), values \(4,\)\)",
    ):
        nadaraya_watson(torch.ones(2), torch.ones(3), torch.ones(4), 1.0)
