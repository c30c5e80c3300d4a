"""The options of ``selfsup serve`` (torch-free, so the CLI can validate them before loading)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeConfig(BaseModel):
    """Everything the service needs; the CLI's flags map one to one onto these fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(description="A run directory or a `selfsup export --format selfsup` folder.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port (0: any free port).")
    workers: int = Field(1, ge=1, le=64, description="Server processes (each loads the model).")
    device: str = Field("cpu", description="Where the model runs: cpu, cuda, cuda:1, mps.")
    runtime: Literal["torch", "onnx"] = Field(
        "torch", description="PyTorch eager, or ONNX Runtime on the CPU (a run directory: exported and checked once).")
    http: Literal["auto", "httptools", "h11"] = Field(
        "auto", description="uvicorn's HTTP/1.1 parser: httptools (C, `pip install httptools`), h11 (pure Python) "
        "or auto (httptools when installed; no measurable difference in bench/serve_load.py).")
    backbone: str | None = Field(None, description="The backbone to serve, by its key in the run's recipe (default: "
                                 "the fine-tuned one, else the first).")
    project: str | None = Field(None, description="A task whose joint projection the embeddings go through (a "
                                "CLIP task: the shared space of its two encoders).")
    max_batch: int = Field(32, ge=1, le=4096, description="Most inputs the model runs at once.")
    max_wait_ms: float = Field(0.0, ge=0, le=10_000,
                               description="How long a batch waits to fill up (0: it takes what is queued).")
    max_queue: int = Field(1024, ge=1, le=1_000_000,
                           description="Inputs waiting at most; beyond it requests get 503 + Retry-After.")
    max_inputs: int = Field(256, ge=1, le=100_000, description="Most inputs in one request.")
    max_body_mb: float = Field(16.0, gt=0, le=4096, description="Largest request body, in MiB.")
    truncate: bool = Field(True, description="Cut inputs longer than the model takes (else refuse them: 413).")
    api_key: str | None = Field(None, min_length=8, repr=False,
                                description="Required as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.")
    protect: Literal["all", "reload"] = Field(
        "all", description="With an api_key: every endpoint but the probes (/healthz, /readyz), or only /v1/reload.")
    watch_seconds: float = Field(0.0, ge=0, le=86_400,
                                 description="Check the run directory for a newer checkpoint this often (0: never).")
    drift_window: int = Field(256, ge=16, le=100_000, description="Live embeddings the drift score compares.")
    drift: bool = Field(True, description="Compute the drift reference and score live embeddings.")
    log_inputs: Path | None = Field(None, description="Log served inputs to this folder (a data source).")
    log_max_mb: float = Field(100.0, gt=0, le=1_000_000, description="Size cap of the input log, in MiB.")
    shutdown_seconds: float = Field(30.0, ge=0, le=3600,
                                    description="On SIGTERM, how long in-flight requests may take to finish.")
