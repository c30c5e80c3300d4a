"""`selfsup serve` with text models: JSON texts in, embeddings and predictions equal to the Python
API's on the decoded samples, bad texts are 4xx errors naming the field, long texts are cut or
refused, and another language drifts while held-out text of the training corpus does not."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi")

import selfsup  # noqa: E402
from selfsup.testing import serving_client  # noqa: E402

SHORT = {"train.max_steps": 4, "train.warmup_steps": 1, "train.tensorboard": False}
REVIEWS = ["A warm, funny and moving film.", "Dull, long and badly acted.", "I would watch it again tomorrow."]
OTHER_LANGUAGE = ["Der Hund läuft schnell über die Straße und bellt laut.",
                  "Wir haben gestern Abend im Garten gegessen und Wein getrunken.",
                  "Die Regierung hat neue Gesetze für den Verkehr beschlossen."]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-text")
    pre = selfsup.train("mlm-quickstart", {"output_dir": str(root / "pre"), **SHORT,
                                           "evaluators.mlm_accuracy": None, "evaluators.sts": None})
    ft = selfsup.finetune(pre, "finetune-polarity", {"output_dir": str(root / "ft"), **SHORT})
    return pre.path, ft.path


def test_texts_are_served_as_the_training_data_was_tokenized(runs):
    pre, ft = runs
    with serving_client(ft, drift=False) as c:
        decoder = c.app.state.service.current.decoder
        samples = [decoder({"text": t})[0] for t in REVIEWS]
        r = c.post("/v1/predict", json={"inputs": REVIEWS})
        assert r.status_code == 200, r.text
        model = selfsup.load(ft)
        assert [o["prediction"] for o in r.json()["outputs"]] == model.predict(samples).tolist()
        torch.testing.assert_close(torch.tensor([o["probabilities"] for o in r.json()["outputs"]]),
                                   model.probabilities(samples), rtol=1e-4, atol=1e-5)
        r = c.post("/v1/embed", json={"inputs": [{"text": t} for t in REVIEWS]})
        assert r.status_code == 200, r.text
        torch.testing.assert_close(torch.tensor(r.json()["embeddings"]), model.embed(samples), rtol=1e-4, atol=1e-5)
        assert 'selfsup_serve_input_size_count{measure="tokens"}' in c.get("/metrics").text


@pytest.mark.parametrize("payload, field", [
    ({"text": ""}, "inputs[0].text"),
    ({"text": "   "}, "inputs[0].text"),
    ({"text": 12}, "inputs[0].text"),
    ({"text": ["a"]}, "inputs[0].text"),
    ({}, "inputs[0].text"),
])
def test_bad_texts_are_422_naming_the_field(runs, payload, field):
    with serving_client(runs[1], drift=False) as c:
        r = c.post("/v1/embed", json={"inputs": [payload]})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field
        assert c.post("/v1/embed", json={"inputs": ["still serving"]}).status_code == 200


def test_long_texts_are_cut_or_refused(runs):
    long = " ".join(["word"] * 400)  # far past max_length = 64
    with serving_client(runs[1], drift=False) as c:
        assert c.post("/v1/embed", json={"inputs": [long]}).status_code == 200
        assert "selfsup_serve_inputs_truncated_total 1.0" in c.get("/metrics").text
    with serving_client(runs[1], drift=False, truncate=False) as c:
        r = c.post("/v1/embed", json={"inputs": [long]})
        assert r.status_code == 413 and r.json()["error"]["field"] == "inputs[0].text"


def test_drift_held_out_corpus_text_stays_under_another_language_crosses(runs):
    from selfsup.components import BuildContext

    pre = runs[0]
    val = BuildContext(name="t").build("data", "embedded_corpus", {"name": "all", "tokenizer": "bpe-8k",
                                                                   "unit": "paragraph", "split": "val"})
    held_out = [t for t in val.texts if len(t) > 600][:128]  # paragraphs long enough to fill a window
    assert len(held_out) >= 64
    with serving_client(pre, drift_window=64) as c:
        for start in range(0, 64, 32):
            assert c.post("/v1/embed", json={"inputs": held_out[start:start + 32]}).status_code == 200
        drift = c.get("/v1/stats").json()["drift"]
        assert drift["score"] is not None and not drift["alert"], drift
        german = [" ".join(OTHER_LANGUAGE[(i + j) % 3] for j in range(6)) for i in range(64)]
        for start in range(0, 64, 32):
            c.post("/v1/embed", json={"inputs": german[start:start + 32]})
        drift = c.get("/v1/stats").json()["drift"]
        assert drift["alert"] and drift["score"] > drift["threshold"], drift
