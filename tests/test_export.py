"""Exports (selfsup, onnx, torchscript) of a fine-tuned toy model, each loaded in a subprocess where
selfsup cannot be imported and compared with the selfsup model; and `selfsup embed`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import cli, write_toy_recipe

import selfsup

#: Run in a fresh interpreter: ``import selfsup`` fails there, so the export must stand alone.
LOADER = """
import json, sys
sys.modules["selfsup"] = None  # any import of selfsup raises ImportError
import numpy as np
fmt, folder, inputs = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
if fmt == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
    outs = session.run(None, {"input": inputs})
else:
    import torch
    outs = [t.detach().numpy() for t in torch.jit.load(folder + "/model.pt")(torch.from_numpy(inputs))]
print(json.dumps([o.tolist() for o in outs]))
"""

FINETUNE = """
[data.train]
type = "blobs"
options = { n = 256, dim = 16, classes = 4, split = "train" }
[data.val]
type = "blobs"
options = { n = 256, dim = 16, classes = 4, split = "val" }
[tasks.classify]
type = "finetune"
data = "train"
backbone = "pretrained"
[evaluators.val]
type = "classification"
data = "val"
[train]
lr = 1e-2
batch_size = 32
max_steps = 15
tensorboard = false
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    assert cli("train", str(write_toy_recipe(root, max_steps=20)), "--no-progress").returncode == 0
    (root / "ft.toml").write_text(FINETUNE)
    res = cli("finetune", str(root / "run"), str(root / "ft.toml"), "--no-progress", cwd=root)
    assert res.returncode == 0, res.stderr
    return root / "runs" / "ft-run"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_traced_exports_load_without_selfsup_and_match(tmp_path, tuned, fmt):
    pytest.importorskip("onnxruntime") if fmt == "onnx" else None
    folder = selfsup.export(tuned, format=fmt, out=tmp_path / fmt)
    model = selfsup.load(tuned)
    inputs = torch.randn(5, 16)  # another batch size than the one traced: the batch axis is dynamic
    np.save(tmp_path / "x.npy", inputs.numpy())
    res = subprocess.run([sys.executable, "-c", LOADER, fmt, str(folder), str(tmp_path / "x.npy")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    embedding, logits = (torch.tensor(o) for o in json.loads(res.stdout))
    samples = [{"input": x} for x in inputs]
    diff = max((embedding - model.embed(samples)).abs().max(), (logits - model.outputs(samples)).abs().max())
    assert diff < 1e-4, diff
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: other") and "max abs diff" in card and "| `val/f1_macro` |" in card


def test_selfsup_export_round_trip_and_finetune_from_it(tmp_path, tuned):
    folder = selfsup.export(tuned, out=tmp_path / "sx")
    manifest = json.loads((folder / "selfsup.json").read_text())
    assert manifest["type"] == "mlp" and manifest["task"]["options"]["head_options"]["num_classes"] == 4
    samples = [{"input": torch.randn(16)} for _ in range(7)]
    a, b = selfsup.load(tuned), selfsup.load(folder)
    assert torch.equal(a.embed(samples), b.embed(samples)) and torch.equal(a.predict(samples), b.predict(samples))
    again = selfsup.finetune(folder, tuned.parent.parent / "ft.toml", {"train.max_steps": 2, "output_dir": str(
        tmp_path / "again")})  # an export is a starting point too
    assert again.status == "completed"
    assert again.recipe["backbones"]["pretrained"]["init"] == {"path": str(folder.resolve()), "backbone": "pretrained"}
    (folder / "backbone.safetensors").write_bytes(b"damaged")
    with pytest.raises(ValueError, match="backbone.safetensors: .*bytes"):
        selfsup.load(folder)


def test_unknown_format_is_refused_naming_the_known_ones(tuned):
    res = cli("export", str(tuned), "--format", "timm")
    assert res.returncode == 2
    assert "format 'timm' does not fit MLP; it exports to selfsup, onnx, torchscript" in res.stderr


def test_embed_writes_ids_labels_and_vectors(tmp_path, tuned):
    out = tmp_path / "e.npz"
    res = cli("embed", str(tuned), "--data", "val", "--out", str(out), "--workers", "2", "--no-progress")
    assert res.returncode == 0, res.stderr
    saved = np.load(out)
    model = selfsup.load(tuned)
    from selfsup.components import BuildContext

    val = BuildContext(name="v").build("data", "blobs", {"n": 256, "dim": 16, "classes": 4, "split": "val"})
    assert saved["ids"].tolist() == list(range(len(val)))
    assert saved["labels"].tolist() == [int(val[i]["label"]) for i in range(len(val))]
    expected = model.embed([val[i] for i in range(len(val))]).numpy()
    assert np.allclose(saved["embeddings"], expected, atol=1e-6)
    res = cli("embed", str(tuned), "--data", "nope", "--out", str(tmp_path / "x.npy"))
    assert res.returncode == 2 and "neither a data key of the run (train, val)" in res.stderr


def test_a_library_export_named_selfsup_json_is_not_taken_for_a_selfsup_export(tmp_path):
    (tmp_path / "selfsup.json").write_text('{"backbone": "wav2vec2_encoder", "sample_rate": 16000}')
    with pytest.raises(ValueError, match="not a `selfsup export --format selfsup` manifest"):
        selfsup.load(tmp_path)
    from selfsup.engine.init import locate

    with pytest.raises(ValueError, match="library-format export"):
        locate(tmp_path, "encoder")
