"""``selfsup serve``: a trained model as an HTTP inference service.

FastAPI (on Starlette) serves the endpoints and their OpenAPI schema, uvicorn runs them, and
prometheus-client writes ``/metrics``; selfsup adds what an SSL model needs on top: raw inputs
decoded with the run's own preprocessing (a data source's :class:`selfsup.components.Decoder`),
dynamic batching with a bounded queue, hot reload, and drift detection of the live embeddings
against the training data's (:mod:`selfsup.lib.drift`). See docs/serving.md.

Modules: ``config`` (the options), ``batcher`` (dynamic batching), ``service`` (the loaded model,
reload, drift), ``requests`` (request bodies -> raw inputs, with limits), ``metrics`` (Prometheus),
``app`` (the FastAPI application), ``dashboard`` (the self-contained HTML page).
"""

from selfsup.serving.config import ServeConfig

__all__ = ["ServeConfig"]
