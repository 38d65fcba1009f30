"""Without ipywidgets 8 every explorer still draws, statically, and its controls still drive it.

Each case runs in a fresh interpreter where ``import ipywidgets`` gives version 7 (an older hosted
Jupyter) or fails (no ipywidgets at all), so ``course_utils.display.widgets`` picks its static stand-ins.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from course_utils.display import static_widgets

PROGRAM = """
import sys, types
if {version!r} == "none":
    sys.modules["ipywidgets"] = None  # import fails
else:
    sys.modules["ipywidgets"] = types.SimpleNamespace(__version__={version!r})
import matplotlib
matplotlib.use("Agg")
import torch
from course_utils.display import widgets
assert widgets.INTERACTIVE is False

temperature = widgets.TemperatureExplorer(torch.tensor([2.0, 0.5, -1.0]))
sharp = temperature.current_weights.max().item()
temperature.slider.value = 100.0
assert temperature.current_weights.max().item() < sharp, "a higher temperature must flatten the weights"
temperature.slider.value = 1e6  # clamped to 10**2, as ipywidgets clamps
assert temperature.slider.value == 100.0

mask = widgets.MaskExplorer(length=6, real_length=4, kind="causal + padding")
mask.length_slider.value = 3  # real tokens clamp to the new length
assert mask.real_length_slider.value == 3

tiles = widgets.TileExplorer(n=8, block=4, causal=True)
tiles.slider.value = tiles.slider.max
print("redraws", temperature.redraws, mask.redraws, tiles.redraws)
print(repr(temperature.widget))
"""


@pytest.mark.parametrize("version", ["7.7.5", "none"], ids=["ipywidgets-7", "no-ipywidgets"])
def test_explorers_fall_back_to_static_figures(version):
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(version=version)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    redraws = [int(count) for count in result.stdout.split("redraws", 1)[1].split("\n")[0].split()]
    assert all(count >= 2 for count in redraws), result.stdout
    assert static_widgets.INTERACTIVE_NOTE in result.stdout


def test_static_controls_clamp_notify_and_refuse_unknown_choices():
    seen = []
    slider = static_widgets.IntSlider(value=5, min=0, max=10)
    slider.observe(lambda change: seen.append((change["old"], change["new"])))
    slider.max = 3
    assert slider.value == 3 and seen == [(5, 3)]
    slider.value = 3  # no change, no notification
    assert seen == [(5, 3)]
    choice = static_widgets.Dropdown(options=[2, 4], value=4)
    with pytest.raises(ValueError, match=r"value: expected one of \(2, 4\), got 3"):
        choice.value = 3
    with pytest.raises(ValueError, match="names: only 'value'"):
        slider.observe(print, names="max")
