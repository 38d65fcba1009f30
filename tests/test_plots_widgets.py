"""Pictures and explorers, driven without a browser."""

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils.display.plots import attention_heatmap, bar_weights, plot_curves
from course_utils.display.widgets import TemperatureExplorer


def test_heatmap_labels_rows_and_columns():
    ax = attention_heatmap(torch.eye(3), row_labels=["a", "b", "c"], col_labels=["x", "y", "z"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    assert len(ax.texts) == 9  # small matrices are annotated
    plt.close("all")


def test_heatmap_rejects_wrong_labels_and_shapes():
    with pytest.raises(ValueError, match="row_labels has 2 labels but the matrix has 3"):
        attention_heatmap(torch.eye(3), row_labels=["a", "b"])
    with pytest.raises(ValueError, match="must be a 2-D"):
        attention_heatmap(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="curve 'a' has 2 points but x has 3"):
        plot_curves([1, 2, 3], {"a": [1, 2]})
    with pytest.raises(ValueError, match="2 labels for 3 weights"):
        bar_weights(torch.ones(3) / 3, labels=["a", "b"])
    plt.close("all")


def test_temperature_explorer_redraws_when_the_slider_moves():
    explorer = TemperatureExplorer(torch.tensor([2.0, 1.0, 0.0]), labels=["a", "b", "c"])
    redraws = explorer.redraws
    explorer.slider.value = 0.01
    assert explorer.redraws == redraws + 1
    torch.testing.assert_close(explorer.current_weights, torch.tensor([1.0, 0.0, 0.0]))
    explorer.slider.value = 100.0
    assert explorer.redraws == redraws + 2
    torch.testing.assert_close(explorer.current_weights, torch.full((3,), 1 / 3), atol=0.01, rtol=0)
    plt.close("all")


def test_temperature_explorer_bad_input():
    with pytest.raises(ValueError, match="at least 2 entries"):
        TemperatureExplorer(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="1 labels for 2 scores"):
        TemperatureExplorer(torch.tensor([1.0, 2.0]), labels=["a"])


def _head_sentences():
    torch.manual_seed(0)
    sentences = []
    for source_len, target_len in ((4, 3), (6, 5)):
        weights = torch.softmax(torch.randn(2, 3, target_len, source_len), dim=-1)
        weights[1, 2] = (
            torch.eye(target_len, source_len) * 0.9 + 0.1 / source_len
        )  # head 2 of layer 1
        source = [f"e{i}" for i in range(source_len)]
        target = [f"f{i}" for i in range(target_len)]
        sentences.append((source, target, weights))
    gold = [torch.eye(t, s, dtype=torch.bool) for (s, t) in ((4, 3), (6, 5))]
    return sentences, gold


def test_head_explorer_redraws_and_counts_agreement_as_the_sliders_move():
    from course_utils.display.widgets import HeadExplorer

    sentences, gold = _head_sentences()
    explorer = HeadExplorer(sentences, gold=gold)
    assert explorer.redraws == 1
    torch.testing.assert_close(explorer.current_weights, sentences[0][2][0, 0])
    explorer.layer_slider.value = 1
    explorer.head_slider.value = 2
    assert explorer.current_agreement == (3, 3)  # the diagonal head, 3 French words
    explorer.sentence_slider.value = 1
    assert explorer.current_agreement == (5, 5)
    torch.testing.assert_close(explorer.current_weights, sentences[1][2][1, 2])
    assert explorer.redraws == 4
    assert HeadExplorer(sentences).current_agreement is None  # no gold, no count
    plt.close("all")


def test_head_explorer_bad_input_names_what_is_wrong():
    from course_utils.display.widgets import HeadExplorer

    sentences, gold = _head_sentences()
    with pytest.raises(ValueError, match="at least one"):
        HeadExplorer([])
    with pytest.raises(
        ValueError, match=r"sentences\[0\]: weights must be \(layers, heads, 3, 4\)"
    ):
        HeadExplorer([(sentences[0][0], sentences[0][1], torch.rand(2, 3, 4, 3))])
    with pytest.raises(ValueError, match=r"gold\[1\] must be \(5, 6\)"):
        HeadExplorer(sentences, gold=[gold[0], gold[0]])
    with pytest.raises(ValueError, match=r"layer must be an int in 0..1"):
        HeadExplorer(sentences, layer=2)
    with pytest.raises(ValueError, match=r"head must be an int in 0..2"):
        HeadExplorer(sentences, head=-1)
