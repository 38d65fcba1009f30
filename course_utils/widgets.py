"""ipywidgets explorers: move a slider, watch the attention weights change.

Each explorer is a small class holding its slider(s), an ``Output`` area and the weights it drew
last (``current_weights``), so tests can drive it without a browser: set ``explorer.slider.value``
and read ``explorer.current_weights``. Display it in a notebook with ``explorer.widget``.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from course_utils.plots import bar_weights
from course_utils.softmax import softmax


class TemperatureExplorer:
    """softmax(scores / T) as a bar chart, redrawn as the temperature slider moves.

    Low T → all weight on the best-scoring key (hard lookup); high T → uniform weights (the mean).
    """

    def __init__(self, scores, labels: Sequence[str] | None = None, temperature: float = 1.0):
        self.scores = torch.as_tensor(scores, dtype=torch.float32).flatten()
        if self.scores.numel() < 2:
            raise ValueError(f"scores needs at least 2 entries, got {self.scores.numel()}")
        self.labels = (
            list(labels) if labels is not None else [str(i) for i in range(len(self.scores))]
        )
        if len(self.labels) != len(self.scores):
            raise ValueError(f"{len(self.labels)} labels for {len(self.scores)} scores")
        self.slider = widgets.FloatLogSlider(
            value=temperature,
            base=10,
            min=-2,
            max=2,
            step=0.05,
            description="temperature",
            continuous_update=True,
            style={"description_width": "initial"},
            readout_format=".2f",
        )
        self.output = widgets.Output()
        self.current_weights = self.weights_at(temperature)
        self.redraws = 0
        self.slider.observe(self._on_change, names="value")
        self.widget = widgets.VBox([self.slider, self.output])
        self.draw()

    def weights_at(self, temperature: float) -> torch.Tensor:
        return softmax(self.scores / temperature, dim=0)  # α = softmax(s / T)

    def _on_change(self, change) -> None:
        self.current_weights = self.weights_at(change["new"])
        self.draw()

    def draw(self) -> None:
        self.redraws += 1
        with self.output:
            self.output.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 2.5))
            entropy = -(self.current_weights * self.current_weights.clamp_min(1e-30).log()).sum()
            bar_weights(
                self.current_weights,
                self.labels,
                ax=ax,
                title=f"T = {self.slider.value:.2f}, entropy = {entropy:.2f} nats",
            )
            display(fig)
            plt.close(fig)
