"""`selfsup serve` with a speech model: audio files in (WAV, FLAC, stereo, other rates; JSON base64
and multipart uploads), the embeddings and predictions equal the Python API's on the decoded
samples, bad audio is a 4xx error naming the field, long clips are cut or refused."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")

import selfsup  # noqa: E402
from selfsup.testing import serving_client  # noqa: E402

SHORT = {"train.max_steps": 4, "train.warmup_steps": 1, "train.tensorboard": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-speech")
    pre = selfsup.train("apc-quickstart", {"output_dir": str(root / "pre"), **SHORT, "evaluators.keywords": None})
    ft = selfsup.finetune(pre, "finetune-keywords", {"output_dir": str(root / "ft"), **SHORT})
    return pre.path, ft.path


def clip(seconds: float = 0.8, rate: int = 22050, channels: int = 1, fmt: str = "WAV", seed: int = 0) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format=fmt)
    return buffer.getvalue()


def test_audio_is_served_as_the_training_data_was_read(runs):
    pre, ft = runs
    files = [clip(seed=0), clip(rate=44100, channels=2, seed=1), clip(rate=16000, fmt="FLAC", seed=2)]
    with serving_client(pre) as c:
        decoder = c.app.state.service.current.decoder
        samples = [decoder({"audio": f})[0] for f in files]
        r = c.post("/v1/embed", json={"inputs": [{"audio": base64.b64encode(f).decode()} for f in files]})
        assert r.status_code == 200, r.text
        want = selfsup.load(pre).embed(samples)
        torch.testing.assert_close(torch.tensor(r.json()["embeddings"]), want, rtol=1e-4, atol=1e-5)
        r = c.post("/v1/embed", files=[("audio", (f"{i}.wav", f, "audio/wav")) for i, f in enumerate(files)])
        assert r.status_code == 200, r.text
        assert 'selfsup_serve_input_audio_seconds_count 6.0' in c.get("/metrics").text
    with serving_client(ft) as c:
        r = c.post("/v1/predict", files=[("audio", ("a.wav", f, "audio/wav")) for f in files])
        assert r.status_code == 200, r.text
        samples = [c.app.state.service.current.decoder({"audio": f})[0] for f in files]
        assert [o["prediction"] for o in r.json()["outputs"]] == selfsup.load(ft).predict(samples).tolist()


@pytest.mark.parametrize("payload, status", [
    ({"audio": base64.b64encode(b"RIFF but not really audio").decode()}, 422),
    ({"audio": ""}, 422),
    ({"audio": ["not", "bytes"]}, 422),
])
def test_bad_audio_is_4xx_naming_the_field(runs, payload, status):
    with serving_client(runs[0]) as c:
        r = c.post("/v1/embed", json={"inputs": [payload]})
        assert r.status_code == status, r.text
        assert r.json()["error"]["field"] == "inputs[0].audio"
        assert c.post("/v1/embed", files=[("audio", ("a.wav", clip(), "audio/wav"))]).status_code == 200


def test_long_audio_is_cut_or_refused(runs):
    long = clip(seconds=61, rate=8000)
    with serving_client(runs[0]) as c:
        assert c.post("/v1/embed", files=[("audio", ("a.wav", long, "audio/wav"))]).status_code == 200
        assert "selfsup_serve_inputs_truncated_total 1.0" in c.get("/metrics").text
    with serving_client(runs[0], truncate=False) as c:
        r = c.post("/v1/embed", files=[("audio", ("a.wav", long, "audio/wav"))])
        assert r.status_code == 413 and r.json()["error"]["field"] == "inputs[0].audio"


def wav(audio: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_drift_training_speech_stays_under_the_threshold_noisy_speech_crosses_it(runs):
    """Clips of the training distribution (a seeded sample of the training voices' clips) stay under
    the threshold; the same clips with noise cross it. (The held-out *voices* of the val split are
    flagged too: new speakers are a shift the detector sees, see docs/serving.md.)"""
    model = selfsup.load(runs[0])
    train = model.data
    rate = 16000
    order = np.random.default_rng(5).permutation(len(train))[:128]
    clips = [train[int(i)]["audio"].numpy() for i in order]
    noise = np.random.default_rng(0)
    held_out = [wav(a, rate) for a in clips]
    noisy = [wav(a + 0.3 * noise.standard_normal(a.size).astype(np.float32), rate) for a in clips]
    with serving_client(runs[0], drift_window=128) as c:
        for start in range(0, 128, 32):
            r = c.post("/v1/embed", files=[("audio", ("a.wav", f, "audio/wav")) for f in held_out[start:start + 32]])
            assert r.status_code == 200, r.text
        drift = c.get("/v1/stats").json()["drift"]
        assert drift["score"] is not None and not drift["alert"], drift
        for start in range(0, 128, 32):
            c.post("/v1/embed", files=[("audio", ("a.wav", f, "audio/wav")) for f in noisy[start:start + 32]])
        drift = c.get("/v1/stats").json()["drift"]
        assert drift["alert"] and drift["score"] > drift["threshold"], drift
