"""A t-SNE plot of frozen features coloured by label, saved in the run directory."""

from __future__ import annotations

from typing import Any

import numpy as np

from selfsup.components import BuildContext, EvalContext


class EmbeddingPlot:
    """t-SNE of (at most ``max_points``) features coloured by label, saved as a PNG in the run
    directory as ``step-XXXXXXXX-<filename>``. Returns the embedding's trustworthiness
    (scikit-learn: how well local neighbourhoods are preserved, 1 = perfectly)."""

    def __init__(self, o: Any):
        self.o = o

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.manifold import TSNE, trustworthiness

        feats, labels = context.features(context.data)
        x = feats.numpy()
        rng = np.random.default_rng(self.o.seed)
        keep = np.sort(rng.choice(len(x), size=min(len(x), self.o.max_points), replace=False))
        x = x[keep]
        y = labels.numpy()[keep] if labels is not None else np.zeros(len(x), dtype=int)
        perplexity = min(self.o.perplexity, (len(x) - 1) / 3)
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=self.o.seed).fit_transform(x)
        fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
        points = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="tab10", s=6)
        if labels is not None:
            ax.legend(*points.legend_elements(), title="label", loc="best", fontsize=7)
        ax.set_title(f"t-SNE of {context.name} features, step {context.step}")
        ax.set_xticks([]), ax.set_yticks([])
        fig.tight_layout()
        out = context.run_dir / f"step-{context.step:08d}-{self.o.filename}"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        plt.close(fig)
        k = min(5, len(x) // 2 - 1)
        return {"trustworthiness": float(trustworthiness(x, emb, n_neighbors=max(1, k)))}


def build_embedding_plot(o: Any, context: BuildContext) -> EmbeddingPlot:
    return EmbeddingPlot(o)
