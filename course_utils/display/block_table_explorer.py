"""An explorer for the paged key/value cache: the block pool filling and freeing as sequences grow
and end (notebook 13).

Kept beside ``course_utils.display.widgets`` (same ``_Explorer`` base, same static fallback without
ipywidgets 8), so that each module stays one concept and a readable length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_utils.display.widgets import _Explorer, widgets
from course_utils.paged_cache import PagedKVCache


@dataclass(frozen=True)
class PoolSnapshot:
    """The pool after one event: each block's owner (−1 free) and filled slots, the tables."""

    event: str
    owners: tuple[int, ...]
    filled: tuple[int, ...]
    block_tables: dict[int, tuple[int, ...]]
    lengths: dict[int, int]


def replay_schedule(schedule, num_blocks: int, block_size: int) -> list[PoolSnapshot]:
    """Run ``schedule`` on a :class:`PagedKVCache`; one snapshot per event.

    ``schedule`` holds ``("grow", sequence, tokens)`` (append that many positions) and
    ``("end", sequence)`` (release its blocks), in order.
    """
    cache = PagedKVCache(num_blocks, block_size, num_heads=1, head_dim=1)
    one = torch.zeros(1, 1)
    snapshots = []
    for event in schedule:
        if event[0] == "grow":
            _, sequence, tokens = event
            for _ in range(tokens):
                cache.append(sequence, one, one)
            said = f"sequence {sequence} grows by {tokens} to {cache.lengths[sequence]} tokens"
        elif event[0] == "end":
            _, sequence = event
            cache.release(sequence)
            said = f"sequence {sequence} ends: its blocks return to the pool"
        else:
            raise ValueError(
                f"an event is ('grow', sequence, tokens) or ('end', sequence), got {event!r}"
            )
        owners, filled = [-1] * num_blocks, [0] * num_blocks
        for sequence, table in cache.block_tables.items():
            for index, block in enumerate(table):
                owners[block] = sequence
                filled[block] = min(block_size, cache.lengths[sequence] - index * block_size)
        tables = {sequence: tuple(table) for sequence, table in cache.block_tables.items()}
        snapshots.append(
            PoolSnapshot(said, tuple(owners), tuple(filled), tables, dict(cache.lengths))
        )
    return snapshots


class BlockTableExplorer(_Explorer):
    """Step through a schedule of sequences growing and ending; watch the pool and block tables.

    Left: the pool's blocks, coloured by the sequence that holds them (white = free), each labelled
    with its filled slots. Right: each live sequence's block table and length. Drive it without a
    browser: set ``explorer.slider.value`` and read ``current_step``, ``current`` (a
    :class:`PoolSnapshot`), ``current_title`` and ``redraws``.
    """

    def __init__(self, schedule, num_blocks: int = 16, block_size: int = 4):
        if not schedule:
            raise ValueError("schedule must hold at least one event, got none")
        self.block_size, self.num_blocks = block_size, num_blocks
        self.snapshots = replay_schedule(schedule, num_blocks, block_size)
        self.slider = widgets.IntSlider(
            value=0, min=0, max=len(self.snapshots) - 1, description="event"
        )
        super().__init__()
        self.slider.observe(self._show_event, names="value")
        self.widget = widgets.VBox([self.slider, self.output])
        self._show_event({"new": 0})

    def _show_event(self, change) -> None:
        """The slider moved (or the explorer starts): draw the pool after event ``change["new"]``."""
        self.current_step = change["new"]
        self.current = self.snapshots[self.current_step]
        self.draw()

    def draw(self) -> None:
        from matplotlib import colormaps

        snapshot, columns = self.current, 8
        colours = colormaps["tab10"]
        rows = -(-self.num_blocks // columns)
        with self._new_figure(1, 2, figsize=(11, 1.2 + 0.9 * rows)) as (fig, (pool_ax, table_ax)):
            for block, (owner, filled) in enumerate(
                zip(snapshot.owners, snapshot.filled, strict=True)
            ):
                row, column = divmod(block, columns)
                face = "white" if owner < 0 else colours(owner % 10)
                pool_ax.add_patch(
                    _rectangle(
                        (column, rows - 1 - row), face, alpha=0.35 + 0.65 * filled / self.block_size
                    )
                )
                label = f"#{block}\n" + (
                    "free" if owner < 0 else f"s{owner}: {filled}/{self.block_size}"
                )
                pool_ax.text(
                    column + 0.5, rows - 0.5 - row, label, ha="center", va="center", fontsize=7
                )
            pool_ax.set_xlim(0, columns)
            pool_ax.set_ylim(0, rows)
            pool_ax.set_axis_off()
            free = sum(owner < 0 for owner in snapshot.owners)
            self.current_title = f"event {self.current_step}: {snapshot.event}; {free} blocks free"
            pool_ax.set_title(self.current_title, fontsize=9)
            lines = [
                f"s{sequence}: length {snapshot.lengths[sequence]:>3}, blocks {list(table)}"
                for sequence, table in sorted(snapshot.block_tables.items())
            ]
            table_ax.text(
                0,
                1,
                "\n".join(lines) or "(no live sequence)",
                va="top",
                family="monospace",
                fontsize=8,
            )
            table_ax.set_title("block tables", fontsize=9)
            table_ax.set_axis_off()
            fig.tight_layout()


def _rectangle(corner, face, alpha):
    from matplotlib.patches import Rectangle

    return Rectangle(corner, 0.95, 0.9, facecolor=face, edgecolor="black", alpha=alpha)


__all__ = ["BlockTableExplorer", "PoolSnapshot", "replay_schedule"]
