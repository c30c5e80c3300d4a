"""The FastAPI application of ``selfsup serve``.

FastAPI is used for its routing, its OpenAPI schema (``/openapi.json``) and its exception
handling on Starlette; request bodies are read by :mod:`selfsup.serving.requests` instead of
FastAPI's body models, because the fields of an input depend on the served model (text, image or
audio) and because the size limits must hold before a body is parsed. Errors are JSON
``{"error": {"status", "field", "message"}}`` with a 4xx status naming the field; an unexpected
failure is a 500 with the same shape and never stops the worker.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import Headers

from selfsup.components import BadInput
from selfsup.serving import requests as bodies
from selfsup.serving.batcher import Batcher, QueueFull
from selfsup.serving.config import ServeConfig
from selfsup.serving.service import Payload, Service

log = logging.getLogger("selfsup.serve")

PROBES = ("/healthz", "/readyz")
INPUT_SCHEMA = {
    "type": "object",
    "required": ["inputs"],
    "properties": {"inputs": {
        "type": "array", "minItems": 1,
        "items": {"oneOf": [{"type": "object", "description": "field -> value: text as a string, image and "
                                                                "audio files base64-encoded"},
                            {"type": "string", "description": "the value of the model's only field"}]}}},
    "additionalProperties": False,
}
OPENAPI_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": INPUT_SCHEMA},
    "multipart/form-data": {"schema": {"type": "object", "description": "one part per input, named by its field "
                                                                         "(image / audio files, text values)"}},
}}}


def error(status: int, field: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "field": field, "message": message}}, status_code=status,
                        headers=headers)


def create_app(config: ServeConfig, pm: Any = None, service: Service | None = None) -> FastAPI:
    """The application; the model loads in the background at startup (``/readyz`` says when)."""
    if pm is None:
        from selfsup.plugins import get_plugin_manager

        pm = get_plugin_manager()
    service = service or Service(config, pm)
    metrics = service.metrics
    batcher = Batcher(service.run_batch, max_batch=config.max_batch, max_wait=config.max_wait_ms / 1000,
                      max_queue=config.max_queue,
                      on_batch=lambda n, s: (metrics.batch_size.observe(n), metrics.batch_seconds.observe(s)))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        loop = asyncio.get_running_loop()
        loading = loop.run_in_executor(None, service.start)
        loading.add_done_callback(lambda f: f.exception() and log.error(
            "the model could not be loaded: %s: %s", type(f.exception()).__name__, f.exception(),
            exc_info=f.exception()))
        watcher = asyncio.create_task(_watch(service)) if config.watch_seconds else None
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload(service)))
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no SIGHUP
            pass
        app.state.service, app.state.batcher = service, batcher
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            await batcher.stop()  # in-flight inputs are answered first

    app = FastAPI(title="selfsup serve", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Embeddings and predictions of a selfsup model; see docs/serving.md.")

    app.add_middleware(Guard, config=config, metrics=metrics)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:  # a bug: a 500, the worker goes on
        log.error("unexpected error on %s", request.url.path, exc_info=exc)
        return error(500, "", f"internal error: {type(exc).__name__}")

    @app.post("/v1/embed", openapi_extra=OPENAPI_BODY, summary="Embeddings of the inputs (the backbone's features)")
    async def embed(request: Request) -> Response:
        return await _infer(request, service, batcher, config, predict=False)

    @app.post("/v1/predict", openapi_extra=OPENAPI_BODY, summary="Predictions of the fine-tuned head")
    async def predict(request: Request) -> Response:
        return await _infer(request, service, batcher, config, predict=True)

    @app.get("/v1/model", summary="What is served: recipe, metrics, export, inputs, version")
    async def model_info() -> Response:
        loaded = service.current
        if loaded is None:
            return error(503, "model", service.error or "loading", headers={"Retry-After": "1"})
        return JSONResponse(_describe(service, loaded))

    @app.post("/v1/reload", summary="Load the model again (a newer checkpoint, a new export) and swap it in")
    async def reload() -> Response:
        try:
            loaded = await _reload(service)
        except Exception as exc:  # noqa: BLE001 - the old model keeps serving
            return error(500, "model", f"reload failed, still serving the previous model: {type(exc).__name__}: "
                                       f"{str(exc)[:500]}")
        return JSONResponse({"version": loaded.version, "checkpoint": loaded.checkpoint})

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", summary="Readiness: the model is loaded and warmed up")
    async def readyz() -> Response:
        if service.current is None:
            return JSONResponse({"ready": False, "error": service.error}, status_code=503)
        return JSONResponse({"ready": True, "version": service.current.version})

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.pending)
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/stats", summary="The dashboard's numbers: request rate, latency percentiles, drift history")
    async def stats() -> Response:
        return JSONResponse(_stats(service, batcher))

    @app.get("/dashboard", response_class=HTMLResponse, summary="A live dashboard (self-contained HTML)")
    async def dashboard() -> Response:
        from selfsup.serving.dashboard import PAGE

        return HTMLResponse(PAGE)

    return app


def _protected(path: str, config: ServeConfig) -> bool:
    if config.protect == "reload":
        return path == "/v1/reload"
    return path not in PROBES


class Guard:
    """Pure ASGI middleware (cheaper per request than FastAPI's ``@app.middleware``): the API key
    check, and each request's endpoint, status and latency recorded in the metrics."""

    def __init__(self, app: Any, config: ServeConfig, metrics: Any):
        self.app, self.config, self.metrics = app, config, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, path, status = time.perf_counter(), scope["path"], [500]

        async def recorded(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if self.config.api_key and _protected(path, self.config) and not _authorised(
                    Headers(scope=scope), self.config.api_key):
                await error(401, "authorization", "missing or wrong API key: send 'Authorization: Bearer KEY' or "
                                                  "'X-API-Key: KEY'",
                            headers={"WWW-Authenticate": "Bearer"})(scope, receive, recorded)
            else:
                await self.app(scope, receive, recorded)
        finally:
            if path != "/metrics":
                self.metrics.observe_request(path.rsplit("/", 1)[-1] or "root", status[0],
                                             time.perf_counter() - start)


def _authorised(headers: Any, key: str) -> bool:
    given = headers.get("x-api-key") or ""
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())


async def _reload(service: Service) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, service.reload)


async def _watch(service: Service) -> None:
    """Reload when the run directory has a newer checkpoint than the one served."""
    while True:
        await asyncio.sleep(service.config.watch_seconds)
        current = service.current
        if current is None:
            continue
        try:
            newest = await asyncio.get_running_loop().run_in_executor(None, service.newest_checkpoint)
            if newest is not None and newest != current.checkpoint:
                log.info("newer checkpoint %s: reloading", newest)
                await _reload(service)
        except Exception as exc:  # noqa: BLE001 - keep serving, try again next time
            log.warning("watching for a newer checkpoint failed: %s", exc)


async def _infer(request: Request, service: Service, batcher: Batcher, config: ServeConfig, *,
                 predict: bool) -> Response:
    loaded = service.current
    if loaded is None:
        return error(503, "model", service.error or "the model is loading", headers={"Retry-After": "1"})
    if predict and loaded.model.task is None:
        return error(404, "model", "this model has no fine-tuned head: use /v1/embed (or serve a `selfsup "
                                   "finetune` run)")
    fields = loaded.decoder.fields
    try:
        body = await bodies.read_body(request.stream(), int(config.max_body_mb * 2**20),
                                      request.headers.get("content-length"))
        content_type = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
        if content_type == "application/json":
            raws = bodies.parse_json(body, fields, config.max_inputs)
        elif content_type == "multipart/form-data":
            raws = await bodies.parse_multipart(request.headers, body, fields, config.max_inputs)
        else:
            raise BadInput("content-type", f"{content_type!r}: send application/json or multipart/form-data", 415)
        payloads = await asyncio.get_running_loop().run_in_executor(None, _decode, loaded, raws, config, predict,
                                                                    service)
    except BadInput as exc:
        service.metrics.rejected.labels("bad_input").inc()
        return error(exc.status, exc.field, exc.message)
    try:
        results = await batcher.submit(payloads)
    except QueueFull as exc:
        service.metrics.rejected.labels("queue_full").inc(len(payloads))
        return error(503, "queue", str(exc), headers={"Retry-After": str(exc.retry_after)})
    for i, result in enumerate(results):
        if isinstance(result, BadInput):
            service.metrics.rejected.labels("model").inc()
            return error(result.status, f"inputs[{i}]", result.message)
        if isinstance(result, BaseException):
            raise result
    service.metrics.inputs.labels("predict" if predict else "embed").inc(len(results))
    current = service.current
    return JSONResponse({"model": current.version if current else loaded.version,
                         "outputs" if predict else "embeddings":
                             results if predict else [r["embedding"] for r in results]})


def _decode(loaded: Any, raws: list[dict[str, Any]], config: ServeConfig, predict: bool,
            service: Service) -> list[Payload]:
    payloads = []
    for i, raw in enumerate(raws):
        try:
            sample, stats = loaded.decoder(raw, truncate=config.truncate)
        except BadInput as exc:
            raise BadInput(f"inputs[{i}].{exc.field}" if exc.field else f"inputs[{i}]", exc.message,
                           exc.status) from None
        except Exception as exc:  # noqa: BLE001 - a decoder that did not say BadInput: still the input's fault
            raise BadInput(f"inputs[{i}]", f"cannot be decoded: {type(exc).__name__}: {str(exc)[:300]}", 422) from None
        missing = [key for key in loaded.needs if key not in sample]
        if missing:
            raise BadInput(f"inputs[{i}]", f"gives no {', '.join(missing)}, which the served backbone "
                           f"{loaded.info['backbone']!r} reads (this model reads the fields "
                           f"{', '.join(loaded.decoder.fields)}: send the one of its modality)", 422)
        service.metrics.observe_inputs(stats)
        payloads.append(Payload(sample=sample, predict=predict, summary=summarise(raw, stats, loaded.decoder.fields)))
    if config.log_inputs is not None:
        from selfsup.serving.input_log import log_inputs

        log_inputs(config, loaded, raws)
    return payloads


def summarise(raw: dict[str, Any], stats: dict[str, float], fields: dict[str, str]) -> str:
    """A short description of a raw input for the dashboard: a text's start, an image's size, ..."""
    parts = []
    for name, value in raw.items():
        media = fields.get(name)
        if media == "text":
            parts.append(repr(value[:80] + ("..." if len(value) > 80 else "")))
        elif media == "image":
            parts.append(f"image {stats.get('width', 0):.0f}x{stats.get('height', 0):.0f}")
        elif media == "audio":
            parts.append(f"audio {stats.get('seconds', 0):.2f} s")
        else:
            parts.append(f"{name}: {stats.get('values', 0):.0f} values")
    return "; ".join(parts)


def _describe(service: Service, loaded: Any) -> dict[str, Any]:
    from selfsup.api import open_run

    model = loaded.model
    out: dict[str, Any] = {
        "version": loaded.version, "source": str(service.config.path), "checkpoint": loaded.checkpoint,
        "loaded_at": loaded.loaded_at, "inputs": loaded.info["inputs"], "backbone": loaded.info["backbone"],
        "project": loaded.info["project"], "embedding_dim": loaded.info.get(
            "embedding_dim"), "data": loaded.info["data"], "recipe": model.recipe,
        "head": None if model.task is None else {"problem": model.task.head.problem,
                                                 "labels": loaded.info.get("label_names")},
        "drift": None if loaded.reference is None else {"threshold": loaded.reference.threshold,
                                                        "window": service.config.drift_window},
        "limits": {"max_batch": service.config.max_batch, "max_inputs": service.config.max_inputs,
                   "max_body_mb": service.config.max_body_mb, "truncate": service.config.truncate},
    }
    if loaded.info["export"]:
        from selfsup.engine.init import read_manifest

        manifest = read_manifest(service.config.path)
        out["export"] = {k: manifest.get(k) for k in ("format", "version", "selfsup", "time", "source", "step")}
    else:
        run = open_run(service.config.path)
        out["metrics"] = run.metrics
    return out


def _stats(service: Service, batcher: Batcher) -> dict[str, Any]:
    monitor = service.monitor
    return {
        "time": time.time(), "ready": service.ready,
        "version": service.current.version if service.current else None,
        "queue": batcher.pending, "requests": service.metrics.summary(), "recent": service.recent_inputs(),
        "drift": None if monitor is None else {
            "score": monitor.score(), "threshold": monitor.reference.threshold, "alert": monitor.alert,
            "history": [list(h) for h in monitor.history]},
    }
