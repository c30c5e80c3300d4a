"""The service's Prometheus metrics (prometheus-client), and a short in-memory history for the dashboard.

Every metric is named ``selfsup_serve_*``. With several worker processes (``--workers N``) the
command sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, each worker writes its values
there, and ``/metrics`` adds them up across workers (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SIZE_BUCKETS = tuple(float(2**k) for k in range(0, 25, 2))  # 1 .. 16M: characters, tokens, pixels
SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The metrics of one service (their own registry, so several services can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        live = {"multiprocess_mode": "livesum"} if multiprocess() else {}
        recent = {"multiprocess_mode": "mostrecent"} if multiprocess() else {}
        self.requests = Counter("selfsup_serve_requests", "Requests by endpoint and HTTP status.",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("selfsup_serve_request_seconds", "Request latency by endpoint.", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.inputs = Counter("selfsup_serve_inputs", "Inputs answered, by endpoint.", ["endpoint"], registry=r)
        self.batch_size = Histogram("selfsup_serve_batch_size", "Inputs per model batch.", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.batch_seconds = Histogram("selfsup_serve_batch_seconds", "Model time per batch.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("selfsup_serve_queue_depth", "Inputs waiting or running.", registry=r, **live)
        self.rejected = Counter("selfsup_serve_rejected", "Inputs refused, by reason.", ["reason"], registry=r)
        self.model_info = Gauge("selfsup_serve_model_info", "The model being served (value 1).",
                                ["version", "source"], registry=r, **recent)
        self.reloads = Counter("selfsup_serve_reloads", "Model reloads, by result.", ["result"], registry=r)
        self.input_size = Histogram("selfsup_serve_input_size", "Input sizes: characters, tokens, pixels, ...",
                                    ["measure"], buckets=SIZE_BUCKETS, registry=r)
        self.input_seconds = Histogram("selfsup_serve_input_audio_seconds", "Audio input durations.",
                                       buckets=SECONDS_BUCKETS, registry=r)
        self.truncated = Counter("selfsup_serve_inputs_truncated", "Inputs cut to the model's limit.", registry=r)
        self.drift_score = Gauge("selfsup_serve_drift_score",
                                 "Drift of the live embeddings from the training data's (selfsup.lib.drift).",
                                 registry=r, **recent)
        self.drift_threshold = Gauge("selfsup_serve_drift_threshold", "Score above which drift is flagged.",
                                     registry=r, **recent)
        self.drift_alert = Gauge("selfsup_serve_drift_alert", "1 while the drift score is above its threshold.",
                                 registry=r, **recent)
        self.ready = Gauge("selfsup_serve_ready", "1 once the model is loaded and warmed up.", registry=r, **recent)
        # the dashboard's history: (time, endpoint, status, seconds), bounded
        self._lock = threading.Lock()
        self.recent: collections.deque[tuple[float, str, int, float]] = collections.deque(maxlen=20_000)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        with self._lock:
            self.recent.append((time.time(), endpoint, status, seconds))

    def observe_inputs(self, stats: dict[str, float]) -> None:
        for measure, value in stats.items():
            if measure == "truncated":
                if value:
                    self.truncated.inc()
            elif measure == "seconds":
                self.input_seconds.observe(value)
            else:
                self.input_size.labels(measure).observe(value)

    def set_model(self, version: str, source: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version, source).set(1)

    def exposition(self) -> bytes:
        if multiprocess():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def summary(self, window: float = 60.0) -> dict[str, Any]:
        """Request rate and latency percentiles of the last ``window`` seconds (the dashboard's numbers)."""
        now = time.time()
        with self._lock:
            recent = [r for r in self.recent if r[0] >= now - window and r[1] in ("embed", "predict")]
        latencies = sorted(r[3] for r in recent)

        def pct(q: float) -> float | None:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

        errors = sum(1 for r in recent if r[2] >= 400)
        return {"window_seconds": window, "requests": len(recent), "rate": len(recent) / window,
                "errors": errors, "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)}
