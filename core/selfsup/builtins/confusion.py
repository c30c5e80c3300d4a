"""The confusion-matrix picture of a classification head (``confusion.png``, and the report's section)."""

from __future__ import annotations

from typing import Any, Sequence


def confusion_figure(confusion: Sequence[Sequence[int]], names: Sequence[str], title: str = "") -> Any:
    """A matplotlib ``Figure`` (made without pyplot) of ``confusion`` (rows: true class, columns:
    predicted), with the counts written in the cells when there are at most 30 classes."""
    from matplotlib.figure import Figure

    size = max(4.0, 0.45 * len(names) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    image = ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 10 else 0)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if len(names) <= 30:
        top = max((max(row) for row in confusion if len(row)), default=0) or 1
        for i, row in enumerate(confusion):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                        color="white" if value > top / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
