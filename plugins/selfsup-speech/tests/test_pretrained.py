"""Pretrained weights for the speech backbones (issue 21), through the real loading paths, offline:
torchaudio bundles whose files the tests put in torch hub's cache, transformers HuBERT / wav2vec 2.0
checkpoints written into the Hugging Face cache layout, selfsup's own exports; strictness, the
not-cached message, HuBERT continued from a pretrained backbone and ``selfsup train`` writing
``pretrained.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import speech_models_support as support
import torch
import torchaudio
from pydantic import ValidationError
from speech_models_support import synth_cache  # noqa: F401  (fixture)

from selfsup.lib.pretrained import TORCHAUDIO_BASE_URL, PretrainedMismatch, WeightsNotCached
from selfsup.testing.hub import hub_cache_repo, torch_hub_file
from selfsup_speech.backbones.options import Wav2Vec2EncoderOptions
from selfsup_speech.backbones.wav2vec2 import Wav2Vec2Encoder, normalize_waveforms
from selfsup_speech.data.collate import pad_audio

#: torchaudio.models.wav2vec2_model arguments of a tiny model (20 ms frames, as the plugin's encoders).
TINY_PARAMS = {
    "extractor_mode": "group_norm", "extractor_conv_layer_config": [(16, 10, 5), (16, 8, 4), (16, 4, 4), (16, 4, 2),
                                                                   (16, 4, 2)],
    "extractor_conv_bias": False, "encoder_embed_dim": 32, "encoder_projection_dropout": 0.1,
    "encoder_pos_conv_kernel": 8, "encoder_pos_conv_groups": 4, "encoder_num_layers": 2, "encoder_num_heads": 2,
    "encoder_attention_dropout": 0.1, "encoder_ff_interm_features": 64, "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.1, "encoder_layer_norm_first": False, "encoder_layer_drop": 0.05, "aux_num_out": None,
}
#: The same as a transformers config (HubertConfig / Wav2Vec2Config keyword arguments).
TINY_HF = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
           "conv_dim": (16,) * 5, "conv_kernel": (10, 8, 4, 4, 4), "conv_stride": (5, 4, 4, 2, 2),
           "num_conv_pos_embeddings": 8, "num_conv_pos_embedding_groups": 4}


@pytest.fixture
def caches(selfsup_weight_caches):
    """Empty Hugging Face (``<tmp>/hf``) and torch hub (``<tmp>/torch``) caches; downloads off."""
    return selfsup_weight_caches


def clips(*lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"audio": 0.3 * torch.randn(n, generator=g)} for n in lengths]


def build(options):
    return support.build("backbone", "wav2vec2_encoder", options).eval()


def legacy_names(state):
    """Save the positional conv as fairseq-era files (torchaudio's bundles) do: weight_g / weight_v."""
    out = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        out[key.replace("parametrizations.weight.original1", "weight_v")] = value
    return out


def tiny_bundle(monkeypatch, name, params=None, *, normalize=False, model_type="Wav2Vec2", asr_classes=None):
    """A torchaudio bundle ``torchaudio:<name>`` whose weights file sits in torch hub's cache."""
    from torchaudio.pipelines import Wav2Vec2ASRBundle, Wav2Vec2Bundle

    params = dict(params or TINY_PARAMS)
    torch.manual_seed(1)
    fields = dict(_path=f"{name.lower()}.pth", _sample_rate=16000, _normalize_waveform=normalize,
                  _model_type=model_type)
    if asr_classes:
        params["aux_num_out"] = asr_classes
        bundle = Wav2Vec2ASRBundle(**fields, _params=params, _labels=tuple("abcdefgh"[: asr_classes - 1]))
        state = torchaudio.models.wav2vec2_model(**{**params, "aux_num_out": asr_classes + 3}).state_dict()
    else:
        bundle = Wav2Vec2Bundle(**fields, _params=params)
        state = torchaudio.models.wav2vec2_model(**params).state_dict()
    monkeypatch.setattr(torchaudio.pipelines, name, bundle, raising=False)
    torch_hub_file(TORCHAUDIO_BASE_URL + bundle._path, legacy_names(state))
    return bundle


# ------------------------------------------------------------------------------ torchaudio bundles


@pytest.mark.parametrize("normalize", [False, True])
def test_torchaudio_bundle_gives_torchaudios_own_features(caches, monkeypatch, normalize):
    params = {**TINY_PARAMS, "encoder_layer_norm_first": normalize, "extractor_mode": "layer_norm"} if normalize \
        else TINY_PARAMS
    bundle = tiny_bundle(monkeypatch, "TINY_W2V", params, normalize=normalize)
    enc = build({"pretrained": "torchaudio:TINY_W2V", "dropout": 0.0})
    reference = bundle.get_model()  # the same cache file, read by torchaudio's own pipeline
    assert enc.normalize_waveform is normalize and enc.options.embed_dim == 32 and enc.options.dropout == 0.0
    assert enc.options.attention_dropout == 0.1  # not set by the user: the bundle's
    audio = 0.3 * torch.randn(1, 12000) + 0.2  # an offset: normalisation shows
    with torch.no_grad():
        ours, _ = enc.frames({"audio": audio})
        theirs, _ = reference(audio)
    assert ours.shape == theirs.shape == (1, 35, 32)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    record = enc.pretrained_record
    assert record["spec"] == "torchaudio:TINY_W2V" and record["details"]["params"]["encoder_embed_dim"] == 32
    assert record["load"]["missing"] == ["mask_embedding"] and not record["load"]["unexpected"]
    assert list(record["files"]) == ["tiny_w2v.pth"] and len(record["files"]["tiny_w2v.pth"]["sha256"]) == 64


def test_waveform_normalisation_ignores_padding():
    a, b = clips(9000, 4000)
    batch = pad_audio([a, b])
    normed = normalize_waveforms(batch["audio"], batch["lengths"])
    alone = torch.nn.functional.layer_norm(b["audio"], b["audio"].shape)  # torchaudio's pipeline on one clip
    torch.testing.assert_close(normed[1, :4000], alone, atol=1e-5, rtol=1e-5)
    assert normed[1, 4000:].abs().max() == 0


def test_asr_bundle_drops_its_ctc_head(caches, monkeypatch):
    bundle = tiny_bundle(monkeypatch, "TINY_ASR", asr_classes=5)
    enc = build({"pretrained": "torchaudio:TINY_ASR"})
    assert any("dropped the ASR (CTC) head aux" in note for note in enc.pretrained_record["load"]["notes"])
    audio = 0.3 * torch.randn(1, 8000)
    with torch.no_grad():
        ours = enc.frames({"audio": audio})[0]
        theirs = bundle.get_model().extract_features(audio)[0][-1]  # post-LN: the last layer is the output
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_wavlm_bundles_are_refused(caches, monkeypatch):
    tiny_bundle(monkeypatch, "TINY_WAVLM", model_type="WavLM")
    with pytest.raises(ValueError, match="WavLM bundle.*WAV2VEC2_BASE, HUBERT_BASE"):
        build({"pretrained": "torchaudio:TINY_WAVLM"})


def test_architecture_comes_from_the_checkpoint():
    with pytest.raises(ValidationError, match=r"sets the architecture from the checkpoint; remove embed_dim, layers"):
        Wav2Vec2EncoderOptions(pretrained="torchaudio:HUBERT_BASE", embed_dim=64, layers=2, dropout=0.0)
    Wav2Vec2EncoderOptions(pretrained="torchaudio:HUBERT_BASE", dropout=0.0, layer_drop=0.0, normalize_waveform=True)


def test_sample_rate_must_match_the_checkpoint(caches, monkeypatch):
    tiny_bundle(monkeypatch, "TINY_W2V")
    with pytest.raises(ValueError, match="sample_rate = 8000.*trained at 16000 Hz"):
        build({"pretrained": "torchaudio:TINY_W2V", "sample_rate": 8000})


def test_not_cached_says_how_to_fetch(caches, monkeypatch):
    from torchaudio.pipelines import Wav2Vec2Bundle

    monkeypatch.setattr(torchaudio.pipelines, "TINY_GONE", Wav2Vec2Bundle("gone.pth", TINY_PARAMS, 16000, False,
                                                                          "Wav2Vec2"), raising=False)
    with pytest.raises(WeightsNotCached, match="selfsup fetch torchaudio:TINY_GONE"):
        build({"pretrained": "torchaudio:TINY_GONE"})
    with pytest.raises(WeightsNotCached, match="selfsup fetch hf:test/absent"):
        build({"pretrained": "hf:test/absent"})


def test_real_base_param_set(caches, monkeypatch):
    """torchaudio's HUBERT_BASE bundle (its real architecture: 95M parameters) with random weights in
    its cache file name: the bundle's arguments build this backbone, and it equals torchaudio's model
    (about 9 s on 2 CPU cores)."""
    from torchaudio.pipelines import HUBERT_BASE

    torch.manual_seed(0)
    state = torchaudio.models.wav2vec2_model(**HUBERT_BASE._params).state_dict()
    torch_hub_file(TORCHAUDIO_BASE_URL + HUBERT_BASE._path, legacy_names(state))
    del state
    enc = build({"pretrained": "torchaudio:HUBERT_BASE"})
    assert enc.options.embed_dim == 768 and enc.options.layers == 12 and enc.options.extractor_mode == "group_norm"
    audio = 0.3 * torch.randn(1, 4000)
    with torch.no_grad():
        ours = enc.frames({"audio": audio})[0]
        theirs = HUBERT_BASE.get_model()(audio)[0]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- transformers checkpoints


def save_hf(tmp_path, cls_name, repo, *, preprocessor=None, drop=(), **config):
    """A tiny transformers model ``save_pretrained`` into the Hub cache as ``hf:<repo>``; returns it (eval)."""
    import transformers
    from safetensors.torch import load_file, save_file

    config_cls = transformers.HubertConfig if "Hubert" in cls_name else transformers.Wav2Vec2Config
    torch.manual_seed(2)
    model = getattr(transformers, cls_name)(config_cls(**{**TINY_HF, **config})).eval()
    folder = tmp_path / f"save-{repo.replace('/', '-')}"
    model.save_pretrained(folder)
    if drop:
        state = load_file(str(folder / "model.safetensors"))
        save_file({k: v for k, v in state.items() if not any(d in k for d in drop)}, str(folder / "model.safetensors"),
                  metadata={"format": "pt"})
    files = {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"}
    if preprocessor is not None:
        files["preprocessor_config.json"] = json.dumps(preprocessor).encode()
    hub_cache_repo(os.environ["HF_HUB_CACHE"], repo, files)
    return model


def test_hf_hubert_gives_the_transformers_model_output(caches):
    hf = save_hf(caches, "HubertModel", "test/tiny-hubert")
    enc = build({"pretrained": "hf:test/tiny-hubert"})
    batch = pad_audio(clips(8000))
    with torch.no_grad():
        ours, _ = enc.frames(batch)
        theirs = hf(batch["audio"]).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    assert torch.equal(enc.mask_embedding.detach(), hf.masked_spec_embed.detach())
    record = enc.pretrained_record
    assert record["kind"] == "hf" and len(record["revision"]) == 40 and record["details"]["model_type"] == "hubert"
    assert not record["load"]["missing"] and not record["load"]["unexpected"] and not enc.normalize_waveform
    assert {"config.json", "model.safetensors"} <= set(record["files"])


def test_hf_wav2vec2_pretraining_checkpoint_drops_heads_and_normalises(caches):
    import transformers

    full = save_hf(caches, "Wav2Vec2ForPreTraining", "test/tiny-w2v2", do_stable_layer_norm=True,
                   feat_extract_norm="layer", preprocessor={"do_normalize": True, "sampling_rate": 16000})
    enc = build({"pretrained": "hf:test/tiny-w2v2"})
    assert enc.normalize_waveform and enc.options.layer_norm_first and enc.options.extractor_mode == "layer_norm"
    assert any("pre-training/CTC heads" in n and "quantizer" in n for n in enc.pretrained_record["load"]["notes"])
    audio = 0.3 * torch.randn(1, 8000) + 0.1
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)
    normed = torch.tensor(extractor(audio[0].numpy(), sampling_rate=16000)["input_values"][0])[None]
    with torch.no_grad():
        ours = enc.frames({"audio": audio})[0]
        theirs = full.wav2vec2(normed).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-3)


def test_hf_strict_errors(caches):
    save_hf(caches, "HubertModel", "test/half-hubert", drop=("encoder.layers.1.",))
    with pytest.raises(PretrainedMismatch, match="encoder.layers.1"):
        build({"pretrained": "hf:test/half-hubert"})
    lenient = build({"pretrained": "hf:test/half-hubert", "pretrained_strict": False})
    assert any("not in the checkpoint" in n for n in lenient.pretrained_record["load"]["notes"])
    hub_cache_repo(os.environ["HF_HUB_CACHE"], "test/tiny-wavlm",
                   {"config.json": json.dumps({"model_type": "wavlm"}).encode(), "model.safetensors": {}})
    with pytest.raises(ValueError, match="'wavlm' checkpoint.*not WavLM"):
        build({"pretrained": "hf:test/tiny-wavlm"})


# ------------------------------------------------------------------------------ selfsup's own weights


def test_local_torchaudio_export_and_state_dict_file(tmp_path, caches):
    torch.manual_seed(3)
    source = Wav2Vec2Encoder(Wav2Vec2EncoderOptions(**support.W2V_SMALL)).eval()
    source.export(tmp_path / "export")
    enc = build({"pretrained": str(tmp_path / "export")})
    batch = pad_audio(clips(8000, 5000))
    with torch.no_grad():
        torch.testing.assert_close(enc.frames(batch)[0], source.frames(batch)[0])
    assert enc.pretrained_record["load"]["missing"] == ["mask_embedding"]
    with pytest.raises(ValidationError, match="remove embed_dim"):
        Wav2Vec2EncoderOptions(pretrained=str(tmp_path / "export"), embed_dim=32)
    torch.save(source.state_dict(), tmp_path / "encoder.pt")  # a file: the architecture is the options'
    same = build({**support.W2V_SMALL, "pretrained": str(tmp_path / "encoder.pt")})
    assert torch.equal(same.mask_embedding, source.mask_embedding) and not same.pretrained_record["load"]["missing"]
    with pytest.raises(PretrainedMismatch, match="shape mismatches"):
        build({**support.W2V_SMALL, "embed_dim": 64, "pretrained": str(tmp_path / "encoder.pt")})
    partial = build({**support.W2V_SMALL, "embed_dim": 64, "pretrained": str(tmp_path / "encoder.pt"),
                     "pretrained_strict": False})
    assert partial.pretrained_record["load"]["mismatched"] and partial.pretrained_record["load"]["matched"] > 0


def test_selfsup_export_in_an_hf_repository(caches):
    from safetensors.torch import save

    torch.manual_seed(4)
    source = Wav2Vec2Encoder(Wav2Vec2EncoderOptions(**support.W2V_SMALL)).eval()
    manifest = {"format": "selfsup-export", "version": 1, "type": "wav2vec2_encoder", "options": support.W2V_SMALL,
                "weights": "backbone.safetensors"}
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    hub_cache_repo(os.environ["HF_HUB_CACHE"], "test/selfsup-w2v", {"selfsup.json": json.dumps(manifest).encode(),
                                                                    "backbone.safetensors": save(state)})
    enc = build({"pretrained": "hf:test/selfsup-w2v"})
    assert all(torch.equal(v, state[k]) for k, v in enc.state_dict().items())
    assert enc.options.embed_dim == 32 and not enc.pretrained_record["load"]["missing"]
    source.export(caches / "export")  # a torchaudio export published as is: config.json + model.pt
    hub_cache_repo(os.environ["HF_HUB_CACHE"], "test/torchaudio-w2v",
                   {name: caches / "export" / name for name in ("config.json", "model.pt", "selfsup.json")})
    exported = build({"pretrained": "hf:test/torchaudio-w2v"})
    assert all(torch.equal(v, state[k]) for k, v in exported.state_dict().items() if k != "mask_embedding")


def test_logmel_encoder_loads_a_state_dict(tmp_path, caches):
    source = support.build("backbone", "logmel_encoder", support.LOGMEL_SMALL).eval()
    torch.save(source.state_dict(), tmp_path / "logmel.pt")
    enc = support.build("backbone", "logmel_encoder",
                        {**support.LOGMEL_SMALL, "pretrained": str(tmp_path / "logmel.pt")})
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in enc.state_dict().items())
    assert enc.pretrained_record["load"]["matched"] == len(source.state_dict())
    with pytest.raises(PretrainedMismatch):
        support.build("backbone", "logmel_encoder", {**support.LOGMEL_SMALL, "hidden_dim": 48,
                                                     "pretrained": str(tmp_path / "logmel.pt")})


# ------------------------------------------------------------------------------ HuBERT continuation


@pytest.mark.usefixtures("synth_cache")
def test_hubert_targets_from_the_pretrained_backbones_own_layer(caches):
    from selfsup.components import EpochContext
    from selfsup_speech.tasks.hubert import HuBERTTask
    from selfsup_speech.tasks.options import HuBERTOptions

    data = support.build("data_source", *support.SYNTH_TRAIN)
    options = {"clusters": 6, "kmeans_iters": 5, "final_dim": 16, "feature_batch_size": 8, "targets": {"layer": 1}}
    with pytest.raises(ValueError, match="needs pretrained weights"):
        HuBERTTask(HuBERTOptions(**options), build(support.W2V_SMALL), data, 0)
    save_hf(caches, "HubertModel", "test/tiny-hubert")
    backbone = build({"pretrained": "hf:test/tiny-hubert"})
    task = HuBERTTask(HuBERTOptions(**options), backbone, data, 0)
    task.on_epoch_start(EpochContext(epoch=0, seed=0, device=torch.device("cpu"), backbone=backbone, data=data,
                                     augment=[], batch_size=4))
    assert task.targets.numel() == int(task.offsets[-1]) > 0 and (task.cluster_sizes > 0).sum() >= 2
    # the same targets as iteration 2 from an export of the same weights (the existing path), for a
    # backbone with the same frames
    backbone.export(caches / "export")
    exported = {**options, "targets": {"layer": 1, "checkpoint": str(caches / "export")}}
    fresh = build(support.W2V_SMALL)
    other = HuBERTTask(HuBERTOptions(**exported), fresh, data, 0)
    other.on_epoch_start(EpochContext(epoch=0, seed=0, device=torch.device("cpu"), backbone=fresh, data=data,
                                      augment=[], batch_size=4))
    assert torch.equal(task.offsets, other.offsets) and torch.equal(task.targets, other.targets)


@pytest.mark.usefixtures("synth_cache")
def test_selfsup_train_from_hf_weights_writes_pretrained_json(caches):
    save_hf(caches, "HubertModel", "test/tiny-hubert")
    small = json.dumps(support.SYNTH_TRAIN[1]).replace('":', '" =').replace('{"', '{ "')
    recipe = caches / "continue.toml"
    recipe.write_text(f"""
output_dir = "{caches / 'run'}"
seed = 0
[data.train]
type = "synth_speech"
options = {small}
[backbones.encoder]
type = "wav2vec2_encoder"
options = {{ pretrained = "hf:test/tiny-hubert" }}
[tasks.hubert]
type = "hubert"
data = "train"
backbone = "encoder"
[tasks.hubert.options]
targets = {{ layer = 2 }}
clusters = 6
kmeans_iters = 5
final_dim = 16
mask_prob = 0.5
mask_length = 3
[train]
max_steps = 2
batch_size = 4
tensorboard = false
""")
    env = {**os.environ, "SELFSUP_PLUGINS": "speech", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "selfsup", "train", str(recipe), "--no-progress"], cwd=caches, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "backbones.encoder: pretrained hf:test/tiny-hubert" in done.stdout
    saved = json.loads((caches / "run" / "pretrained.json").read_text())["backbones"]["encoder"]
    assert saved["spec"] == "hf:test/tiny-hubert" and saved["details"]["model_type"] == "hubert"
    assert saved["files"]["model.safetensors"]["sha256"] and saved["load"]["matched"] > 0
