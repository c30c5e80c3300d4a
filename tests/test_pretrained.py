"""Pretrained weights (selfsup.lib.pretrained): spec parsing, resolution in the libraries' caches
(offline, the layouts written as the libraries write them), opt-in downloads, strict loading and
its report, `selfsup fetch`, and the run's pretrained.json."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from functools import partial

import pytest
import torch
from conftest import cli
from pydantic import ValidationError
from torch import nn

from selfsup.lib import pretrained as P
from selfsup.options import PretrainedOptions
from selfsup.testing.hub import hub_cache_repo, torch_hub_file


@pytest.fixture
def caches(selfsup_weight_caches):
    """Empty Hugging Face (``<tmp>/hf``) and torch hub (``<tmp>/torch``) caches; downloads off."""
    return selfsup_weight_caches


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))


# ----------------------------------------------------------------------------------- specs


@pytest.mark.parametrize("text, kind, name, revision", [
    ("hf:org/name", "hf", "org/name", None),
    ("hf:gpt2", "hf", "gpt2", None),
    ("hf:org/name@v1.0", "hf", "org/name", "v1.0"),
    ("hf:org/name@" + "a" * 40, "hf", "org/name", "a" * 40),
    ("timm:convnext_tiny.fb_in1k", "timm", "convnext_tiny.fb_in1k", None),
    ("torchvision:ResNet18_Weights.IMAGENET1K_V1", "torchvision", "ResNet18_Weights.IMAGENET1K_V1", None),
    ("torchaudio:HUBERT_BASE", "torchaudio", "HUBERT_BASE", None),
    ("weights/model.safetensors", "path", "weights/model.safetensors", None),
    ("path:hf:odd-folder-name", "path", "hf:odd-folder-name", None),
])
def test_specs_parse(text, kind, name, revision):
    spec = P.parse_pretrained(text)
    assert (spec.kind, spec.name, spec.revision) == (kind, name, revision)
    if kind != "path" or not text.startswith("path:"):
        assert str(spec) == text


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("https://example.org/model.bin", "URLs are not fetched"),
    ("hf:org/name/extra", "expected hf:org/name"),
    ("hf:org/name@bad rev", "is not a revision"),
    ("torchaudio:HUBERT_BASE@v1", "only hf: and timm: take a @revision"),
    ("timm:convnext tiny", "is not a timm name"),
])
def test_bad_specs_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        P.parse_pretrained(text)


def test_options_resolve_paths_against_the_recipe_and_keep_hub_forms(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"x")
    context = {"base_dir": tmp_path}
    local = PretrainedOptions.model_validate({"pretrained": "w.safetensors"}, context=context)
    assert local.pretrained == str(tmp_path / "w.safetensors")
    assert PretrainedOptions.model_validate({"pretrained": "hf:org/n@main"}, context=context).pretrained == \
        "hf:org/n@main"
    with pytest.raises(ValidationError, match=r"pretrained\n.*path not found"):
        PretrainedOptions.model_validate({"pretrained": "missing.pt"}, context=context)
    with pytest.raises(ValidationError, match="pretrained_strct"):
        PretrainedOptions.model_validate({"pretrained_strct": False})


def test_downloads_are_opt_in(monkeypatch):
    monkeypatch.delenv(P.DOWNLOAD_ENV, raising=False)
    assert not P.downloads_allowed() and P.downloads_allowed(True)
    for value, allowed in (("1", True), ("true", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(P.DOWNLOAD_ENV, value)
        assert P.downloads_allowed() is allowed


# ------------------------------------------------------------------------------ resolution


def test_hub_snapshot_resolves_offline_with_commit_and_hashes(caches):
    state = _net().state_dict()
    snapshot = hub_cache_repo(caches / "hf", "org/net", {"model.safetensors": state, "config.json": b'{"a": 1}'})
    resolved = P.resolve_pretrained("hf:org/net")
    assert resolved.path == snapshot and resolved.revision == snapshot.name and not resolved.downloaded
    data = (snapshot / "model.safetensors").read_bytes()
    assert resolved.files["model.safetensors"] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert set(resolved.files) == {"model.safetensors", "config.json"}
    record = resolved.record()
    assert record["spec"] == "hf:org/net" and record["revision"] == snapshot.name
    json.dumps(record)  # JSON for pretrained.json
    loaded = P.read_state_dict(resolved.path)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_patterns_narrow_what_a_snapshot_resolves_to(caches):
    """A tokenizer needs no weights: with its patterns only those files are hashed, and none is required."""
    hub_cache_repo(caches / "hf", "org/net", {"model.safetensors": _net().state_dict(), "tokenizer.json": b"{}"})
    resolved = P.resolve_pretrained("hf:org/net", hf_patterns=P.HF_TOKENIZER_PATTERNS)
    assert set(resolved.files) == {"tokenizer.json"}
    assert set(P.resolve_pretrained("hf:org/net").files) == {"model.safetensors", "tokenizer.json"}


def test_revisions_pin_a_snapshot(caches):
    old = hub_cache_repo(caches / "hf", "org/net", {"model.safetensors": _net(0).state_dict()}, revision="v1")
    new = hub_cache_repo(caches / "hf", "org/net", {"model.safetensors": _net(1).state_dict()})
    assert old != new
    assert P.resolve_pretrained("hf:org/net@v1").path == old
    assert P.resolve_pretrained(f"hf:org/net@{old.name}").path == old
    assert P.resolve_pretrained("hf:org/net").path == new
    with pytest.raises(P.WeightsNotCached, match="org/net@v2 is not in the Hugging Face cache.*selfsup fetch "
                                                 "hf:org/net@v2"):
        P.resolve_pretrained("hf:org/net@v2")


def test_not_cached_says_how_to_fetch_once(caches):
    with pytest.raises(P.WeightsNotCached) as err:
        P.resolve_pretrained("hf:org/absent")
    text = str(err.value)
    assert "org/absent is not in the Hugging Face cache" in text and str(caches / "hf") in text
    assert "selfsup fetch hf:org/absent" in text and P.DOWNLOAD_ENV in text and "pretrained_download" in text


def test_a_repository_of_pytorch_pickles_is_read_without_running_code(caches):
    torch.save(_net().state_dict(), caches / "w.bin")
    hub_cache_repo(caches / "hf", "org/old", {"pytorch_model.bin": caches / "w.bin", "config.json": b"{}"})
    resolved = P.resolve_pretrained("hf:org/old")
    assert "pytorch_model.bin" in resolved.files
    assert set(P.read_state_dict(resolved.path)) == set(_net().state_dict())
    hub_cache_repo(caches / "hf", "org/empty", {"config.json": b"{}"})
    with pytest.raises(P.WeightsNotCached, match="holds no weights file"):
        P.resolve_pretrained("hf:org/empty")


def test_torchaudio_bundles_resolve_in_torch_hubs_cache(caches):
    pytest.importorskip("torchaudio")
    from torchaudio import pipelines

    with pytest.raises(P.WeightsNotCached, match="hubert_fairseq_base_ls960.pth is not in torch hub's cache"):
        P.resolve_pretrained("torchaudio:HUBERT_BASE")
    file = torch_hub_file(P.TORCHAUDIO_BASE_URL + pipelines.HUBERT_BASE._path, {"w": torch.ones(2)})
    resolved = P.resolve_pretrained("torchaudio:HUBERT_BASE")
    assert resolved.path == file and file.parent == caches / "torch" / "hub" / "checkpoints"
    assert resolved.details["params"]["encoder_embed_dim"] == 768 and resolved.details["sample_rate"] == 16000
    with pytest.raises(ValueError, match="no model bundle 'HUBERT_BAS'; did you mean HUBERT_BASE"):
        P.resolve_pretrained("torchaudio:HUBERT_BAS")


def test_torchvision_weights_resolve_by_enum_or_model_name(caches):
    models = pytest.importorskip("torchvision.models")
    url = models.ResNet18_Weights.IMAGENET1K_V1.url
    file = torch_hub_file(url, {"w": torch.ones(2)})
    for text in ("torchvision:ResNet18_Weights.IMAGENET1K_V1", "torchvision:resnet18.IMAGENET1K_V1"):
        resolved = P.resolve_pretrained(text)
        assert resolved.path == file and resolved.details["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    with pytest.raises(ValueError, match="torchvision has no weights"):
        P.resolve_pretrained("torchvision:resnet18.NOPE")


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def file_server(tmp_path):
    """A web server on 127.0.0.1 serving tmp_path/served."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_allowed_downloads_fill_the_cache_once_then_load_offline(caches, file_server, monkeypatch):
    pytest.importorskip("torchaudio")
    from torchaudio import pipelines

    root, url = file_server
    torch.save({"w": torch.arange(3.0)}, root / pipelines.HUBERT_BASE._path)
    monkeypatch.setattr(P, "TORCHAUDIO_BASE_URL", url)
    with pytest.raises(P.WeightsNotCached):
        P.resolve_pretrained("torchaudio:HUBERT_BASE")
    fetched = P.resolve_pretrained("torchaudio:HUBERT_BASE", download=True)
    assert fetched.downloaded and fetched.path.is_file()
    (root / pipelines.HUBERT_BASE._path).unlink()  # the server no longer has it: the cache is enough
    again = P.resolve_pretrained("torchaudio:HUBERT_BASE")
    assert not again.downloaded and again.files == fetched.files
    assert torch.equal(P.read_state_dict(again.path)["w"], torch.arange(3.0))


# -------------------------------------------------------------------------------- loading


def test_strict_loading_reports_and_refuses_what_does_not_fit():
    source = _net(1).state_dict()
    target = _net(0)
    report = P.load_state(target, source)
    assert len(report.matched) == 6 and not (report.missing or report.unexpected or report.mismatched)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.items())

    extra = {**source, "head.weight": torch.zeros(2)}
    with pytest.raises(P.PretrainedMismatch, match="1 keys the backbone does not have: head.weight"):
        P.load_state(_net(), extra)
    wrong = {**source, "2.weight": torch.zeros(5, 8)}
    with pytest.raises(P.PretrainedMismatch, match=r"2.weight \[5, 8\] vs \[3, 8\]"):
        P.load_state(_net(), wrong)
    partial_state = {k: v for k, v in source.items() if not k.startswith("2.")}
    with pytest.raises(P.PretrainedMismatch, match="2 backbone keys missing from it: 2.weight, 2.bias"):
        P.load_state(_net(), partial_state)
    # a head the backbone adds on top is optional: initialised and reported, not an error
    report = P.load_state(_net(), partial_state, optional=("2.",))
    assert report.missing == ["2.weight", "2.bias"] and "2 missing (initialised)" in report.summary()


def test_non_strict_loading_takes_what_matches_and_reports_the_rest():
    source = _net(1).state_dict()
    state = {**source, "2.weight": torch.zeros(5, 8), "head.bias": torch.zeros(1)}
    target = _net(0)
    before = target.state_dict()["2.weight"].clone()
    report = P.load_state(target, state, strict=False)
    assert report.mismatched == [("2.weight", [5, 8], [3, 8])] and report.unexpected == ["head.bias"]
    assert torch.equal(target.state_dict()["2.weight"], before)
    assert torch.equal(target.state_dict()["0.weight"], source["0.weight"])
    assert report.as_dict()["matched"] == 5
    assert "1 shape-mismatched (initialised): 2.weight" in report.summary()


def test_checkpoint_dicts_are_unwrapped_and_pickles_need_no_code(tmp_path):
    state = _net().state_dict()
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "c.pt")
    assert set(P.read_state_dict(tmp_path / "c.pt")) == set(state)
    torch.save({"x": nn.Linear(2, 2)}, tmp_path / "module.pt")  # a pickled module: refused by weights_only
    with pytest.raises(Exception, match="[Ww]eights only"):
        P.read_state_dict(tmp_path / "module.pt")
    (tmp_path / "two").mkdir()
    for name in ("a.pt", "b.pt"):
        torch.save(state, tmp_path / "two" / name)
    with pytest.raises(ValueError, match="several weights files"):
        P.read_state_dict(tmp_path / "two")


# ---------------------------------------------------------------------------- run and CLI


def test_a_run_records_its_pretrained_weights(caches, tmp_path):
    """The core's `mlp` backbone from an hf: repository; the run writes pretrained.json with the
    file's sha256 and starts from those weights (its step-0 weights are the published ones)."""
    from selfsup.builtins.mlp import MLP
    from selfsup.builtins.options import MLPOptions

    source = MLP(MLPOptions(in_dim=8, out_dim=16))
    snapshot = hub_cache_repo(caches / "hf", "someone/mlp", {"model.safetensors": source.state_dict()})
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
output_dir = "{tmp_path / 'run'}"
[data.d]
type = "blobs"
options = {{ n = 256, dim = 8 }}
[augmentations.views]
type = "noisy_views"
[backbones.b]
type = "mlp"
options = {{ in_dim = 8, out_dim = 16, pretrained = "hf:someone/mlp" }}
[tasks.t]
type = "toy_infonce"
data = "d"
augment = ["views"]
backbone = "b"
[train]
batch_size = 32
max_steps = 2
lr = 1e-9
weight_decay = 0.0
tensorboard = false
""")
    env = {"HF_HUB_CACHE": str(caches / "hf")}
    done = cli("train", str(recipe), "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    assert "backbones.b: pretrained hf:someone/mlp (6 tensors loaded)" in done.stdout
    record = json.loads((tmp_path / "run" / "pretrained.json").read_text())["backbones"]["b"]
    data = (snapshot / "model.safetensors").read_bytes()
    assert record["files"]["model.safetensors"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["revision"] == snapshot.name and record["load"]["matched"] == 6
    from selfsup.engine import checkpoint as ckpt

    weights = ckpt.read_weights(ckpt.list_checkpoints(tmp_path / "run")[-1])
    # lr 1e-9: two Adam steps move a weight by about 2e-9
    assert torch.allclose(weights["backbones.b.net.0.weight"], source.state_dict()["net.0.weight"], atol=1e-6)
    assert not torch.allclose(MLP(MLPOptions(in_dim=8, out_dim=16)).net[0].weight, source.net[0].weight, atol=1e-2)

    from selfsup.api import open_run
    from selfsup.report.run_report import starting_weights

    assert open_run(tmp_path / "run").pretrained["b"]["spec"] == "hf:someone/mlp"
    table = "".join(starting_weights(json.loads((tmp_path / "run" / "pretrained.json").read_text())))
    assert "hf:someone/mlp" in table and snapshot.name in table and "6 tensors loaded" in table

    # evaluating, resuming or serving the run reads its checkpoint, not the pretrained weights again
    import shutil

    shutil.rmtree(caches / "hf")
    exported = cli("export", str(tmp_path / "run"), "--format", "selfsup", "--out", str(tmp_path / "exp"), env=env)
    assert exported.returncode == 0, exported.stderr
    from selfsup.api import load

    assert load(tmp_path / "exp").embed({"input": torch.zeros(2, 8)}).shape == (2, 16)
    resumed = cli("train", str(recipe), "--no-progress", "--resume", "--set", "train.max_steps=3", env=env)
    assert resumed.returncode == 0, resumed.stderr
    hub_cache_repo(caches / "hf", "someone/mlp", {"model.safetensors": source.state_dict()})

    # another architecture is refused, naming the recipe field
    bad = recipe.read_text().replace("out_dim = 16", "out_dim = 32").replace(str(tmp_path / "run"),
                                                                              str(tmp_path / "run2"))
    recipe.write_text(bad)
    refused = cli("train", str(recipe), "--no-progress", env=env)
    assert refused.returncode != 0
    assert "do not fit this backbone" in refused.stderr and "pretrained_strict = false" in refused.stderr


def test_fetch_command(caches):
    snapshot = hub_cache_repo(caches / "hf", "org/net", {"model.safetensors": _net().state_dict()})
    env = {"HF_HUB_CACHE": str(caches / "hf"), "HF_HUB_OFFLINE": "1"}
    done = cli("fetch", "hf:org/net", "--json", env=env)
    assert done.returncode == 0, done.stderr
    [record] = json.loads(done.stdout)
    assert record["path"] == str(snapshot) and record["revision"] == snapshot.name
    missing = cli("fetch", "hf:org/absent", env=env)
    assert missing.returncode != 0 and "could not fetch org/absent" in missing.stderr
    assert cli("fetch", env=env).returncode != 0
    recipe = caches / "r.toml"
    recipe.write_text('[data.d]\ntype = "blobs"\noptions = { n = 64, dim = 4 }\n'
                      '[augmentations.v]\ntype = "noisy_views"\n'
                      '[backbones.b]\ntype = "mlp"\noptions = { in_dim = 4, pretrained = "hf:org/net" }\n'
                      '[tasks.t]\ntype = "toy_infonce"\ndata = "d"\naugment = ["v"]\nbackbone = "b"\n'
                      '[train]\nmax_steps = 1\n')
    from_recipe = cli("fetch", "--recipe", str(recipe), "--json", env=env)
    assert from_recipe.returncode == 0, from_recipe.stderr
    assert [r["spec"] for r in json.loads(from_recipe.stdout)] == ["hf:org/net"]
