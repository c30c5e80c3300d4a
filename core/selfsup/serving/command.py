"""The ``selfsup serve`` command: options -> :class:`ServeConfig` -> uvicorn."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import click

from selfsup.serving.config import ServeConfig

CONFIG_ENV = "SELFSUP_SERVE_CONFIG"  # the config handed to worker processes (--workers N)
KEY_ENV = "SELFSUP_API_KEY"


@click.command()
@click.argument("path", metavar="RUN_OR_EXPORT", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes, each with its own copy of the model.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, mps.")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="PyTorch eager, or ONNX Runtime (CPU; the run is exported to ONNX once, checked against PyTorch).")
@click.option("--http", type=click.Choice(["auto", "httptools", "h11"]), default="auto", show_default=True,
              help="HTTP/1.1 parser: httptools (C), h11 (pure Python), auto (httptools when installed).")
@click.option("--backbone", default=None,
              help="The backbone to serve, by its recipe key (a run with several: multimodal, shared trunks).")
@click.option("--project", default=None,
              help="A task whose joint projection embeddings go through (clip: the shared image-text space).")
@click.option("--max-batch", type=int, default=32, show_default=True, help="Most inputs run at once (1: no batching).")
@click.option("--max-wait-ms", type=float, default=0.0, show_default=True,
              help="How long a batch waits to fill up (0: it takes what is queued while the model was busy).")
@click.option("--max-queue", type=int, default=1024, show_default=True,
              help="Inputs waiting at most; beyond it: 503 with Retry-After.")
@click.option("--max-inputs", type=int, default=256, show_default=True, help="Most inputs in one request.")
@click.option("--max-body-mb", type=float, default=16.0, show_default=True, help="Largest request body (MiB).")
@click.option("--truncate/--refuse-long", default=True, show_default=True,
              help="Cut inputs longer than the model takes, or refuse them (413).")
@click.option("--api-key", default=None, help=f"Require this key (or set {KEY_ENV}).")
@click.option("--protect", type=click.Choice(["all", "reload"]), default="all", show_default=True,
              help="With a key: every endpoint but /healthz and /readyz, or only /v1/reload.")
@click.option("--watch-seconds", type=float, default=0.0, show_default=True,
              help="Reload when the run directory has a newer checkpoint, checked this often (0: never).")
@click.option("--drift-window", type=int, default=256, show_default=True,
              help="Live embeddings the drift score compares with the training data's.")
@click.option("--no-drift", is_flag=True, help="Do not compute a drift reference or score.")
@click.option("--log-inputs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep served inputs in this folder (a data source selfsup can train on).")
@click.option("--log-max-mb", type=float, default=100.0, show_default=True, help="Size cap of the input log.")
@click.option("--shutdown-seconds", type=float, default=30.0, show_default=True,
              help="On SIGTERM, how long in-flight requests may take to finish.")
def serve(path: Path, host: str, port: int, workers: int, device: str, runtime: str, http: str, backbone: str | None,
          project: str | None, max_batch: int, max_wait_ms: float,
          max_queue: int, max_inputs: int, max_body_mb: float, truncate: bool, api_key: str | None, protect: str,
          watch_seconds: float, drift_window: int, no_drift: bool, log_inputs: Path | None, log_max_mb: float,
          shutdown_seconds: float) -> None:
    """Serve a trained model over HTTP: POST /v1/embed and /v1/predict; GET /v1/model, /healthz, /readyz,
    /metrics (Prometheus), /dashboard and /openapi.json. SIGTERM drains and exits 0; SIGHUP or POST
    /v1/reload loads the model again. See docs/serving.md."""
    from pydantic import ValidationError

    from selfsup.engine.init import MANIFEST

    if not (path / "recipe.json").is_file() and not (path / MANIFEST).is_file():
        raise click.ClickException(f"{path} is neither a selfsup run directory (recipe.json) nor a selfsup export "
                                   f"({MANIFEST})")
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(f"selfsup serve needs {exc.name}: pip install 'selfsup[serve]'") from None
    try:
        config = ServeConfig(
            path=path.resolve(), host=host, port=port, workers=workers, device=device, runtime=runtime,
            http=http, backbone=backbone, project=project, max_batch=max_batch,
            max_wait_ms=max_wait_ms, max_queue=max_queue, max_inputs=max_inputs, max_body_mb=max_body_mb,
            truncate=truncate, api_key=api_key or os.environ.get(KEY_ENV) or None, protect=protect,
            watch_seconds=watch_seconds, drift_window=drift_window, drift=not no_drift, log_inputs=log_inputs,
            log_max_mb=log_max_mb, shutdown_seconds=shutdown_seconds)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "an option"
        raise click.ClickException(f"{option}: {first['msg']} (got {first.get('input')!r})") from None
    run(config)


def run(config: ServeConfig) -> None:
    """Serve until SIGTERM/SIGINT (in-flight requests are answered first), then return."""
    import uvicorn

    common = dict(host=config.host, port=config.port, timeout_graceful_shutdown=config.shutdown_seconds,
                  log_level="info", access_log=False, http=config.http)
    click.echo(f"serving {config.path} on http://{config.host}:{config.port} (dashboard: /dashboard)", err=True)
    if config.workers == 1:
        from selfsup.serving.app import create_app

        _Server(uvicorn.Config(create_app(config), **common)).run()
        return
    with tempfile.TemporaryDirectory(prefix="selfsup-serve-metrics-") as metrics_dir:
        os.environ[CONFIG_ENV] = config.model_dump_json()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # workers add their metrics up there
        uvicorn.run("selfsup.serving.command:app_from_env", factory=True, workers=config.workers, **common)


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a SIGTERM that drained the service ends it with status 0 (uvicorn
        raises the signal again after its graceful shutdown, which makes the status 143)."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if sig == signal.SIGTERM and captured and captured[-1] == sig:
                captured.pop()

    return Server


def _Server(config: Any) -> Any:
    return _server_class()(config)


def app_from_env():
    """The application of one worker process (uvicorn's factory with --workers N)."""
    from selfsup.serving.app import create_app

    return create_app(ServeConfig(**json.loads(os.environ[CONFIG_ENV])))
