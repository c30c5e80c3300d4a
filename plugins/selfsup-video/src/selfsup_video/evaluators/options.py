"""Options of the selfsup-video evaluators (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from selfsup.options import Options


class FrameOrderAccuracyOptions(Options):
    """A linear probe on frozen clip embeddings telling ordered clips from altered ones."""

    needs_fit_data: ClassVar[bool] = True  # the probe is fitted on fit_data, scored on data
    mode: Literal["shuffle", "reverse"] = Field(
        "shuffle", description="shuffle: each clip against a random non-identity permutation of its frames; "
                               "reverse: each clip against itself played backwards.")
    max_iter: int = Field(200, gt=0, description="L-BFGS iterations of the probe.")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty on the probe's weights.")
