"""An explorer for Neural Turing Machine addressing: step through the weighting over memory slots.

Kept beside ``course_utils.display.widgets`` (it uses the same ``_Explorer`` base and the same static
fallback without ipywidgets 8) so that each module stays one concept and a readable length.
"""

from __future__ import annotations

import torch

from course_utils.display.widgets import _Explorer, widgets
from course_utils.ntm_addressing import AddressingStages

STAGE_TITLES = (
    ("content", "content  w^c = softmax(β cos(k, M_i))"),
    ("gated", "interpolated  w^g = g w^c + (1 - g) w_{t-1}"),
    ("shifted", "shifted  w̃_i = Σ_o s_o w^g_{i-o}"),
    ("sharpened", "sharpened  w_t = w̃^γ / Σ w̃^γ"),
)


class AddressingExplorer(_Explorer):
    """The four stages of NTM addressing at one step, and the weighting of every step so far.

    ``steps`` is what ``ntm_addressing.address_sequence`` returns (one ``AddressingStages`` of
    (N,) weightings per step); ``notes`` (optional) says in words what the controller asked at each
    step. Left: the stages of the step the slider picks, as bars over the N slots. Right: the final
    weighting w_t of steps 0 … t as a (step × slot) heatmap, so the head's path over memory shows.
    Drive it without a browser: set ``explorer.slider.value`` and read ``current_step``,
    ``current_stages``, ``current_weights`` (the step's w_t) and ``redraws``.
    """

    def __init__(self, steps: list[AddressingStages], notes: list[str] | None = None):
        if not steps:
            raise ValueError("steps must hold at least one step's AddressingStages, got none")
        slots = {tuple(stage.shape) for step in steps for stage in step}
        if len(slots) != 1 or len(next(iter(slots))) != 1:
            raise ValueError(
                f"every stage of every step must be one weighting of shape (N,), got shapes {slots}"
            )
        if notes is not None and len(notes) != len(steps):
            raise ValueError(f"notes has {len(notes)} entries for {len(steps)} steps")
        self.steps, self.notes = steps, notes
        self.path = torch.stack([step.sharpened for step in steps]).detach().cpu()  # (T, N)
        self.slider = widgets.IntSlider(value=0, min=0, max=len(steps) - 1, description="step t")
        super().__init__()
        self.slider.observe(self._on_step, names="value")
        self.widget = widgets.VBox([self.slider, self.output])
        self._select(0)

    def _on_step(self, change) -> None:
        self._select(change["new"])

    def _select(self, step: int) -> None:
        self.current_step = step
        self.current_stages = self.steps[step]
        self.current_weights = self.current_stages.sharpened
        self.draw()

    def draw(self) -> None:
        slots = range(self.path.shape[1])
        grid = {"width_ratios": [1, 1, 1.4]}
        with self._new_figure(2, 3, figsize=(13, 5), gridspec_kw=grid) as (fig, axes):
            stage_axes = [axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]]
            for ax, (field, title) in zip(stage_axes, STAGE_TITLES, strict=True):
                weights = getattr(self.current_stages, field).detach().cpu()
                ax.bar(
                    slots,
                    weights.numpy(),
                    color="tab:orange" if field == "sharpened" else "tab:blue",
                )
                ax.set_ylim(0, 1.05)
                ax.set_title(title, fontsize=9)
                ax.set_xticks(list(slots))
                ax.tick_params(labelsize=7)
            for ax in (axes[1, 0], axes[1, 1]):
                ax.set_xlabel("memory slot i")
            gs = axes[0, 2].get_gridspec()
            for ax in axes[:, 2]:
                ax.remove()
            path_ax = fig.add_subplot(gs[:, 2])
            shown = self.path.clone()
            shown[self.current_step + 1 :] = float("nan")  # steps after t are not drawn yet
            path_ax.imshow(shown.numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
            path_ax.set_xlabel("memory slot i")
            path_ax.set_ylabel("step t")
            path_ax.set_title("w_t of every step so far", fontsize=9)
            note = f": {self.notes[self.current_step]}" if self.notes else ""
            fig.suptitle(f"step {self.current_step}{note}", fontsize=10)
            fig.tight_layout()
