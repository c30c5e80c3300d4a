"""`selfsup serve` as a process: readiness, SIGHUP reload, SIGTERM draining in-flight requests and
exiting 0, and the dashboard rendered in headless Chromium (a screenshot kept as a test artefact)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import cli, write_toy_recipe

pytest.importorskip("fastapi")

ARTEFACTS = Path(os.environ.get("SELFSUP_TEST_ARTEFACTS", Path(__file__).parent.parent / "build" / "test-artefacts"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("serve-proc")
    res = cli("train", str(write_toy_recipe(directory)), "--no-progress")
    assert res.returncode == 0, res.stderr
    return directory / "run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def post(url, body, timeout=30):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def start(run_dir, *args):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "selfsup", "serve", str(run_dir), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        try:
            if get(base + "/readyz", timeout=2)[0] == 200:
                return proc, base
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the service did not become ready: " + proc.stdout.read())


def inputs(n):
    return [[0.1 * i] * 16 for i in range(n)]


def test_sighup_reloads_and_sigterm_drains_then_exits_0(run_dir):
    proc, base = start(run_dir, "--max-wait-ms", "300", "--max-batch", "1000")
    try:
        assert post(base + "/v1/embed", {"inputs": inputs(2)})[0] == 200
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline:
            metrics = get(base + "/metrics")[1].decode()
            if 'selfsup_serve_reloads_total{result="ok"} 1.0' in metrics:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("SIGHUP did not reload")
        # a request waiting in its batch (300 ms) when SIGTERM arrives is still answered
        answer = {}
        thread = threading.Thread(target=lambda: answer.update(r=post(base + "/v1/embed", {"inputs": inputs(3)})))
        thread.start()
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        thread.join(30)
        assert answer["r"][0] == 200 and len(answer["r"][1]["embeddings"]) == 3
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dashboard_renders_live_charts_in_headless_chromium(run_dir, tmp_path):
    if shutil.which("chromium") is None:  # .ci/test installs it; a developer machine may lack it
        if os.environ.get("CI"):
            pytest.fail("chromium is missing under CI: .ci/test should have installed it (apt-get install chromium)")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    proc, base = start(run_dir)
    try:
        for n in (1, 4, 8, 16, 32, 64, 64):  # past the drift window's minimum: the drift chart has points
            assert post(base + "/v1/embed", {"inputs": inputs(n)})[0] == 200
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=4000"]
        dom = subprocess.run(["chromium", *flags, "--dump-dom", base + "/dashboard"], capture_output=True,
                             text=True, timeout=90)
        assert 'data-polls="' in dom.stdout, dom.stderr[-2000:]
        points = {m[0]: int(m[1]) for m in re.findall(r'<canvas id="(\w+)"[^>]*data-points="(\d+)"', dom.stdout)}
        assert set(points) == {"rate", "latency", "driftchart"} and min(points.values()) > 0, points
        rows = re.findall(r"<tr><td>([^<]*)</td><td>#(\d+) \((\d)\)</td><td>([\d.]+)</td></tr>", dom.stdout)
        assert rows and rows[0][0] == "input: 16 values", dom.stdout[-3000:]  # nearest examples, with labels
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTEFACTS / "dashboard.png"
        subprocess.run(["chromium", *flags, "--window-size=1300,700", f"--screenshot={shot}", base + "/dashboard"],
                       capture_output=True, timeout=90)
        assert shot.is_file() and shot.stat().st_size > 5000
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_two_workers_answer_and_their_metrics_add_up(run_dir):
    proc, base = start(run_dir, "--workers", "2", "--no-drift")
    try:
        streak, deadline = 0, time.time() + 60
        while streak < 10 and time.time() < deadline:  # both workers ready (each answers some probes)
            try:
                streak = streak + 1 if get(base + "/readyz")[0] == 200 else 0
            except OSError:
                streak = 0
            time.sleep(0.05)
        for _ in range(10):
            assert post(base + "/v1/embed", {"inputs": inputs(2)})[0] == 200
        text = get(base + "/metrics")[1].decode()
        found = re.search(r'selfsup_serve_requests_total\{endpoint="embed",status="200"\} ([\d.]+)', text)
        assert found and float(found.group(1)) == 10.0, text[:3000]
        assert len(re.findall(r'selfsup_serve_ready(?:\{[^}]*\})? 1\.0', text)) >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
