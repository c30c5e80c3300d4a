"""The drift reference of a model's training data: embeddings of a seeded sample of its data,
fitted by :class:`selfsup.lib.drift.DriftReference`. Used by ``selfsup export`` (``drift.json``
beside the weights) and by ``selfsup serve`` (cached under ``<run>/serve/`` for a run directory).
Imports no serving library, so exporting does not need them."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("selfsup.serve")

DRIFT_SAMPLES = 2048  # training samples embedded for the drift reference (at most)


def training_embeddings(model: Any, limit: int = DRIFT_SAMPLES) -> np.ndarray | None:
    """Embeddings ``[n, D]`` of up to ``limit`` samples of the model's data (a seeded choice), or
    None when the model has no data at hand (an export)."""
    data = model.data
    if data is None:
        return None
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        n = len(data)
        order = np.random.default_rng(0).permutation(n)[:limit] if n > limit else np.arange(n)
        samples = (data[int(i)] for i in order)
    elif hasattr(data, "iterate"):
        samples = (s for _, s in zip(range(limit), data.iterate(epoch=0, rank=0, world_size=1, seed=0)))
    else:
        return None
    rows = [{k: v for k, v in sample.items() if k not in ("label", "index")} for sample in samples]
    return model.embed(rows).numpy() if rows else None


def fit_reference(model: Any, window: int = 256) -> Any:
    """The drift reference of the model's training data (:class:`selfsup.lib.drift.DriftReference`),
    or None without data."""
    from selfsup.lib.drift import DriftReference

    embeddings = training_embeddings(model)
    if embeddings is None:
        return None
    try:
        return DriftReference.fit(embeddings, window=window, min_window=min(64, window), seed=0)
    except ValueError as exc:  # too little training data to calibrate a threshold
        log.warning("no drift reference: %s", exc)
        return None


class Neighbours:
    """The nearest training examples of live inputs (the dashboard's "recent inputs"): cosine
    similarity against the embeddings of up to ``limit`` training samples, each described by its
    index in the data source, its label and, for text sources, the start of its text."""

    def __init__(self, model: Any, limit: int = 512):
        data = model.data
        n = len(data)
        self.indices = np.random.default_rng(1).permutation(n)[:limit] if n > limit else np.arange(n)
        samples = [data[int(i)] for i in self.indices]
        self.labels = [int(s["label"]) if "label" in s and np.ndim(s["label"]) == 0 else None for s in samples]
        names = getattr(data, "label_names", None)
        self.label_names = [str(x) for x in names] if names else None
        texts = getattr(data, "texts", None)  # one per sample only in document mode (not packed windows)
        self.captions = ([str(texts[int(i)])[:120] for i in self.indices]
                         if texts is not None and len(texts) == n else None)
        rows = [{k: v for k, v in s.items() if k not in ("label", "index")} for s in samples]
        embeddings = model.embed(rows).numpy().astype(np.float32)  # [M, D]
        self.unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)

    @classmethod
    def of(cls, model: Any) -> Neighbours | None:
        """The index for ``model``'s data; None without map-style data, or (logged) if it fails: the
        dashboard's neighbours are never a reason not to serve."""
        data = model.data
        if data is None or not (hasattr(data, "__len__") and hasattr(data, "__getitem__")) or not len(data):
            return None
        try:
            return cls(model)
        except Exception as exc:  # noqa: BLE001 - best effort, see above
            log.warning("no nearest training examples for the dashboard: %s: %s", type(exc).__name__, exc)
            return None

    def nearest(self, embeddings: np.ndarray) -> list[dict[str, Any]]:
        """For each row of ``embeddings`` ``[N, D]``: the nearest training example."""
        unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        similarity = unit @ self.unit.T  # [N, M]
        best = similarity.argmax(axis=1)
        out = []
        for row, j in enumerate(best):
            label = self.labels[j]
            out.append({"index": int(self.indices[j]), "similarity": float(similarity[row, j]),
                        "label": None if label is None else (self.label_names[label] if self.label_names and
                                                             0 <= label < len(self.label_names) else label),
                        "text": self.captions[j] if self.captions else None})
        return out
