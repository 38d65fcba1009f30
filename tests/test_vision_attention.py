"""Notebook 11's library: SE, CBAM's spatial map, pixel self-attention, Perceiver cross-attention,
the synthetic image task and the tiny classifier.

Each attention is compared with its formula written out one pixel (or one latent) at a time in
float64; the receptive fields are counted exactly; errors must name the argument.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_utils.perceiver import (
    PerceiverEncoder,
    attention_costs,
    encoder_seconds,
    perceiver_cross_attention,
)
from course_utils.synthetic_images import ChannelObjectTask, inside_boxes
from course_utils.vision_attention import (
    ChannelAttention,
    PixelSelfAttention,
    SelfAttentionBlock,
    SpatialAttention,
    SqueezeExcitation,
    cbam_channel_weights,
    cbam_spatial_attention,
    pixel_self_attention,
    receptive_field,
    squeeze_excitation,
)
from course_utils.vision_classifier import (
    ChannelSpatialClassifier,
    SelfAttentionClassifier,
    evaluate_classifier,
    held_out_accuracy,
    train_classifier,
)


def randn(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------
# Squeeze-and-excitation


def test_se_matches_its_formula_channel_by_channel():
    x, W_r, b_r, W_e, b_e = (
        randn(2, 5, 3, 4),
        randn(2, 5, seed=1),
        randn(2, seed=2),
        randn(5, 2, seed=3),
        randn(5, seed=4),
    )
    scaled, weights = squeeze_excitation(x, W_r, b_r, W_e, b_e)
    for b in range(2):
        s = torch.tensor([float(x[b, c].sum()) / 12 for c in range(5)], dtype=torch.float64)
        z = torch.clamp(W_r @ s + b_r, min=0)
        e = 1 / (1 + torch.exp(-(W_e @ z + b_e)))
        assert torch.allclose(weights[b], e, atol=1e-12)
        for c in range(5):
            assert torch.allclose(scaled[b, c], e[c] * x[b, c], atol=1e-12)
    assert ((weights > 0) & (weights < 1)).all()


def test_se_module_uses_its_linear_layers():
    module = SqueezeExcitation(6, reduction=3).double()
    x = randn(2, 6, 4, 4)
    scaled, weights = module(x)
    expected = squeeze_excitation(
        x, module.reduce.weight, module.reduce.bias, module.expand.weight, module.expand.bias
    )
    assert torch.equal(scaled, expected[0]) and torch.equal(weights, expected[1])
    assert module.reduce.out_features == 2 and weights.shape == (2, 6)


def test_se_errors_name_the_argument():
    with pytest.raises(ValueError, match="W_reduce"):
        squeeze_excitation(randn(2, 4, 3, 3), randn(2, 5), randn(2), randn(4, 2), randn(4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, C, H, W\)"):
        squeeze_excitation(randn(4, 3, 3), randn(2, 4), randn(2), randn(4, 2), randn(4))


# --------------------------------------------------------------------------------------------------
# CBAM's spatial attention


def test_cbam_channel_weights_match_eq_2_channel_by_channel():
    features = randn(3, 4, 5, 6)
    W_r, b_r, W_e, b_e = (
        randn(2, 4, seed=1),
        randn(2, seed=2),
        randn(4, 2, seed=3),
        randn(4, seed=4),
    )
    weights = cbam_channel_weights(features, W_r, b_r, W_e, b_e)
    for b in range(3):
        average = torch.tensor([features[b, c].mean() for c in range(4)], dtype=torch.float64)
        maximum = torch.tensor([features[b, c].max() for c in range(4)], dtype=torch.float64)
        mlp = [W_e @ torch.relu(W_r @ pooled + b_r) + b_e for pooled in (average, maximum)]
        torch.testing.assert_close(weights[b], torch.sigmoid(mlp[0] + mlp[1]))
    assert weights.shape == (3, 4) and ((weights > 0) & (weights < 1)).all()


def test_cbam_channel_weights_see_the_max_that_se_cannot():
    spread = torch.full((1, 2, 4, 4), 0.25, dtype=torch.float64)
    spot = spread.clone()
    spot[0, 0], spot[0, 0, 2, 2] = 0.0, 4.0  # the same mean, all at one position
    features = torch.cat([spread, spot])
    # W_r > 0 and b_r = 0: the hidden units are active, so the max reaches the output
    parameters = (
        randn(2, 2, seed=5).abs(),
        torch.zeros(2, dtype=torch.float64),
        randn(2, 2, seed=7),
        randn(2, seed=8),
    )
    _, se_weights = squeeze_excitation(features, *parameters)
    cbam_weights = cbam_channel_weights(features, *parameters)
    assert torch.equal(se_weights[0], se_weights[1])
    assert not torch.allclose(cbam_weights[0], cbam_weights[1])


def test_cbam_channel_module_and_errors():
    module = ChannelAttention(4, reduction=2).double()
    features = randn(2, 4, 3, 3)
    reduce, expand = module.reduce, module.expand
    torch.testing.assert_close(
        module(features),
        cbam_channel_weights(features, reduce.weight, reduce.bias, expand.weight, expand.bias),
    )
    with pytest.raises(ValueError, match="W_expand has C=3 but features have C=4"):
        cbam_channel_weights(features, randn(2, 4), randn(2), randn(3, 2), randn(3))
    with pytest.raises(ValueError, match=r"features must have shape \(B, C, H, W\)"):
        cbam_channel_weights(randn(4, 3, 3), randn(2, 4), randn(2), randn(4, 2), randn(4))


def test_spatial_map_matches_its_formula_pixel_by_pixel():
    features, weight, bias = randn(2, 3, 5, 6), randn(1, 2, 3, 3, seed=1), randn(1, seed=2)
    spatial_map = cbam_spatial_attention(features, weight, bias)
    assert spatial_map.shape == (2, 1, 5, 6)
    pooled = torch.stack([features.mean(dim=1), features.max(dim=1).values], dim=1)
    padded = torch.nn.functional.pad(pooled, (1, 1, 1, 1))  # zeros around, as padding=k // 2
    for b in range(2):
        for i in range(5):
            for j in range(6):
                score = float((padded[b, :, i : i + 3, j : j + 3] * weight[0]).sum() + bias[0])
                assert math.isclose(
                    spatial_map[b, 0, i, j].item(), 1 / (1 + math.exp(-score)), abs_tol=1e-12
                )


def test_spatial_module_and_errors():
    module = SpatialAttention(kernel_size=5).double()
    features = randn(1, 4, 6, 6)
    assert torch.equal(
        module(features), cbam_spatial_attention(features, module.conv.weight, module.conv.bias)
    )
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SpatialAttention(kernel_size=4)
    with pytest.raises(ValueError, match=r"conv_weight must have shape \(out=1, pooled=2, k, k\)"):
        cbam_spatial_attention(features, randn(1, 4, 3, 3), randn(1))
    with pytest.raises(ValueError, match="odd kernel size"):
        cbam_spatial_attention(features, randn(1, 2, 2, 2), randn(1))


# --------------------------------------------------------------------------------------------------
# Self-attention over pixels


def test_pixel_self_attention_matches_a_loop_over_positions():
    x, W_q, W_k, W_v = (
        randn(2, 3, 2, 4),
        randn(2, 3, seed=1),
        randn(2, 3, seed=2),
        randn(5, 3, seed=3),
    )
    output, weights = pixel_self_attention(x, W_q, W_k, W_v)
    assert output.shape == (2, 5, 2, 4) and weights.shape == (2, 8, 8)
    for b in range(2):
        pixels = [(h, w) for h in range(2) for w in range(4)]  # p = h·W + w
        for p, (h, w) in enumerate(pixels):
            scores = torch.stack(
                [(W_q @ x[b, :, h, w]) @ (W_k @ x[b, :, i, j]) / math.sqrt(2) for i, j in pixels]
            )
            alpha = torch.exp(scores) / torch.exp(scores).sum()
            assert torch.allclose(weights[b, p], alpha, atol=1e-12)
            expected = sum(alpha[q] * (W_v @ x[b, :, i, j]) for q, (i, j) in enumerate(pixels))
            assert torch.allclose(output[b, :, h, w], expected, atol=1e-12)


def test_pixel_self_attention_module_and_errors():
    module = PixelSelfAttention(4, key_dim=2).double()
    x = randn(1, 4, 3, 3)
    output, weights = module(x)
    assert output.shape == x.shape and weights.shape == (1, 9, 9)
    with pytest.raises(ValueError, match="W_k"):
        pixel_self_attention(x, randn(2, 4), randn(3, 4), randn(4, 4))


def test_sagan_block_is_the_identity_at_first_and_gamma_times_o_plus_x_after():
    block = SelfAttentionBlock(4, key_dim=2).double()
    x = randn(2, 4, 3, 5)
    assert block.gamma.item() == 0.0 and torch.equal(block(x)[0], x)
    with torch.no_grad():
        block.gamma.fill_(0.7)
    attended, weights = block.attention(x)
    output, block_weights = block(x)
    torch.testing.assert_close(output, 0.7 * attended + x)
    assert torch.equal(weights, block_weights) and weights.shape == (2, 15, 15)


def test_receptive_fields_of_a_3x3_conv_and_of_pixel_attention():
    conv = torch.nn.Conv2d(2, 2, 3, padding=1).double()
    attention = PixelSelfAttention(2, key_dim=2).double()
    centre = receptive_field(conv, channels=2, size=8, row=4, col=4)
    assert centre.sum() == 9 and centre[3:6, 3:6].all()
    assert receptive_field(conv, channels=2, size=8, row=0, col=0).sum() == 4  # cut by the border
    everywhere = receptive_field(lambda x: attention(x)[0], channels=2, size=8, row=4, col=4)
    assert everywhere.all()
    with pytest.raises(ValueError, match="row must be a pixel index"):
        receptive_field(conv, channels=2, size=8, row=8, col=0)


# --------------------------------------------------------------------------------------------------
# Perceiver cross-attention


def test_perceiver_matches_a_loop_over_latents():
    latents, inputs = randn(3, 4), randn(2, 6, 4, seed=1)
    W_q, W_k, W_v = randn(2, 4, seed=2), randn(2, 4, seed=3), randn(2, 4, seed=4)
    output, weights = perceiver_cross_attention(latents, inputs, W_q, W_k, W_v)
    assert output.shape == (2, 3, 2) and weights.shape == (2, 3, 6)
    for b in range(2):
        for latent in range(3):
            q = W_q @ latents[latent]
            scores = torch.stack([q @ (W_k @ inputs[b, j]) / math.sqrt(2) for j in range(6)])
            alpha = torch.softmax(scores, dim=0)
            assert torch.allclose(weights[b, latent], alpha, atol=1e-12)
            assert torch.allclose(
                output[b, latent],
                sum(alpha[j] * (W_v @ inputs[b, j]) for j in range(6)),
                atol=1e-12,
            )


def test_perceiver_errors_name_the_argument():
    with pytest.raises(ValueError, match="inputs"):
        perceiver_cross_attention(
            randn(3, 4), randn(2, 6, 5), randn(2, 4), randn(2, 4), randn(2, 4)
        )


def test_perceiver_encoder_reads_twice_with_a_latent_tower_between():
    encoder = PerceiverEncoder(width=8, latent_count=4, reads=3, latent_layers=2, heads=2).double()
    inputs = randn(2, 11, 8)
    latents, read_weights = encoder(inputs)
    assert latents.shape == (2, 4, 8) and [w.shape for w in read_weights] == [(2, 2, 4, 11)] * 3
    for weights in read_weights:
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 4, dtype=torch.float64))
    # the same computation, written out: read, tower, read with the shared weights, tower, …
    z = encoder.latents.expand(2, -1, -1)
    for read in range(3):
        z, _ = (encoder.first_read if read == 0 else encoder.later_read)(z, inputs)
        for block in encoder.towers[read]:
            z, _ = block(z)
    torch.testing.assert_close(latents, z)
    # every input is read: changing the last input changes the latents
    changed = inputs.clone()
    changed[:, -1] = randn(2, 8, seed=9)
    assert not torch.allclose(encoder(changed)[0], latents)


def test_perceiver_encoder_errors_and_timing():
    encoder = PerceiverEncoder(width=8, latent_count=4, seed=1)
    with pytest.raises(ValueError, match=r"inputs must have shape \(B, n, D=8\)"):
        encoder(torch.randn(1, 5, 6))
    with pytest.raises(ValueError, match="reads must be a positive int"):
        PerceiverEncoder(width=8, latent_count=4, reads=0)
    seconds = encoder_seconds(encoder, [16, 32], rounds=2)
    assert seconds.shape == (2, 2) and (seconds > 0).all()


def test_attention_costs_count_the_weight_bytes_and_time_every_round():
    costs = attention_costs([32, 64], latents=8, width=16, rounds=3)
    assert costs["perceiver_weights_bytes"] == [8 * 32 * 4, 8 * 64 * 4]  # m · n float32
    assert costs["self_attention_weights_bytes"] == [32 * 32 * 4, 64 * 64 * 4]  # n² float32
    for name in ("perceiver_seconds", "self_attention_seconds"):
        assert costs[name].shape == (3, 2) and (costs[name] >= 0).all()
    with pytest.raises(ValueError, match="each of lengths must be a positive int"):
        attention_costs([32, 0], latents=8)


# --------------------------------------------------------------------------------------------------
# The synthetic task and the classifier


def test_task_puts_the_label_in_the_informative_square():
    task = ChannelObjectTask(channels=3, size=10, object_size=3, informative=2, noise=0.01)
    images, labels, boxes = task.batch(32, torch.Generator().manual_seed(0))
    assert images.shape == (32, 3, 10, 10) and labels.shape == (32,) and boxes.shape == (32, 4)
    for image, label, (top, left, bottom, right) in zip(images, labels, boxes, strict=True):
        assert bottom - top == 3 and right - left == 3
        square = image[2, top:bottom, left:right]
        assert (square.sign() == (1 if label == 1 else -1)).all()
        assert abs(float(image[2].sum() - square.sum())) < 0.01 * 100  # nothing else but noise
    again = task.batch(32, torch.Generator().manual_seed(0))
    assert torch.equal(images, again[0])


def test_task_and_inside_boxes_errors():
    with pytest.raises(ValueError, match="informative"):
        ChannelObjectTask(channels=3, informative=3)
    with pytest.raises(ValueError, match="object_size"):
        ChannelObjectTask(size=4, object_size=5)
    boxes = torch.tensor([[1, 2, 4, 5], [0, 0, 2, 2]])
    assert inside_boxes(torch.tensor([1, 2]), torch.tensor([4, 0]), boxes).tolist() == [True, False]


def test_classifier_trains_and_reports_what_it_attends_to():
    task = ChannelObjectTask(channels=3, size=8, object_size=2, informative=0)
    torch.manual_seed(0)
    model = ChannelSpatialClassifier(task.channels, features=4)
    losses = train_classifier(model, task, steps=3, seed=0, batch_size=8)
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    logits, channel_weights, spatial_map = model(task.batch(5, torch.Generator().manual_seed(1))[0])
    assert (
        logits.shape == (5, 2)
        and channel_weights.shape == (5, 3)
        and spatial_map.shape == (5, 1, 8, 8)
    )
    report = evaluate_classifier(model, task, count=16, seed=2)
    assert 0 <= report["accuracy"] <= 1 and 0 <= report["peak_in_box"] <= 1
    assert report["channel_weights"].shape == (3,)
    assert report["accuracy"] == held_out_accuracy(model, task, count=16, seed=2)


def test_sagan_classifier_trains_and_gamma_can_be_watched():
    task = ChannelObjectTask(channels=3, size=6, object_size=2, informative=0)
    torch.manual_seed(0)
    model = SelfAttentionClassifier(task.channels, features=4, key_dim=2)
    gammas = []
    losses = train_classifier(
        model,
        task,
        steps=4,
        seed=0,
        batch_size=8,
        before_each_step=lambda: gammas.append(model.attention.gamma.item()),
    )
    assert len(losses) == 4 and len(gammas) == 4 and gammas[0] == 0.0 and gammas[-1] != 0.0
    logits, weights = model(task.batch(5, torch.Generator().manual_seed(1))[0])
    assert logits.shape == (5, 2) and weights.shape == (5, 36, 36)


def test_classifier_pools_by_the_map_or_by_a_plain_mean():
    task = ChannelObjectTask(channels=3, size=8, object_size=2, informative=0)
    images = task.batch(4, torch.Generator().manual_seed(3))[0]
    torch.manual_seed(0)
    weighted = ChannelSpatialClassifier(task.channels, features=4)
    plain = ChannelSpatialClassifier(task.channels, features=4, divide_by_map=False)
    plain.load_state_dict(weighted.state_dict())
    captured = {}
    weighted.head.register_forward_hook(lambda m, i, o: captured.__setitem__("weighted", i[0]))
    plain.head.register_forward_hook(lambda m, i, o: captured.__setitem__("plain", i[0]))
    _, _, spatial_map = weighted(images)
    plain(images)
    ratio = spatial_map.sum(dim=(2, 3)) / (8 * 8)  # Σ a / HW: what separates the two poolings
    torch.testing.assert_close(captured["plain"], captured["weighted"] * ratio)
