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

from course_utils.masks import causal_mask, padding_mask
from course_utils.plots import attention_heatmap, bar_weights
from course_utils.softmax import masked_softmax, softmax


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


class MaskExplorer:
    """A padding, causal or combined mask and the attention weights it leaves, redrawn live.

    Controls: ``length_slider`` (sequence length n), ``real_length_slider`` (how many of the n
    tokens are real; the rest is padding) and ``kind_selector`` (which mask). Left panel: the
    (n × n) mask, True = may attend. Right panel: masked_softmax of a fixed score matrix. A query
    row with no key left (e.g. 0 real tokens) gets all-zero weights, not NaN.
    State after each change: ``current_mask``, ``current_weights``, ``redraws``.
    """

    KINDS = ("padding", "causal", "causal + padding")

    def __init__(
        self,
        length: int = 6,
        real_length: int = 4,
        kind: str = "causal + padding",
        max_length: int = 12,
        seed: int = 0,
    ):
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if not isinstance(length, int) or not 1 <= length <= max_length:
            raise ValueError(f"length must be an int in [1, {max_length}], got {length!r}")
        if not isinstance(real_length, int) or not 0 <= real_length <= length:
            raise ValueError(
                f"real_length must be an int in [0, length={length}], got {real_length!r}"
            )
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        generator = torch.Generator().manual_seed(seed)
        self.scores = torch.randn(max_length, max_length, generator=generator)  # fixed s_ij
        self.length_slider = widgets.IntSlider(
            value=length, min=1, max=max_length, description="length n"
        )
        self.real_length_slider = widgets.IntSlider(
            value=real_length, min=0, max=length, description="real tokens"
        )
        self.kind_selector = widgets.ToggleButtons(options=self.KINDS, value=kind)
        self.output = widgets.Output()
        self.redraws = 0
        self._update()
        self.length_slider.observe(self._on_length_change, names="value")
        self.real_length_slider.observe(self._on_change, names="value")
        self.kind_selector.observe(self._on_change, names="value")
        self.widget = widgets.VBox(
            [self.kind_selector, self.length_slider, self.real_length_slider, self.output]
        )

    @staticmethod
    def mask_for(length: int, real_length: int, kind: str) -> torch.Tensor:
        """(length, length) bool mask, True = query i may attend key j."""
        keys_real = padding_mask([real_length], length)  # (1, n): key j is a real token
        if kind == "padding":
            return keys_real.expand(length, length).clone()
        if kind == "causal":
            return causal_mask(length)
        if kind == "causal + padding":
            return causal_mask(length) & keys_real  # past AND real
        raise ValueError(f"kind must be one of {MaskExplorer.KINDS}, got {kind!r}")

    def _on_length_change(self, change) -> None:
        # Shrinking n clamps the real-token count, which fires _on_change by itself.
        self.real_length_slider.max = change["new"]
        self._update()

    def _on_change(self, change) -> None:
        self._update()

    def _update(self) -> None:
        length = self.length_slider.value
        self.current_mask = self.mask_for(
            length, min(self.real_length_slider.value, length), self.kind_selector.value
        )
        # α = masked_softmax(S, mask): zero weight on masked keys, zero rows where nothing is left
        self.current_weights = masked_softmax(self.scores[:length, :length], self.current_mask)
        self.draw()

    def draw(self) -> None:
        self.redraws += 1
        empty_rows = int((~self.current_mask.any(dim=-1)).sum())
        with self.output:
            self.output.clear_output(wait=True)
            fig, (mask_ax, weights_ax) = plt.subplots(1, 2, figsize=(10, 4))
            mask_ax.imshow(self.current_mask.numpy(), cmap="Greys_r", vmin=0, vmax=1)
            mask_ax.set_title(f"{self.kind_selector.value} mask (white = may attend)")
            mask_ax.set_xlabel("keys")
            mask_ax.set_ylabel("queries")
            attention_heatmap(
                self.current_weights,
                ax=weights_ax,
                title=f"weights; {empty_rows} fully masked row(s) → zeros",
            )
            fig.tight_layout()
            display(fig)
            plt.close(fig)
