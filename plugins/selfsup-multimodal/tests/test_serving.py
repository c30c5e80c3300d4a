"""`selfsup serve` of a multimodal run: each encoder served by its recipe key, its embeddings
through the CLIP task's projection into the shared space, where a served caption finds the served
images of its digit; paired decoders take either modality and refuse the wrong one by name."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")

import selfsup  # noqa: E402
from selfsup.components import BuildContext  # noqa: E402
from selfsup.testing import serving_client  # noqa: E402

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-clip")
    return selfsup.train("clip-digits-text", {"output_dir": str(root / "run"), "train.epochs": 2,
                                              "train.tensorboard": False}).path


def digits(n: int) -> tuple[list[str], np.ndarray]:
    """The last ``n`` scikit-learn digits as base64 PNGs, and their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    encoded = []
    for img in data.images[-n:]:
        buffer = io.BytesIO()
        Image.fromarray(np.round(img * 255 / 16).astype(np.uint8)).save(buffer, "PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode())
    return encoded, data.target[-n:]


@pytest.mark.slow
def test_captions_find_their_digits_in_the_served_shared_space(clip_run):
    images, labels = digits(100)
    with serving_client(clip_run, backbone="image", project="clip") as c:
        info = c.get("/v1/model").json()
        assert info["backbone"] == "image" and info["project"] == "clip"
        assert set(info["inputs"]) == {"image", "text"}
        r = c.post("/v1/embed", json={"inputs": [{"image": i} for i in images]})
        assert r.status_code == 200, r.text
        image_emb = torch.tensor(r.json()["embeddings"])  # [100, 64], unit rows
        r = c.post("/v1/embed", json={"inputs": [{"text": "seven"}]})
        assert r.status_code == 422 and "image" in r.json()["error"]["message"], r.text
    assert image_emb.shape == (100, 64)
    torch.testing.assert_close(image_emb.norm(dim=1), torch.ones(100), rtol=1e-4, atol=1e-4)
    with serving_client(clip_run, backbone="text", project="clip") as c:
        r = c.post("/v1/embed", json={"inputs": [{"text": name} for name in NAMES]})
        assert r.status_code == 200, r.text
        text_emb = torch.tensor(r.json()["embeddings"])  # [10, 64]
        r = c.post("/v1/embed", json={"inputs": [{"image": images[0]}]})
        assert r.status_code == 422 and r.json()["error"]["field"] == "inputs[0]", r.text
    predicted = (image_emb @ text_emb.T).argmax(dim=1).numpy()  # each image's nearest caption
    accuracy = float((predicted == labels).mean())
    assert accuracy > 0.6, accuracy  # chance: 0.1 (measured 0.9 after 2 epochs)
    # the served vectors are the Python API's for the same backbone and projection
    model = selfsup.load(clip_run, backbone="text", project="clip")
    decoder = BuildContext(name="t").decoder("digit_captions", model.recipe["data"]["train"]["options"])
    torch.testing.assert_close(text_emb, model.embed([decoder({"text": name})[0] for name in NAMES]),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_tower_without_projection_and_its_export(clip_run, tmp_path):
    with serving_client(clip_run, backbone="text") as c:
        r = c.post("/v1/embed", json={"inputs": [{"text": "seven"}, {"text": "the digit 7"}]})
        assert r.status_code == 200, r.text
        raw = torch.tensor(r.json()["embeddings"])
    model = selfsup.load(clip_run, backbone="text")
    assert raw.shape == (2, model.backbone.output_dim)
    folder = selfsup.export(clip_run, backbone="text", out=tmp_path / "text")
    with serving_client(folder) as c:
        r = c.post("/v1/embed", json={"inputs": [{"text": "seven"}, {"text": "the digit 7"}]})
        assert r.status_code == 200, r.text
        torch.testing.assert_close(torch.tensor(r.json()["embeddings"]), raw, rtol=1e-4, atol=1e-5)


def test_unknown_backbone_and_projection_are_named(clip_run):
    with pytest.raises(ValueError, match="did you mean 'image'"):
        selfsup.load(clip_run, backbone="imag")
    with pytest.raises(ValueError, match="did you mean 'clip'"):
        selfsup.load(clip_run, backbone="image", project="clipp")


def test_pair_decoder_takes_either_field_and_needs_one():
    from selfsup.components import BadInput

    decoder = BuildContext(name="t").decoder("digit_captions", {"split": "val"})
    images, _ = digits(1)
    sample, _ = decoder({"image": base64.b64decode(images[0])})
    assert set(sample) == {"image"} and sample["image"].shape == (1, 8, 8)
    sample, stats = decoder({"text": "seven"})
    assert set(sample) == {"input_ids", "text"} and stats["tokens"] == 5
    with pytest.raises(BadInput, match="send one of the fields image, text"):
        decoder({})


@pytest.mark.slow
def test_onnx_runtime_serves_the_projection_too(clip_run):
    pytest.importorskip("onnxruntime")
    images, _ = digits(5)
    body = {"inputs": [{"image": i} for i in images]}
    with serving_client(clip_run, backbone="image", project="clip") as c:
        eager = torch.tensor(c.post("/v1/embed", json=body).json()["embeddings"])
    with serving_client(clip_run, backbone="image", project="clip", runtime="onnx") as c:
        r = c.post("/v1/embed", json=body)
        assert r.status_code == 200, r.text
    assert eager.shape == (5, 64)
    torch.testing.assert_close(torch.tensor(r.json()["embeddings"]), eager, rtol=1e-4, atol=1e-4)
    assert list((clip_run / "serve").glob("onnx-*-image-clip")), list((clip_run / "serve").iterdir())
