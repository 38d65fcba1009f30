"""The weights that ship with the course (course_utils/pretrained) load and are what their commands made."""

from __future__ import annotations

import pytest
import torch

from course_utils import seq2seq
from course_utils.attention_sinks import streaming_loss
from course_utils.length_extrapolation import LatestSignalTask, accuracy_by_length
from course_utils.pretrained import (
    BAHDANAU_CONFIG,
    BAHDANAU_PATH,
    load_pretrained_bahdanau,
    load_pretrained_no_positions,
    load_pretrained_streaming_decoder,
    load_pretrained_transformer,
)
from course_utils.streaming_decoder import RECIPE as STREAMING_RECIPE
from course_utils.streaming_decoder import load_streaming_decoder, save_streaming_decoder
from course_utils.tiny_decoder import TinyDecoder
from course_utils.transformer import as_seq2seq
from course_utils.transformer_training import (
    RECIPE,
    build_transformer,
    load_transformer,
    save_transformer,
)


@pytest.fixture(scope="module")
def data():
    return seq2seq.make_data(num_pairs=6000, held_out=600, seed=0)  # notebooks 02 and 08's data


def test_the_bahdanau_model_is_notebook_02s_and_translates_its_held_out_sentences(data):
    saved = torch.load(BAHDANAU_PATH, weights_only=True)
    assert BAHDANAU_CONFIG.items() <= saved["config"].items()
    model = load_pretrained_bahdanau()
    assert not model.training
    assert seq2seq.evaluate(model, data.held_out[:60]).accuracy >= 0.9


def test_the_transformer_is_the_recipes_model_and_translates_its_held_out_sentences(data):
    network = load_pretrained_transformer(data)
    assert network.use_positions and not network.training
    assert network.d_model == RECIPE["d_model"] and network.num_heads == RECIPE["num_heads"]
    assert len(network.encoder_blocks) == len(network.decoder_blocks) == RECIPE["layers"]
    assert seq2seq.evaluate(as_seq2seq(network, data), data.held_out[:60]).accuracy >= 0.9


def test_the_ablation_is_the_recipes_model_without_positions_and_cannot_order_words(data):
    network = load_pretrained_no_positions(data)
    assert not network.use_positions and not network.training
    assert network.d_model == RECIPE["d_model"] and network.num_heads == RECIPE["num_heads"]
    assert len(network.encoder_blocks) == len(network.decoder_blocks) == RECIPE["layers"]
    # short sentences leave little order to get wrong, long ones a lot (notebook 08 shows the table)
    result = seq2seq.evaluate(as_seq2seq(network, data), data.held_out[:150])
    assert result.accuracy < 0.6


def test_save_and_load_round_trip(tmp_path, data):
    torch.manual_seed(0)
    network = build_transformer(data, use_positions=False).eval()
    save_transformer(network, tmp_path / "model.pt")
    loaded = load_transformer(tmp_path / "model.pt", data)
    assert not loaded.use_positions
    for (name, ours), (_, theirs) in zip(
        network.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(ours, theirs), name


def test_the_streaming_decoder_is_notebook_13s_and_streams_through_a_window():
    model = load_pretrained_streaming_decoder()
    assert model.positions == STREAMING_RECIPE["positions"] and not model.training
    assert model.settings["layers"] == 1 and model.settings["num_heads"] == 4
    task = LatestSignalTask()
    assert accuracy_by_length(model, task, [STREAMING_RECIPE["train_length"]], seed=7)[32] >= 0.9
    tokens, answers = task.batch(32, 128, torch.Generator().manual_seed(7))
    assert streaming_loss(model, tokens, answers, 16, 0, start=32) < 1.0


def test_streaming_decoder_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TinyDecoder(16, 9, "rope").eval()
    save_streaming_decoder(model, tmp_path / "model.pt")
    loaded = load_streaming_decoder(tmp_path / "model.pt")
    assert loaded.settings == model.settings
    for (name, ours), (_, theirs) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(ours, theirs), name
