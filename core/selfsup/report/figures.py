"""Figures of a report, made with matplotlib and returned as PNG bytes.

Figures are built as ``matplotlib.figure.Figure`` objects, not through pyplot, so making a report
changes no global plotting state (a notebook's backend is left alone). :func:`png` also takes the
figures plugins return (pyplot ones are closed after rendering) and PNG bytes as they are.
"""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

DPI = 90
COLOURS = ["#2459c7", "#d9822b", "#2e9e5b", "#c23b3b", "#7b52ab", "#8c6d31", "#d45fa5", "#5f6b7a"]


@dataclass
class Panel:
    """One plot of a grid: ``lines`` are ``(label, steps, values)``; ``marks`` are steps where a
    dashed red line is drawn (a collapse warning fired), ``log`` a logarithmic y axis."""

    title: str
    lines: list[tuple[str, Sequence[float], Sequence[float]]]
    marks: Sequence[float] = field(default_factory=list)
    log: bool = False
    ylabel: str = ""


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` outside pyplot (collected like any object, no backend needed)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def use_agg() -> None:
    """Make pyplot (which optuna's plots use) draw off-screen, unless pyplot is already in use: a
    notebook keeps its own backend."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


def png(figure: Any, dpi: int = DPI) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards when pyplot manages it), or ``figure`` as
    it is when it already is PNG bytes."""
    if isinstance(figure, (bytes, bytearray)):
        return bytes(figure)
    if not hasattr(figure, "savefig"):
        raise TypeError(f"a report figure must be a matplotlib Figure or PNG bytes, got {type(figure).__name__}")
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(figure)
    return buffer.getvalue()


def grid(panels: Sequence[Panel], columns: int = 3, panel_size: tuple[float, float] = (4.2, 2.8)) -> bytes:
    """Line plots side by side, ``columns`` a row, as one PNG."""
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    fig = new_figure(panel_size[0] * columns, panel_size[1] * rows)
    axes = fig.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(panels):
            ax.set_visible(False)
            continue
        draw(ax, panels[index])
    return png(fig)


def draw(ax: Any, panel: Panel) -> None:
    """One panel on ``ax``: its lines (a marker when a line has a single point), marks and legend."""
    for number, (label, steps, values) in enumerate(panel.lines):
        finite = [(s, v) for s, v in zip(steps, values) if math.isfinite(v)]
        xs, ys = [s for s, _ in finite], [v for _, v in finite]
        colour = COLOURS[number % len(COLOURS)]
        ax.plot(xs, ys, color=colour, label=label, linewidth=1.6, marker="o" if len(xs) <= 12 else None,
                markersize=3)
        bad = [s for s, v in zip(steps, values) if not math.isfinite(v)]
        if bad:  # non-finite values (a diverged run) as crosses on the axis
            ax.plot(bad, [min(ys, default=0.0)] * len(bad), "x", color="#c23b3b", label=f"{label}: non-finite")
    for step in panel.marks:
        ax.axvline(step, color="#c23b3b", linestyle="--", linewidth=1.2)
    if panel.log and all(v > 0 for _, _, vals in panel.lines for v in vals if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    if panel.ylabel:
        ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    if len(panel.lines) > 1 or panel.marks:
        ax.legend(fontsize=7, loc="best")
