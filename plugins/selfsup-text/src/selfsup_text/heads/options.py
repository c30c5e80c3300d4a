"""Options of the text heads (pydantic only: importing this never imports torch or transformers)."""

from __future__ import annotations

from pydantic import Field

from selfsup.options import Options


class TokenClassificationOptions(Options):
    """A class per token (named entities, part of speech) from the backbone's last hidden states."""

    target: str = Field("token_labels", description="Sample key of the per-token classes (int64[T]; -100 where "
                                                    "no class is predicted: padding, special tokens, sub-words).")
    num_classes: int | None = Field(None, gt=1, description="Default: 1 + the largest class in the task's data.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the hidden states.")
