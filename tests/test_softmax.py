"""softmax / masked_softmax: agreement with torch and the documented edge cases."""

import pytest
import torch

from course_utils.attention import masked_softmax, softmax


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_matches_torch(dtype, dim):
    scores = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(0), dtype=dtype)
    torch.testing.assert_close(softmax(scores, dim=dim), torch.softmax(scores, dim=dim))


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_large_logits_are_finite_and_exact(magnitude):
    scores = torch.tensor([[magnitude, 0.0, -magnitude], [magnitude, magnitude, 0.0]])
    weights = softmax(scores)
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights, torch.softmax(scores.double(), dim=-1).float())


def test_softmax_of_1000_and_0_is_one_hot():
    torch.testing.assert_close(softmax(torch.tensor([1000.0, 0.0])), torch.tensor([1.0, 0.0]))


def test_fully_masked_rows_give_zeros_not_nan():
    scores = torch.randn(2, 3, 4)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of batch 0 may attend nothing
    weights = masked_softmax(scores, mask)
    assert not torch.isnan(weights).any()
    assert torch.equal(weights[0, 1], torch.zeros(4))
    torch.testing.assert_close(weights[1].sum(-1), torch.ones(3))


def test_masked_entries_get_exactly_zero_and_rest_renormalise():
    scores = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    key_mask = torch.tensor([True, True, False, True, False])
    weights = masked_softmax(scores, key_mask)  # broadcast over the 3 queries
    assert torch.equal(weights[:, ~key_mask], torch.zeros(3, 2))
    torch.testing.assert_close(weights[:, key_mask], torch.softmax(scores[:, key_mask], dim=-1))


def test_mask_matches_torch_sdpa_convention():
    scores = torch.randn(2, 4, 4)
    mask = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(2)) > 0.3
    mask[..., 0] = True  # keep every row non-empty so torch's additive -inf mask is defined
    additive = torch.zeros_like(scores).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(masked_softmax(scores, mask), torch.softmax(scores + additive, -1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_stably_and_keeps_dtype(dtype):
    scores = torch.tensor([[60000.0, 0.0, -60000.0], [1.0, 2.0, 3.0]], dtype=dtype)
    mask = torch.tensor([[True, True, True], [False, False, False]])
    weights = masked_softmax(scores, mask)
    assert weights.dtype == dtype
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights[0], torch.tensor([1.0, 0.0, 0.0], dtype=dtype))
    assert torch.equal(weights[1], torch.zeros(3, dtype=dtype))


def test_bad_inputs_have_specific_errors():
    scores = torch.randn(2, 3)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        masked_softmax(scores, torch.ones(2, 3))
    with pytest.raises(
        ValueError, match=r"mask of shape \(2, 4\) does not broadcast to scores of shape \(2, 3\)"
    ):
        masked_softmax(scores, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        softmax(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        softmax([1.0, 2.0])
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        softmax(scores, dim=2)
