"""Options of the ``clip`` task (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from selfsup.options import Options


class CLIPOptions(Options):
    """Symmetric InfoNCE between the projected embeddings of two encoders (a table of two roles)."""

    embed_dim: int = Field(128, gt=0, description="Size of the shared embedding space.")
    projection: Literal["linear", "mlp"] = Field("linear", description="Head per role: one linear map (CLIP) or "
                                                                       "Linear-GELU-Linear.")
    temperature: float = Field(0.07, gt=0,
                               description="Initial temperature; learned (as log 1/t), capped at 1/100 as in CLIP.")
    learn_temperature: bool = Field(True, description="Learn the temperature (CLIP) or keep it fixed.")
    positives: Literal["pair", "same_text"] = Field(
        "same_text",
        description="'pair': only the sample's own partner is positive; 'same_text': every item in the batch whose "
        "text side has the same tokens is a positive too (short captions repeat within a batch).",
    )
    gather_distributed: bool = Field(True, description="Negatives from every DDP rank (with gradients).")
