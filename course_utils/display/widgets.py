"""ipywidgets explorers: move a slider, watch the attention weights change.

Each explorer is a small class holding its slider(s), an ``Output`` area and the weights it drew
last (``current_weights``), so tests can drive it without a browser: set ``explorer.slider.value``
and read ``explorer.current_weights``. Display it in a notebook with ``explorer.widget``.

Without ipywidgets 8 (a hosted Jupyter that lacks it, an older one) the explorers still work, with
``course_utils.display.static_widgets``: the figure is drawn statically and the controls are set from code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib.pyplot as plt
import torch
from IPython.display import display

from course_utils.display.plots import attention_heatmap, bar_weights
from course_utils.masks import causal_mask, padding_mask
from course_utils.softmax import masked_softmax, softmax


def _widget_library():
    """ipywidgets when version 8 is there (interactive), else the static stand-ins."""
    try:
        import ipywidgets

        if int(ipywidgets.__version__.split(".")[0]) >= 8:
            return ipywidgets, True
    except (ImportError, ValueError, AttributeError):
        pass
    from course_utils.display import static_widgets

    return static_widgets, False


widgets, INTERACTIVE = _widget_library()


class _Explorer:
    """What every explorer shares: an ``Output`` area and a count of its redraws."""

    def __init__(self) -> None:
        self.output = widgets.Output()
        self.redraws = 0

    @contextmanager
    def _new_figure(self, *grid, **figure) -> Iterator[tuple]:
        """Count a redraw; the figure drawn inside the block replaces the one in the output area."""
        self.redraws += 1
        with self.output:
            self.output.clear_output(wait=True)
            fig, axes = plt.subplots(*grid, **figure)
            yield fig, axes
            display(fig)
            plt.close(fig)


class TemperatureExplorer(_Explorer):
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
        super().__init__()
        self.current_weights = self.weights_at(temperature)
        self.slider.observe(self._on_change, names="value")
        self.widget = widgets.VBox([self.slider, self.output])
        self.draw()

    def weights_at(self, temperature: float) -> torch.Tensor:
        return softmax(self.scores / temperature, dim=0)  # α = softmax(s / T)

    def _on_change(self, change) -> None:
        self.current_weights = self.weights_at(change["new"])
        self.draw()

    def draw(self) -> None:
        with self._new_figure(figsize=(5, 2.5)) as (_, ax):
            entropy = -(self.current_weights * self.current_weights.clamp_min(1e-30).log()).sum()
            bar_weights(
                self.current_weights,
                self.labels,
                ax=ax,
                title=f"T = {self.slider.value:.2f}, entropy = {entropy:.2f} nats",
            )


class MaskExplorer(_Explorer):
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
        super().__init__()
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
        empty_rows = int((~self.current_mask.any(dim=-1)).sum())
        with self._new_figure(1, 2, figsize=(10, 4)) as (fig, (mask_ax, weights_ax)):
            mask_ax.imshow(self.current_mask.numpy(), cmap="Greys_r", vmin=0, vmax=1)
            mask_ax.set_title(f"{self.kind_selector.value} mask (white = may attend)")
            mask_ax.set_xlabel("keys")
            mask_ax.set_ylabel("queries")
            attention_heatmap(
                self.current_weights,
                ax=weights_ax,
                title=f"weights; {empty_rows} fully masked row(s) → zeros",
            )
            # Weights are probabilities: one 0–1 colour scale for every setting, also when all are 0.
            self.weights_image = weights_ax.images[0]
            self.weights_image.set_clim(0.0, 1.0)
            fig.tight_layout()


class TileExplorer(_Explorer):
    """Step through flash attention's tiles: which (query block, key block) is computed when.

    Left: the n × n score matrix cut into tiles — done, current, not computed yet (white), and
    (causal) skipped tiles that are never computed, with the masked pairs of the partial (diagonal)
    tiles shaded; a legend says which colour is which. The slider and the title count steps from 0. Right: for each
    query row of the current block, the share of its final softmax mass seen so far,
    l · exp(m − m_final) / l_final, which reaches 1 after the row's last tile (online softmax).

    Drive it without a browser: set ``explorer.slider.value`` (tile step), ``explorer.block_picker.value``
    (block size) or ``explorer.causal_box.value`` and read ``current_step``, ``current_tile``,
    ``current_mass_seen``, ``current_title``, ``steps`` and ``redraws``.
    """

    def __init__(
        self, n: int = 16, block: int = 4, causal: bool = True, dim: int = 8, seed: int = 0
    ):
        from course_utils.flash import tile_schedule

        if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 64:
            raise ValueError(f"n must be an int between 2 and 64 (one cell per pair), got {n!r}")
        self._tile_schedule = tile_schedule
        self.n = n
        generator = torch.Generator().manual_seed(seed)
        # Growing scores along the keys make the running max move: the rescaling is visible.
        self.queries = torch.randn(1, n, dim, generator=generator) * 1.5
        self.keys = torch.randn(1, n, dim, generator=generator) * 1.5
        self.values = torch.randn(1, n, dim, generator=generator)
        options = sorted({size for size in (2, 3, 4, 5, 8, block) if 1 <= size <= n})
        self.block_picker = widgets.Dropdown(options=options, value=block, description="block")
        self.causal_box = widgets.Checkbox(value=causal, description="causal")
        self.slider = widgets.IntSlider(value=0, min=0, max=0, description="tile step")
        super().__init__()
        self._replay()
        self.slider.observe(self._on_step, names="value")
        self.block_picker.observe(self._on_settings, names="value")
        self.causal_box.observe(self._on_settings, names="value")
        controls = widgets.HBox([self.slider, self.block_picker, self.causal_box])
        self.widget = widgets.VBox([controls, self.output])
        self.draw()

    def _replay(self) -> None:
        """Run the forward pass once, recording the running (m, l) after every computed tile."""
        from course_utils.flash import flash_attention_forward

        block, causal = self.block_picker.value, self.causal_box.value
        self.steps = []

        def record(step) -> None:
            self.steps.append((step.tile, step.row_max[0].clone(), step.row_sum[0].clone()))

        _, self.final_lse = flash_attention_forward(
            self.queries, self.keys, self.values, causal, block, block, on_tile=record
        )
        self.tiles = self._tile_schedule(self.n, self.n, block, block, causal)
        self.skipped = sum(tile.kind == "skip" for tile in self.tiles)
        with self.slider.hold_trait_notifications():
            self.slider.max = len(self.steps) - 1
            self.slider.value = min(self.slider.value, self.slider.max)
        self._select(self.slider.value)

    def _select(self, step: int) -> None:
        tile, row_max, row_sum = self.steps[step]
        self.current_step = step
        self.current_tile = tile
        final_lse = self.final_lse[0, tile.q_start : tile.q_stop]
        # share of the final normaliser seen so far: l · exp(m − L), with L = m_final + log l_final
        self.current_mass_seen = row_sum * torch.exp(row_max - final_lse)

    def _on_step(self, change) -> None:
        self._select(change["new"])
        self.draw()

    def _on_settings(self, change) -> None:
        self._replay()
        self.draw()

    def _tile_image(self) -> torch.Tensor:
        """n × n codes: 0 to do, 1 done, 2 current, 3 skipped, 4 masked inside a computed tile."""
        image = torch.zeros(self.n, self.n)
        done = {(tile.q_index, tile.k_index) for tile, _, _ in self.steps[: self.current_step]}
        for tile in self.tiles:
            cells = (slice(tile.q_start, tile.q_stop), slice(tile.k_start, tile.k_stop))
            if tile.kind == "skip":
                image[cells] = 3
            elif tile == self.current_tile:
                image[cells] = 2
            elif (tile.q_index, tile.k_index) in done:
                image[cells] = 1
        if self.causal_box.value:
            future = torch.ones(self.n, self.n, dtype=torch.bool).triu(1)
            image[future & (image != 3)] = 4
        return image

    # colour of each code of _tile_image, and what it means
    TILE_COLOURS = (
        ("white", "not computed yet"),
        ("#9ecae1", "done"),
        ("#e6550d", "current tile"),
        ("#d9d9d9", "skipped (all keys in the future)"),
        ("#636363", "masked pair (j > i)"),
    )

    def draw(self) -> None:
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        tile = self.current_tile
        with self._new_figure(1, 2, figsize=(10, 4)) as (fig, (grid_ax, mass_ax)):
            colours = ListedColormap([colour for colour, _ in self.TILE_COLOURS])
            grid_ax.imshow(self._tile_image().numpy(), cmap=colours, vmin=-0.5, vmax=4.5)
            block = self.block_picker.value
            for edge in range(block, self.n, block):
                grid_ax.axhline(edge - 0.5, color="black", linewidth=0.8)
                grid_ax.axvline(edge - 0.5, color="black", linewidth=0.8)
            self.current_title = (
                f"step {self.current_step} of 0–{len(self.steps) - 1}: queries [{tile.q_start}, "
                f"{tile.q_stop}) × keys [{tile.k_start}, {tile.k_stop}) ({tile.kind}); "
                f"{self.skipped} tiles skipped"
            )
            grid_ax.set_title(self.current_title, fontsize=9)
            grid_ax.set_xlabel("keys")
            grid_ax.set_ylabel("queries")
            legend = [
                Patch(facecolor=colour, edgecolor="black", label=meaning)
                for colour, meaning in self.TILE_COLOURS
            ]
            grid_ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
            rows = list(range(tile.q_start, tile.q_stop))
            mass_ax.bar(rows, self.current_mass_seen.numpy(), color="#e6550d")
            mass_ax.axhline(1.0, color="black", linestyle=":", linewidth=1)
            mass_ax.set_ylim(0, 1.1)
            mass_ax.set_xticks(rows)
            mass_ax.set_xlabel("query row of the current block")
            mass_ax.set_ylabel("softmax mass seen so far")
            mass_ax.set_title("l · exp(m − m_final) / l_final  (1 = row finished)", fontsize=9)
            fig.tight_layout()


class HeadExplorer(_Explorer):
    """A trained encoder–decoder's cross-attention: one head of one layer over one sentence.

    ``sentences`` is a list of ``(source words, target words, weights)`` with ``weights`` of shape
    (layers, heads, target words, source words), e.g. from ``Seq2SeqTransformer.forward``; ``gold``
    (optional, one bool (target, source) matrix per sentence) marks the dictionary alignment, and
    the title then counts the target words whose strongest weight falls on it.
    Controls: ``sentence_slider``, ``layer_slider``, ``head_slider``. State after each change:
    ``current_weights`` (target, source), ``current_agreement`` (words agreeing, words), ``redraws``.
    """

    def __init__(self, sentences, gold=None, layer: int = 0, head: int = 0):
        if not sentences:
            raise ValueError("sentences must hold at least one (source, target, weights) triple")
        layers, heads = self._check(sentences, gold)
        if not (isinstance(layer, int) and 0 <= layer < layers):
            raise ValueError(f"layer must be an int in 0..{layers - 1}, got {layer!r}")
        if not (isinstance(head, int) and 0 <= head < heads):
            raise ValueError(f"head must be an int in 0..{heads - 1}, got {head!r}")
        self.sentences, self.gold = sentences, gold
        self.sentence_slider = widgets.IntSlider(
            value=0, min=0, max=len(sentences) - 1, description="sentence"
        )
        self.layer_slider = widgets.IntSlider(
            value=layer, min=0, max=layers - 1, description="layer"
        )
        self.head_slider = widgets.IntSlider(value=head, min=0, max=heads - 1, description="head")
        super().__init__()
        for slider in (self.sentence_slider, self.layer_slider, self.head_slider):
            slider.observe(self._on_change, names="value")
        controls = widgets.HBox([self.sentence_slider, self.layer_slider, self.head_slider])
        self.widget = widgets.VBox([controls, self.output])
        self._update()

    @staticmethod
    def _check(sentences, gold) -> tuple[int, int]:
        shapes = set()
        for index, (source, target, weights) in enumerate(sentences):
            expected = (len(target), len(source))
            if weights.dim() != 4 or tuple(weights.shape[2:]) != expected:
                raise ValueError(
                    f"sentences[{index}]: weights must be (layers, heads, {expected[0]}, "
                    f"{expected[1]}) for its {expected[0]} target and {expected[1]} source words, "
                    f"got {tuple(weights.shape)}"
                )
            if gold is not None and tuple(gold[index].shape) != expected:
                raise ValueError(
                    f"gold[{index}] must be {expected}, got {tuple(gold[index].shape)}"
                )
            shapes.add(tuple(weights.shape[:2]))
        if len(shapes) != 1:
            raise ValueError(
                f"every sentence's weights need the same (layers, heads), got {shapes}"
            )
        if gold is not None and len(gold) != len(sentences):
            raise ValueError(f"gold has {len(gold)} matrices for {len(sentences)} sentences")
        return shapes.pop()

    def _on_change(self, change) -> None:
        self._update()

    def _update(self) -> None:
        index = self.sentence_slider.value
        _, _, weights = self.sentences[index]
        self.current_weights = weights[self.layer_slider.value, self.head_slider.value]
        self.current_agreement = None
        if self.gold is not None:
            strongest = self.current_weights.argmax(
                dim=-1
            )  # the source word each target word reads
            hits = self.gold[index][torch.arange(len(strongest)), strongest]
            self.current_agreement = (int(hits.sum()), len(strongest))
        self.draw()

    def draw(self) -> None:
        source, target, _ = self.sentences[self.sentence_slider.value]
        title = f"layer {self.layer_slider.value}, head {self.head_slider.value}"
        if self.current_agreement is not None:
            title += ": strongest weight on the dictionary's word for {} of {} words".format(
                *self.current_agreement
            )
        size = (max(5.0, 0.45 * len(source) + 2), max(3.5, 0.4 * len(target) + 1.5))
        with self._new_figure(figsize=size) as (fig, ax):
            attention_heatmap(
                self.current_weights,
                row_labels=list(target),
                col_labels=list(source),
                ax=ax,
                title=title,
                xlabel="English (attended to)",
                ylabel="French (producing)",
                annotate=False,
            )
            if self.gold is not None:  # dictionary alignment: a white frame on each gold cell
                rows, cols = torch.nonzero(self.gold[self.sentence_slider.value], as_tuple=True)
                ax.scatter(cols, rows, marker="s", s=60, facecolors="none", edgecolors="white")
            fig.tight_layout()
