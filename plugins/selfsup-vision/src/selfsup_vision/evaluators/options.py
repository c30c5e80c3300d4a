"""Options of the selfsup-vision evaluators (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from pydantic import Field

from selfsup.options import Options


class KMeansNMIOptions(Options):
    clusters: int | None = Field(None, ge=2, description="Default: the number of label classes.")
    seed: int = Field(0, ge=0)


class EmbeddingPlotOptions(Options):
    perplexity: float = Field(30.0, gt=1)
    max_points: int = Field(2000, ge=10)
    filename: str = Field("embedding-tsne.png", pattern=r"^[\w.-]+\.png$")
    seed: int = Field(0, ge=0)
