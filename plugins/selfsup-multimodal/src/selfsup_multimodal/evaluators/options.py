"""Options of the ``retrieval`` evaluator (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from selfsup.options import Options


class RetrievalOptions(Options):
    """Recall@k in both directions on held-out pairs, through a cross-modal task's projections."""

    task: str = Field(description="The recipe's cross-modal task (its [tasks] key) whose projections embed both sides.")
    ks: list[int] = Field(default_factory=lambda: [1, 5], min_length=1, description="Recall@k values to report.")
    match: Literal["text", "label", "pair"] = Field(
        "text",
        description="A retrieved item is a hit if it is the query's partner ('pair'), has the same text tokens "
        "('text') or the same label ('label').",
    )
    needs_fit_data: ClassVar[bool] = False
