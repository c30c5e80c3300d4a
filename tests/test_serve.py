"""selfsup serve on the toy blobs: endpoints, answers equal to the Python API's, bad inputs (each a
4xx naming the field, the service answering on), the bounded queue, batching, metrics, auth, hot
reload under load, the input log, and drift of a shifted stream against in-distribution data."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import torch
from conftest import cli, write_toy_recipe

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import selfsup  # noqa: E402
from selfsup.serving.app import create_app  # noqa: E402
from selfsup.serving.batcher import Batcher, QueueFull  # noqa: E402
from selfsup.serving.config import ServeConfig  # noqa: E402

FINETUNE = """
seed = 0
output_dir = "{out}"
[data.train]
type = "blobs"
options = {{ n = 512, dim = 16, classes = 4, spread = 0.6, nuisance = 12.0, split = "train" }}
[backbones.pretrained]
type = "mlp"
options = {{ in_dim = 16, hidden_dims = [64], out_dim = 32 }}
init = {{ path = "{pretrained}", backbone = "mlp" }}
[tasks.classify]
type = "finetune"
data = "train"
backbone = "pretrained"
[train]
lr = 3e-3
batch_size = 64
max_steps = 30
tensorboard = false
"""


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("serve-pre")
    res = cli("train", str(write_toy_recipe(directory)), "--no-progress")
    assert res.returncode == 0, res.stderr
    return directory / "run"


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, pretrained):
    directory = tmp_path_factory.mktemp("serve-ft")
    path = directory / "ft.toml"
    path.write_text(FINETUNE.format(out=directory / "ft", pretrained=pretrained))
    res = cli("train", str(path), "--no-progress")
    assert res.returncode == 0, res.stderr
    return directory / "ft"


def blobs(split="val", n=64, shift=0.0):
    from selfsup.components import BuildContext

    source = BuildContext(name="t").build("data", "blobs", {"n": 512, "dim": 16, "classes": 4, "spread": 0.6,
                                                             "nuisance": 12.0, "split": split})
    return [(source[i]["input"] + shift).tolist() for i in range(n)]


def client(path, **options):
    import os
    if os.environ.get("NODRIFT"):
        options.setdefault("drift", False)
    raise_errors = options.pop("raise_server_exceptions", True)
    app = create_app(ServeConfig(path=path, **options))
    return TestClient(app, raise_server_exceptions=raise_errors)


def ready(c, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = c.get("/readyz")
        if r.status_code == 200:
            return r.json()
        time.sleep(0.05)
    raise AssertionError(f"not ready: {c.get('/readyz').json()}")


def test_embed_and_predict_equal_the_python_api(pretrained, finetuned):
    inputs = blobs(n=10)
    with client(pretrained) as c:
        ready(c)
        r = c.post("/v1/embed", json={"inputs": [{"input": x} for x in inputs]})
        assert r.status_code == 200, r.text
        got = torch.tensor(r.json()["embeddings"])
        want = selfsup.load(pretrained).embed([{"input": torch.tensor(x)} for x in inputs])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert c.post("/v1/predict", json={"inputs": inputs[:1]}).status_code == 404  # no head
        info = c.get("/v1/model").json()
        assert info["inputs"] == {"input": "tensor"} and info["embedding_dim"] == 32 and "metrics" in info
        assert "/v1/embed" in c.get("/openapi.json").json()["paths"]
    with client(finetuned) as c:
        ready(c)
        r = c.post("/v1/predict", json={"inputs": inputs})  # bare values: the model reads one field
        assert r.status_code == 200, r.text
        outputs = r.json()["outputs"]
        model = selfsup.load(finetuned)
        batch = [{"input": torch.tensor(x)} for x in inputs]
        assert [o["prediction"] for o in outputs] == model.predict(batch).tolist()
        torch.testing.assert_close(torch.tensor([o["probabilities"] for o in outputs]), model.probabilities(batch),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("body, status, field", [
    (b"{not json", 400, "body"),
    (b"", 400, "body"),
    (json.dumps({"data": []}).encode(), 422, "inputs"),
    (json.dumps({"inputs": {"input": [1]}}).encode(), 422, "inputs"),
    (json.dumps({"inputs": []}).encode(), 422, "inputs"),
    (json.dumps({"inputs": [[0.0] * 16] * 9}).encode(), 413, "inputs"),
    (json.dumps({"inputs": [[0.0] * 16, [0.0] * 15]}).encode(), 422, "inputs[1].input"),
    (json.dumps({"inputs": [{"input": "abc"}]}).encode(), 422, "inputs[0].input"),
    (json.dumps({"inputs": [{"input": [[1, 2], [3]]}]}).encode(), 422, "inputs[0].input"),
    (b'{"inputs": [[NaN, 1]]}', 422, "inputs[0].input"),
    (json.dumps({"inputs": [{"input": [0.0] * 16, "image": "x"}]}).encode(), 422, "inputs[0].image"),
    (json.dumps({"inputs": [{}]}).encode(), 422, "inputs[0].input"),
    (json.dumps({"inputs": [[0.0] * 16]}).encode() + b" " * 3000, 413, "body"),
])
def test_bad_input_is_a_4xx_naming_the_field_and_the_service_goes_on(pretrained, body, status, field):
    with client(pretrained, max_inputs=8, max_body_mb=2 / 1024) as c:
        ready(c)
        r = c.post("/v1/embed", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        assert r.json()["error"]["field"] == field
        ok = c.post("/v1/embed", json={"inputs": blobs(n=2)})
        assert ok.status_code == 200


def test_wrong_content_type_and_multipart(pretrained):
    with client(pretrained) as c:
        ready(c)
        r = c.post("/v1/embed", content=b"x", headers={"content-type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]["field"] == "content-type"
        inputs = blobs(n=3)
        parts = [("input", (None, json.dumps(x))) for x in inputs]  # a multipart form, one part per input
        r = c.post("/v1/embed", files=parts)
        assert r.status_code == 200, r.text
        assert len(r.json()["embeddings"]) == 3


def test_a_full_queue_answers_503_with_retry_after(pretrained):
    with client(pretrained, max_queue=2) as c:
        ready(c)
        r = c.post("/v1/embed", json={"inputs": blobs(n=3)})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert c.post("/v1/embed", json={"inputs": blobs(n=2)}).status_code == 200
        assert 'selfsup_serve_rejected_total{reason="queue_full"} 3.0' in c.get("/metrics").text


def test_batcher_batches_concurrent_inputs_and_bounds_its_queue():
    sizes = []
    release = threading.Event()

    def run(payloads):
        release.wait(5)
        return [p * 2 for p in payloads]

    async def main():
        b = Batcher(run, max_batch=4, max_wait=0.05, max_queue=6, on_batch=lambda n, s: sizes.append(n))
        await b.start()
        tasks = [asyncio.create_task(b.submit([i])) for i in range(6)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await b.submit([99])
        release.set()
        results = await asyncio.gather(*tasks)
        await b.stop()
        return results

    results = asyncio.run(main())
    assert results == [[2 * i] for i in range(6)]
    assert sum(sizes) == 6 and max(sizes) <= 4 and len(sizes) <= 3  # batched, never above max_batch


def test_metrics_auth_and_probes(pretrained):
    with client(pretrained, api_key="secret-key-1") as c:
        assert c.get("/healthz").status_code == 200  # probes stay open
        ready(c)
        assert c.post("/v1/embed", json={"inputs": blobs(n=1)}).status_code == 401
        assert c.get("/v1/model").status_code == 401
        headers = {"Authorization": "Bearer secret-key-1"}
        assert c.post("/v1/embed", json={"inputs": blobs(n=4)}, headers=headers).status_code == 200
        text = c.get("/metrics", headers={"X-API-Key": "secret-key-1"}).text
        for name in ('selfsup_serve_requests_total{endpoint="embed",status="200"} 1.0',
                     'selfsup_serve_requests_total{endpoint="embed",status="401"} 1.0',
                     "selfsup_serve_batch_size_bucket", "selfsup_serve_request_seconds_bucket",
                     "selfsup_serve_model_info{", "selfsup_serve_queue_depth", "selfsup_serve_drift_threshold",
                     'selfsup_serve_input_size_count{measure="values"} 4.0'):
            assert name in text, name
    with client(pretrained, api_key="secret-key-1", protect="reload") as c:
        ready(c)
        assert c.post("/v1/embed", json={"inputs": blobs(n=1)}).status_code == 200
        assert c.post("/v1/reload").status_code == 401


def test_reload_under_load_fails_no_request(pretrained):
    failures, answered = [], [0]
    with client(pretrained, max_wait_ms=1) as c:
        ready(c)
        before = c.get("/v1/model").json()["loaded_at"]
        stop = threading.Event()

        def load():
            while not stop.is_set():
                r = c.post("/v1/embed", json={"inputs": blobs(n=4)})
                if r.status_code != 200:
                    failures.append(r.text)
                answered[0] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        for _ in range(2):
            assert c.post("/v1/reload").status_code == 200
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert c.get("/v1/model").json()["loaded_at"] > before
        assert 'selfsup_serve_reloads_total{result="ok"} 2.0' in c.get("/metrics").text
    assert not failures and answered[0] > 8


def test_drift_stays_low_in_distribution_and_alerts_on_a_shifted_stream(pretrained):
    with client(pretrained, drift_window=64) as c:
        ready(c)
        held_out = blobs(n=96, split="val")  # distinct samples the model never trained on
        for start in range(0, 96, 32):
            c.post("/v1/embed", json={"inputs": held_out[start:start + 32]})
        stats = c.get("/v1/stats").json()["drift"]
        assert stats["score"] is not None and not stats["alert"], stats
        for chunk in range(4):
            c.post("/v1/embed", json={"inputs": blobs(n=32, split="val", shift=25.0)})
        stats = c.get("/v1/stats").json()["drift"]
        assert stats["alert"] and stats["score"] > stats["threshold"], stats
        assert "selfsup_serve_drift_alert 1.0" in c.get("/metrics").text
    assert list((pretrained / "serve").glob("drift-*.json"))  # the reference is kept in the run directory


def test_input_log_is_a_capped_folder_of_data(pretrained, tmp_path):
    folder = tmp_path / "log"
    with client(pretrained, log_inputs=folder, log_max_mb=0.02) as c:
        ready(c)
        for _ in range(30):
            assert c.post("/v1/embed", json={"inputs": blobs(n=8)}).status_code == 200
    files = sorted(folder.glob("tensors-*.jsonl"))
    assert files and sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 0.02 * 2**20
    record = json.loads(files[-1].read_text().splitlines()[-1])
    assert len(record["input"]) == 16


def test_an_export_is_served_with_its_drift_reference(pretrained, tmp_path):
    folder = selfsup.export(pretrained, out=tmp_path / "export")
    assert (folder / "drift.json").is_file()
    with client(folder) as c:
        ready(c)
        r = c.post("/v1/embed", json={"inputs": blobs(n=3)})
        assert r.status_code == 200, r.text
        info = c.get("/v1/model").json()
        assert info["export"]["format"] == "selfsup-export" and info["drift"]["threshold"] > 0


def test_a_decoder_is_built_without_the_data():
    from selfsup.components import BuildContext

    decoder = BuildContext(name="t").decoder("tensor_file", {"path": "does/not/exist.npz"})
    sample, stats = decoder({"input": [1.0, 2.0]})
    assert sample["input"].tolist() == [1.0, 2.0] and stats == {"values": 2.0}


def test_watching_the_run_directory_reloads_a_newer_checkpoint(tmp_path):
    res = cli("train", str(write_toy_recipe(tmp_path, max_steps=20)), "--no-progress")
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    with client(run, watch_seconds=0.2, drift=False) as c:
        first = ready(c)["version"]
        assert first.startswith("step-00000020")
        res = cli("train", str(tmp_path / "toy.toml"), "--resume", "--set", "train.max_steps=30", "--no-progress")
        assert res.returncode == 0, res.stderr
        deadline = time.time() + 30
        while time.time() < deadline and c.get("/readyz").json()["version"] == first:
            time.sleep(0.1)
        assert c.get("/readyz").json()["version"].startswith("step-00000030")
        assert c.post("/v1/embed", json={"inputs": blobs(n=2)}).status_code == 200


def test_decoder_is_for_data_sources_only():
    from selfsup.registry import RegistrationError, Registry

    registry = Registry()
    register = registry.make_register("backbone", "p", None)
    with pytest.raises(RegistrationError, match="decoder= is for data sources"):
        register("b", lambda o, c: None, decoder=lambda o, c: None)
    registry.make_register("data_source", "p", None)("d", lambda o, c: None, decoder=lambda o, c: "decoder")
    assert registry.get("data_source", "d").decoder(None, None) == "decoder"


def test_onnx_runtime_answers_as_pytorch_does(pretrained, finetuned):
    pytest.importorskip("onnxruntime")
    inputs = blobs(n=6)
    for run, endpoint, key in ((pretrained, "/v1/embed", "embeddings"), (finetuned, "/v1/predict", "outputs")):
        answers = {}
        for runtime in ("torch", "onnx"):
            with client(run, runtime=runtime, drift=False) as c:
                ready(c)
                r = c.post(endpoint, json={"inputs": inputs})
                assert r.status_code == 200, r.text
                answers[runtime] = r.json()[key]
                assert c.post(endpoint, json={"inputs": [[0.0] * 15]}).status_code == 422
        if key == "embeddings":
            torch.testing.assert_close(torch.tensor(answers["onnx"]), torch.tensor(answers["torch"]), atol=1e-4,
                                       rtol=1e-4)
        else:
            assert [o["prediction"] for o in answers["onnx"]] == [o["prediction"] for o in answers["torch"]]
    assert list((pretrained / "serve").glob("onnx-*/model.onnx"))


def test_a_bug_is_a_json_500_and_the_service_goes_on(pretrained, monkeypatch):
    with client(pretrained, drift=False, raise_server_exceptions=False) as c:
        ready(c)
        loaded = c.app.state.service.current
        monkeypatch.setattr(loaded, "answer", lambda *a: (_ for _ in ()).throw(RuntimeError("a bug")))
        r = c.post("/v1/embed", json={"inputs": blobs(n=2)})
        assert r.status_code == 500 and r.json()["error"]["message"] == "internal error: RuntimeError"
        monkeypatch.undo()
        assert c.post("/v1/embed", json={"inputs": blobs(n=2)}).status_code == 200
        assert 'selfsup_serve_requests_total{endpoint="embed",status="500"} 1.0' in c.get("/metrics").text
