"""Pictures and explorers, driven without a browser."""

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils.plots import attention_heatmap, bar_weights, plot_curves
from course_utils.widgets import TemperatureExplorer


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
