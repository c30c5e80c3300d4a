"""Throughput and latency of ``selfsup serve`` under load, on loopback, with and without dynamic batching.

1. Models: one image, one text and one audio model, each trained briefly with the CLI into
   ``WORK/image``, ``WORK/text``, ``WORK/audio`` (reused when a checkpoint is there):
   ``simclr-digits`` (30 steps; ``--image-recipe simclr-mnist5k`` for 28x28 digits and a deeper CNN,
   in ``WORK/image-simclr-mnist5k``), ``mlm-quickstart`` (30 steps), ``apc-quickstart`` (30 steps;
   ``--audio-recipe hubert-quickstart`` for the other speech quickstart).
2. Inputs, real files written under ``WORK/inputs``: PNGs of scikit-learn's 8x8 digits (upscaled
   x4, nearest: they decode to exactly the set's samples), a dozen hard-coded English sentences,
   and ~1 s WAV clips (16-bit PCM at the recipe's sample rate, written with soundfile: tone
   chords with a few harmonics, fade in/out and a little noise). One input per request, as
   ``POST /v1/embed`` JSON ``{"inputs": [{FIELD: base64 of the file}]}`` (``{"text": "..."}``),
   bodies encoded before timing.
3. Per model, ``selfsup serve RUN`` is started as a subprocess twice, batching on
   (``--max-batch 32``, no wait: the default) and off (``--max-batch 1``), with ``OMP_NUM_THREADS`` =
   ``--threads``; the bench waits for ``/readyz``, sends 20 sequential warm-up requests, then for
   each concurrency of ``--clients``: ``--warmup`` seconds of untimed load at that concurrency
   (connections opened, batcher in its steady state), then ``--seconds`` of timed load. Each
   client (an asyncio task in this process with one keep-alive connection) sends its next
   request as soon as its previous one is answered (closed loop), until the time is up or the
   row's ``--max-requests`` are sent. ``--variants onnx,h11`` also serves each model with batching
   on under ONNX Runtime (``--runtime onnx``) and with uvicorn's pure-Python HTTP parser
   (``--http h11``; the default, auto, is httptools when installed), in the same run. The
   connections are minimal HTTP/1.1 clients on asyncio streams (:class:`RawClient`): httpx costs
   about 1 ms of client CPU per request here, and more with many connections in one pool, which
   on 2 cores took more CPU than the server it loaded and capped the throughput measured at 64
   clients at a third of the raw client's;
   ``--client httpx`` gives each client an ``httpx.AsyncClient`` of its own, for comparison.
   Latency: from just before the request is written to the end of its answer. Throughput: 200
   answers / wall time of the timed phase (including the in-flight requests finishing after the
   deadline). Non-200 answers and transport errors are counted (503, the service shedding load,
   apart); every 200 answer must hold one embedding. The mean batch size is the change of
   ``selfsup_serve_batch_size`` (sum / count) on ``/metrics`` over the timed phase, and the
   server's count of 200 answers on ``/v1/embed`` over the same phase is checked against the
   client's. CPU use of the server process (``/proc``) and of this bench (the client) over the
   timed phase is shown in cores: on a small machine the client takes CPU from the server.
   The server is then stopped with SIGTERM and must exit with status 0.
4. Printed: the machine line, a Markdown table per model (clients x batching: requests, req/s,
   p50/p95/p99 ms, mean batch, errors, 503s, CPU), and two targets, each "met" or "NOT met" with
   the measured ratio:
   * throughput with batching at the most clients (64) >= 3 x without batching;
   * p99 with batching at 8 clients < 2 x the single-request latency, the p50 at 1 client
     without batching (the ratio against the p50 at 1 client with batching, which includes the
     batcher's wait, is shown beside it).

Exit status 0 when every model was served, every answer was 200 (or 503) and every server exited
0 on SIGTERM; 1 otherwise (the targets are measurements, not failures). With the defaults a run
on 2 cores takes about 5 minutes when the three models are trained in ``--work`` already, and about
3 more the first time (training).

    .venv/bin/python bench/serve_load.py
    .venv/bin/python bench/serve_load.py --models image --seconds 3 --clients 1,8 --work /tmp/serve-load
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine  # bench/machine.py

MODALITIES = ("image", "text", "audio")
#: modality -> (recipe, extra --set overrides); max_steps is added from --steps.
RECIPES: dict[str, tuple[str, list[str]]] = {
    "image": ("simclr-digits", ["train.epochs=", "train.tensorboard=false"]),
    "text": ("mlm-quickstart", ["train.warmup_steps=5", "train.tensorboard=false"]),
    "audio": ("apc-quickstart", ["train.warmup_steps=5", "train.tensorboard=false"]),
}
BATCHING = {"on": ["--max-batch", "32"], "off": ["--max-batch", "1"]}
#: --variants: settings served with batching on beside the two above (one run, same models and inputs).
VARIANTS = {"onnx": ["--runtime", "onnx"], "h11": ["--http", "h11"], "httptools": ["--http", "httptools"]}
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Self-supervised learning trains a model on data without labels.",
    "A film that is funny, moving and beautifully acted from start to finish.",
    "The central bank left interest rates unchanged on Thursday.",
    "Rain is expected over the weekend, with clearer skies on Monday.",
    "She opened the window and let the cold morning air into the room.",
    "The committee will publish its report after the summer recess.",
    "Two hours of tedious dialogue and not a single convincing scene.",
    "Researchers measured the speed of sound in the new material.",
    "He walked to the station, bought a ticket and waited for the last train.",
    "The museum reopens next month with an exhibition of early photographs.",
    "Prices of fresh vegetables rose sharply after the floods.",
]
N_IMAGES = 64
N_CLIPS = 16
SEQUENTIAL_WARMUP = 20
EMBED = "/v1/embed"


class ModelUnavailable(Exception):
    """The model could not be trained or served (reported, the other models go on)."""


# ----------------------------------------------------------------------------------------- models


def trained(run: Path, recipe: str) -> bool:
    """Whether ``run`` holds a finished run of ``recipe`` (a checkpoint with weights)."""
    if not (run / "recipe.json").is_file():
        return False
    found = json.loads((run / "recipe.json").read_text()).get("recipe", {}).get("name")
    if found != recipe:
        raise ModelUnavailable(f"{run} holds a run of {found!r}, not {recipe!r}: pick another --work folder")
    return any((run / "checkpoints").glob("*/model.safetensors"))


def train(modality: str, recipe: str, work: Path, steps: int, timeout: float) -> Path:
    run = work / (modality if recipe == RECIPES[modality][0] else f"{modality}-{recipe}")
    if trained(run, recipe):
        print(f"{modality}: reusing {run} ({recipe})", file=sys.stderr, flush=True)
        return run
    if run.exists() and any(run.iterdir()):
        raise ModelUnavailable(f"{run} holds an unfinished run (no checkpoint): delete it or pick another --work")
    sets = [f"output_dir={run}", f"train.max_steps={steps}", *RECIPES[modality][1]]
    command = [sys.executable, "-m", "selfsup", "train", recipe, "--no-progress"]
    for s in sets:
        command += ["--set", s]
    print(f"{modality}: training {recipe} for {steps} steps into {run} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired:
        raise ModelUnavailable(f"training {recipe} took more than {timeout:.0f} s") from None
    if done.returncode != 0 or not trained(run, recipe):
        raise ModelUnavailable(f"`selfsup train {recipe}` failed (status {done.returncode}): "
                               f"{(done.stderr or done.stdout)[-1500:]}")
    print(f"{modality}: trained in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return run


# ----------------------------------------------------------------------------------------- inputs


def image_files(folder: Path) -> list[Path]:
    """PNGs of the first ``N_IMAGES`` digits: 8-bit grey, values ``round(v / 16 * 255)``, upscaled x4."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    images = load_digits().images[:N_IMAGES]
    paths = []
    for i, image in enumerate(images):
        path = folder / f"digit-{i:03d}.png"
        if not path.is_file():
            pixels = np.round(image / 16.0 * 255.0).astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((32, 32), Image.Resampling.NEAREST).save(path)
        paths.append(path)
    return paths


def audio_files(folder: Path, sample_rate: int) -> list[Path]:
    """``N_CLIPS`` WAV clips of 0.8-1.2 s: a chord of two tones with harmonics, faded in and out, plus noise."""
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_CLIPS):
        path = folder / f"clip-{sample_rate}-{i:02d}.wav"
        if not path.is_file():
            seconds = 0.8 + 0.4 * i / max(1, N_CLIPS - 1)
            t = np.arange(int(seconds * sample_rate)) / sample_rate
            wave = np.zeros_like(t)
            for f0 in rng.uniform(110, 440, size=2):
                for k, amp in ((1, 1.0), (2, 0.5), (3, 0.25)):
                    wave += amp * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
            fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)
            wave = wave * fade + 0.02 * rng.standard_normal(len(t))
            soundfile.write(path, (0.8 * wave / np.abs(wave).max()).astype(np.float32), sample_rate,
                            subtype="PCM_16")
        paths.append(path)
    return paths


def request_bodies(modality: str, fields: dict[str, str], data_options: dict[str, Any], work: Path) -> list[bytes]:
    """JSON bodies of one input each, for the field the served model reads."""
    media = {m: f for f, m in fields.items()}
    want = {"image": "image", "text": "text", "audio": "audio"}[modality]
    if want not in media or len(fields) != 1:
        raise ModelUnavailable(f"the served model reads {fields}, not one {want} field")
    name = media[want]
    if modality == "text":
        values: list[str] = list(TEXTS)
    else:
        files = (image_files(work / "inputs" / "image") if modality == "image"
                 else audio_files(work / "inputs" / "audio", int(data_options.get("sample_rate", 16000))))
        values = [base64.b64encode(p.read_bytes()).decode("ascii") for p in files]
    return [json.dumps({"inputs": [{name: v}]}).encode() for v in values]


# ----------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Server:
    """``selfsup serve RUN`` in a subprocess, its output in a log file."""

    def __init__(self, run: Path, extra: list[str], threads: int, log: Path, ready_timeout: float):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONUNBUFFERED": "1"}
        self._out = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "selfsup", "serve", str(run), "--port", str(self.port),
                                      *extra], stdout=self._out, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.kill()
            raise

    def tail(self, n: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ModelUnavailable(f"the server exited with status {self.proc.returncode}: {self.tail()}")
            try:
                status, body = http_get(self.base + "/readyz", timeout=2)
            except OSError:
                status, body = 0, b""
            if status == 200:
                return
            if status == 503:
                error = json.loads(body or b"{}").get("error")
                if error:  # the model could not be loaded: the server will not become ready
                    raise ModelUnavailable(f"the server cannot load the model: {error}")
            time.sleep(0.2)
        raise ModelUnavailable(f"the server was not ready after {timeout:.0f} s: {self.tail()}")

    def metrics(self) -> str:
        status, body = http_get(self.base + "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return body.decode()

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM, then the exit status (None: it did not exit in time and was killed)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of sample ``name{labels}`` in a Prometheus exposition (0 when absent)."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(?:\{\})?") + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@dataclass
class Snapshot:
    batch_sum: float
    batch_count: float
    ok: float
    server_cpu: float | None
    client_cpu: float
    wall: float

    @classmethod
    def take(cls, server: Server) -> "Snapshot":
        text = server.metrics()
        return cls(batch_sum=metric(text, "selfsup_serve_batch_size_sum"),
                   batch_count=metric(text, "selfsup_serve_batch_size_count"),
                   ok=metric(text, "selfsup_serve_requests_total", 'endpoint="embed",status="200"'),
                   server_cpu=cpu_seconds(server.proc.pid), client_cpu=time.process_time(), wall=time.perf_counter())


# ----------------------------------------------------------------------------------------- load


@dataclass
class Cell:
    """The timed phase of one (model, batching, clients) run."""

    clients: int
    batching: str
    latencies: list[float] = field(default_factory=list)  # seconds, 200 answers only
    statuses: dict[int, int] = field(default_factory=dict)  # non-200 status -> count
    transport_errors: int = 0  # timeouts, refused or dropped connections
    wrong_answers: int = 0  # 200 answers without exactly one embedding
    wall: float = 0.0
    mean_batch: float | None = None
    server_ok: float | None = None  # 200 answers on /v1/embed the server counted over the phase
    server_cores: float | None = None
    client_cores: float | None = None
    first_problem: str = ""

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        """Non-200 answers other than 503, transport errors and malformed 200 answers: must be 0."""
        return (sum(n for s, n in self.statuses.items() if s != 503) + self.transport_errors
                + self.wrong_answers)

    @property
    def shed(self) -> int:
        return self.statuses.get(503, 0)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile in milliseconds (NaN without answers)."""
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else math.nan


class RawClient:
    """One keep-alive HTTP/1.1 connection on asyncio streams: ``POST path`` with a JSON body encoded
    before timing, the answer framed by Content-Length (or chunked, or the connection's end). A few
    microseconds of CPU per request, where httpx takes about a millisecond: on a small machine the
    load generator would otherwise take much of the server's CPU (and, with one pool for all
    clients, its cost grows with the number of connections)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._heads: dict[str, bytes] = {}

    def _head(self, path: str, size: int) -> bytes:
        key = f"{path} {size}"
        if key not in self._heads:
            self._heads[key] = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                                f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode("ascii")
        return self._heads[key]

    async def post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._exchange(path, body), timeout)
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable: the next request opens a new one
            raise

    async def _exchange(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
        assert self._reader is not None
        self._writer.write(self._head(path, len(body)) + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            payload = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").endswith("chunked"):
            chunks = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while (await self._reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    break
                chunks.append(await self._reader.readexactly(size + 2))
            payload = b"".join(c[:-2] for c in chunks)
        else:
            payload = await self._reader.read()
            headers["connection"] = "close"
        if headers.get("connection") == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def aclose(self) -> None:
        self.close()


class HttpxClient:
    """The same through an ``httpx.AsyncClient`` of its own (one connection; ``--client httpx``)."""

    def __init__(self, host: str, port: int):
        import httpx

        self.base = f"http://{host}:{port}"
        self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        response = await self.client.post(self.base + path, content=body, timeout=timeout,
                                          headers={"content-type": "application/json"})
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self.client.aclose()


async def load(connections: list[Any], bodies: list[bytes], seconds: float, max_requests: int, timeout: float,
               cell: Cell | None) -> None:
    """One closed-loop client per connection for ``seconds`` (or ``max_requests`` in all); results
    into ``cell`` (None: warm-up, nothing recorded)."""
    deadline = time.perf_counter() + seconds
    sent = 0

    async def one_client(k: int, connection: Any) -> None:
        nonlocal sent
        i = k * 7  # clients start at different inputs
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            body = bodies[i % len(bodies)]
            i += 1
            start = time.perf_counter()
            try:
                status, payload = await connection.post(EMBED, body, timeout)
                elapsed = time.perf_counter() - start
            except (OSError, EOFError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError, IndexError) as exc:
                transport(cell, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - httpx's errors (--client httpx)
                if type(exc).__module__.split(".")[0] not in ("httpx", "httpcore"):
                    raise
                transport(cell, exc)
                continue
            if cell is None:
                continue
            if status != 200:
                cell.statuses[status] = cell.statuses.get(status, 0) + 1
                cell.first_problem = cell.first_problem or f"{status}: {payload[:300]!r}"
                continue
            try:
                good = len(json.loads(payload)["embeddings"]) == 1
            except (ValueError, KeyError, TypeError):
                good = False
            if not good:
                cell.wrong_answers += 1
                cell.first_problem = cell.first_problem or f"200 without one embedding: {payload[:300]!r}"
                continue
            cell.latencies.append(elapsed)

    await asyncio.gather(*(one_client(k, c) for k, c in enumerate(connections)))


def transport(cell: Cell | None, exc: BaseException) -> None:
    if cell is not None:
        cell.transport_errors += 1
        cell.first_problem = cell.first_problem or f"{type(exc).__name__}: {exc}"


async def measure_cell(server: Server, bodies: list[bytes], clients: int, batching: str,
                       args: argparse.Namespace) -> Cell:
    kind = RawClient if args.client == "raw" else HttpxClient
    connections = [kind("127.0.0.1", server.port) for _ in range(clients)]
    try:
        await load(connections, bodies, args.warmup, args.max_requests, args.timeout, None)
        cell = Cell(clients, batching)
        before = Snapshot.take(server)
        start = time.perf_counter()
        await load(connections, bodies, args.seconds, args.max_requests, args.timeout, cell)
        cell.wall = time.perf_counter() - start
        after = Snapshot.take(server)
    finally:
        for connection in connections:
            await connection.aclose()
    count = after.batch_count - before.batch_count
    cell.mean_batch = (after.batch_sum - before.batch_sum) / count if count else None
    cell.server_ok = after.ok - before.ok
    span = after.wall - before.wall
    if before.server_cpu is not None and after.server_cpu is not None:
        cell.server_cores = (after.server_cpu - before.server_cpu) / span
    cell.client_cores = (after.client_cpu - before.client_cpu) / span
    return cell


def sequential_warmup(server: Server, bodies: list[bytes], timeout: float) -> None:
    """First requests pay one-time costs (lazy imports, allocator growth): untimed."""
    for i in range(SEQUENTIAL_WARMUP):
        request = urllib.request.Request(server.base + EMBED, data=bodies[i % len(bodies)],
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                r.read()
        except urllib.error.HTTPError as exc:
            raise ModelUnavailable(f"warm-up request answered {exc.code}: {exc.read()[:500]!r}") from None


# ----------------------------------------------------------------------------------------- report


@dataclass
class ModelResult:
    modality: str
    recipe: str
    run: Path | None = None
    cells: list[Cell] = field(default_factory=list)
    exits: dict[str, int | None] = field(default_factory=dict)  # batching -> exit status on SIGTERM
    server_errors: dict[str, int] = field(default_factory=dict)  # batching -> tracebacks in the server log
    skipped: dict[str, str] = field(default_factory=dict)  # variant -> why the server could not serve it
    unavailable: str = ""

    def cell(self, clients: int, batching: str) -> Cell | None:
        return next((c for c in self.cells if c.clients == clients and c.batching == batching), None)

    @property
    def failed(self) -> bool:
        return bool(self.unavailable or any(c.errors for c in self.cells)
                    or any(code != 0 for code in self.exits.values()))


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def report(result: ModelResult, args: argparse.Namespace) -> None:
    print(f"\n### {result.modality}: {result.recipe}" + (f" ({result.run})" if result.run else ""))
    if result.unavailable:
        print(f"\nNOT SERVED: {result.unavailable}")
        if not result.cells:
            return
    print(f"\nPOST {EMBED}, one input per request; {args.seconds:g} s timed per row after {args.warmup:g} s of "
          f"untimed load; server OMP_NUM_THREADS={args.threads}.\n")
    print("| clients | batching | requests | req/s | p50 ms | p95 ms | p99 ms | mean batch | errors | 503 "
          "| server CPU | client CPU |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in sorted(result.cells, key=lambda c: (c.clients, c.batching != "on")):
        print(f"| {c.clients} | {c.batching} | {c.ok} | {c.throughput:.1f} | {fmt(c.percentile(50), 2)} "
              f"| {fmt(c.percentile(95), 2)} | {fmt(c.percentile(99), 2)} | {fmt(c.mean_batch, 2)} | {c.errors} "
              f"| {c.shed} | {fmt(c.server_cores, 2)} | {fmt(c.client_cores, 2)} |")
    print()
    for c in result.cells:
        if c.errors or c.shed:
            print(f"- {c.clients} clients, batching {c.batching}: {c.errors} errors, {c.shed} 503; first: "
                  f"{c.first_problem}")
        if c.server_ok is not None and c.server_ok != c.ok + c.wrong_answers:
            print(f"- {c.clients} clients, batching {c.batching}: the server counted {c.server_ok:.0f} 200 answers, "
                  f"the client {c.ok + c.wrong_answers}")
    for b, why in result.skipped.items():
        print(f"- batching {b}: not served ({why})")
    exits = ", ".join(f"batching {b}: {'killed (no exit in 60 s)' if code is None else code}"
                      for b, code in result.exits.items())
    if exits:
        print(f"- exit status on SIGTERM: {exits}" + ("" if all(v == 0 for v in result.exits.values()) else
                                                         " (NOT 0)"))
    for b, n in result.server_errors.items():
        if n:
            print(f"- the server log (batching {b}) holds {n} traceback(s): see {args.work}/logs")
    total = sum(c.errors for c in result.cells)
    print(f"- errors (non-200 other than 503, transport, malformed): {total}"
          f"{'' if total == 0 else ' (must be 0)'}; 503: {sum(c.shed for c in result.cells)}")
    targets(result, args)


def targets(result: ModelResult, args: argparse.Namespace) -> None:
    most = max(args.clients)
    on, off = result.cell(most, "on"), result.cell(most, "off")
    if on is not None and off is not None and off.throughput > 0:
        ratio = on.throughput / off.throughput
        print(f"- target: throughput with batching at {most} clients >= 3x without: {on.throughput:.1f} / "
              f"{off.throughput:.1f} req/s = {ratio:.2f}x: {'met' if ratio >= 3 else 'NOT met'}")
    else:
        print(f"- target: throughput with batching at {most} clients >= 3x without: not measured")
    for variant in args.variants:
        mine = result.cell(most, f"on+{variant}")
        if on is not None and mine is not None and on.throughput > 0:
            print(f"- {variant} against the default setting, batching on, {most} clients: {mine.throughput:.1f} / "
                  f"{on.throughput:.1f} req/s = {mine.throughput / on.throughput:.2f}x")
    eight, single, single_on = result.cell(8, "on"), result.cell(1, "off"), result.cell(1, "on")
    if eight is not None and single is not None and eight.ok and single.ok:
        p99, p50 = eight.percentile(99), single.percentile(50)
        ratio = p99 / p50
        beside = (f"; against the p50 at 1 client with batching ({single_on.percentile(50):.2f} ms, its "
                  f"wait included): {p99 / single_on.percentile(50):.2f}x" if single_on is not None and single_on.ok
                  else "")
        print(f"- target: p99 with batching at 8 clients < 2x the single-request p50 (1 client, no batching): "
              f"{p99:.2f} / {p50:.2f} ms = {ratio:.2f}x: {'met' if ratio < 2 else 'NOT met'}{beside}")
        # 8 closed-loop clients: mean latency = 8 / throughput (Little's law), a floor under the p99
        print(f"  (8 clients answered at {eight.throughput:.1f} req/s have a mean latency of "
              f"{8000 / eight.throughput:.2f} ms by Little's law: the target needs {8000 / (2 * p50):.0f} req/s "
              f"or more at 8 clients)")
    else:
        print("- target: p99 with batching at 8 clients < 2x the single-request p50: not measured "
              "(needs --clients with 1 and 8)")


# ----------------------------------------------------------------------------------------- main


def serve_model(modality: str, recipe: str, args: argparse.Namespace, result: ModelResult) -> None:
    result.run = run = train(modality, recipe, args.work, args.steps, args.train_timeout)
    logs = args.work / "logs"
    logs.mkdir(exist_ok=True)
    bodies: list[bytes] | None = None
    settings = {**BATCHING, **{f"on+{v}": BATCHING["on"] + VARIANTS[v] for v in args.variants}}
    for batching, flags in settings.items():
        log = logs / f"serve-{modality}-batching-{batching}.log"
        print(f"{modality}: serving with batching {batching} ...", file=sys.stderr, flush=True)
        try:
            server = Server(run, flags + (["--no-drift"] if args.no_drift else []), args.threads, log,
                            args.ready_timeout)
        except ModelUnavailable as exc:
            if batching in BATCHING:
                raise
            result.skipped[batching] = str(exc).splitlines()[0][:300]  # a variant this model cannot run (ONNX)
            print(f"{modality}: {batching} not served: {result.skipped[batching]}", file=sys.stderr, flush=True)
            continue
        try:
            if bodies is None:
                status, body = http_get(server.base + "/v1/model")
                if status != 200:
                    raise ModelUnavailable(f"/v1/model answered {status}: {body[:500]!r}")
                info = json.loads(body)
                bodies = request_bodies(modality, info["inputs"], info["data"]["options"], args.work)
            sequential_warmup(server, bodies, args.timeout)
            for clients in args.clients:
                cell = asyncio.run(measure_cell(server, bodies, clients, batching, args))
                result.cells.append(cell)
                print(f"{modality}: batching {batching}, {clients} clients: {cell.throughput:.1f} req/s, "
                      f"p50 {cell.percentile(50):.2f} ms, {cell.errors} errors", file=sys.stderr, flush=True)
        except BaseException:
            server.kill()
            raise
        result.exits[batching] = server.stop()
        result.server_errors[batching] = log.read_text(errors="replace").count("Traceback (most recent call last)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="image,text,audio", help="Comma-separated: image, text, audio.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Timed load per (batching, clients) row.")
    parser.add_argument("--warmup", type=float, default=1.0, help="Untimed load before each row, in seconds.")
    parser.add_argument("--clients", default="1,8,64", help="Comma-separated concurrencies.")
    parser.add_argument("--max-requests", type=int, default=50_000, help="At most this many requests per row.")
    parser.add_argument("--work", type=Path, default=None,
                        help="Folder of the trained runs, inputs and server logs (kept; default: a temporary one).")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="OMP_NUM_THREADS of the server process (default: all cores).")
    parser.add_argument("--steps", type=int, default=30, help="Training steps of each model.")
    parser.add_argument("--image-recipe", default=RECIPES["image"][0],
                        help="The vision quickstart of the image model (simclr-digits: 8x8 digits; simclr-mnist5k: "
                             "28x28 and a deeper CNN).")
    parser.add_argument("--audio-recipe", default=RECIPES["audio"][0],
                        help="The speech quickstart of the audio model (apc-quickstart, hubert-quickstart, ...).")
    parser.add_argument("--no-drift", action="store_true", help="Serve with --no-drift (default: drift scored).")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="The load generator's HTTP client: minimal asyncio HTTP/1.1 (raw) or httpx.")
    parser.add_argument("--variants", default="",
                        help=f"Comma-separated settings also served with batching on: {', '.join(VARIANTS)} "
                             "(ONNX Runtime; uvicorn's pure-Python h11 or C httptools HTTP parser).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Per-request timeout, seconds.")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="Wait at most this long for /readyz.")
    parser.add_argument("--train-timeout", type=float, default=900.0, help="Training time limit per model.")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODALITIES))
    if unknown or not args.models:
        parser.error(f"--models: unknown {unknown}; choose among {', '.join(MODALITIES)}")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if sorted(set(args.variants) - set(VARIANTS)):
        parser.error(f"--variants: choose among {', '.join(VARIANTS)}")
    try:
        args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--clients: comma-separated integers, got {args.clients!r}")
    if not args.clients or min(args.clients) < 1 or max(args.clients) > 1024:
        parser.error("--clients: concurrencies between 1 and 1024")
    if args.seconds <= 0 or args.warmup < 0 or args.threads < 1 or args.max_requests < 1 or args.steps < 1:
        parser.error("--seconds, --threads, --max-requests and --steps must be positive, --warmup >= 0")
    return args


def main() -> int:
    args = parse_args()
    if args.client == "httpx":
        try:
            import httpx  # noqa: F401
        except ImportError:
            sys.exit("--client httpx needs httpx: pip install httpx")
    temporary = None
    if args.work is None:
        temporary = tempfile.TemporaryDirectory(prefix="serve-load-")
        args.work = Path(temporary.name)
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"\nselfsup serve on 127.0.0.1, one server process (OMP_NUM_THREADS={args.threads}) per model and "
          f"batching setting; batching on: {' '.join(BATCHING['on'])}, off: {' '.join(BATCHING['off'])}; clients: "
          f"{'minimal asyncio HTTP/1.1' if args.client == 'raw' else 'httpx'} (one keep-alive connection each) in this "
          f"process, on the same machine. uvicorn's defaults here (auto): HTTP parser "
          f"{'httptools' if importlib.util.find_spec('httptools') else 'h11'}, event loop "
          f"{'uvloop' if importlib.util.find_spec('uvloop') else 'asyncio'}.", flush=True)
    results = []
    try:
        for modality in args.models:
            recipe = {"audio": args.audio_recipe, "image": args.image_recipe}.get(modality, RECIPES[modality][0])
            result = ModelResult(modality, recipe)
            try:
                serve_model(modality, recipe, args, result)
            except ModelUnavailable as exc:
                result.unavailable = str(exc)
                print(f"{modality}: {exc}", file=sys.stderr, flush=True)
            results.append(result)
            report(result, args)
            sys.stdout.flush()
    finally:
        if temporary is not None:
            temporary.cleanup()
    failed = [r.modality for r in results if r.failed]
    print(f"\n{len(results) - len(failed)} of {len(results)} models served without errors"
          + (f"; problems: {', '.join(failed)}" if failed else "") + f" ({time.perf_counter() - started:.0f} s).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
