"""A t-SNE plot of frozen features coloured by label, saved in the run directory (and drawn by the
plugin's report section, :mod:`selfsup_vision.report`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from selfsup.components import BuildContext, EvalContext


def tsne_figure(features: np.ndarray, labels: np.ndarray | None, title: str, *, perplexity: float = 30.0,
                max_points: int = 2000, seed: int = 0) -> tuple[Any, float]:
    """t-SNE of (at most ``max_points``, drawn with ``seed``) rows of ``features [N, D]`` coloured by
    ``labels [N]``: a matplotlib ``Figure`` (made without pyplot) and the embedding's
    trustworthiness (scikit-learn: how well local neighbourhoods are preserved, 1 = perfectly)."""
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE, trustworthiness

    x = np.asarray(features, dtype=np.float32)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(x), size=min(len(x), max_points), replace=False))
    x = x[keep]
    y = np.asarray(labels)[keep] if labels is not None else np.zeros(len(x), dtype=int)
    emb = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), init="pca",
               random_state=seed).fit_transform(x)
    fig = Figure(figsize=(6, 6), dpi=120)
    ax = fig.subplots()
    points = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="tab10", s=6)
    if labels is not None:
        ax.legend(*points.legend_elements(), title="label", loc="best", fontsize=7)
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    k = min(5, len(x) // 2 - 1)
    return fig, float(trustworthiness(x, emb, n_neighbors=max(1, k)))


class EmbeddingPlot:
    """t-SNE of (at most ``max_points``) features coloured by label, saved as a PNG in the run
    directory as ``step-XXXXXXXX-<filename>``. Returns the embedding's trustworthiness."""

    def __init__(self, o: Any):
        self.o = o

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        feats, labels = context.features(context.data)
        fig, trust = tsne_figure(feats.numpy(), labels.numpy() if labels is not None else None,
                                 f"t-SNE of {context.name} features, step {context.step}",
                                 perplexity=self.o.perplexity, max_points=self.o.max_points, seed=self.o.seed)
        out = context.run_dir / f"step-{context.step:08d}-{self.o.filename}"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        return {"trustworthiness": trust}


def build_embedding_plot(o: Any, context: BuildContext) -> EmbeddingPlot:
    return EmbeddingPlot(o)
