"""Speech backbones: conformance, the interface the tasks use (latents, masking hook, layers,
frame counts), padding independence, causality, and the wav2vec2_encoder export round trip."""

from __future__ import annotations

import json

import pytest
import speech_models_support as support
import torch
import torchaudio

import selfsup_speech
from selfsup.testing import BackboneConformance
from selfsup_speech.backbones.logmel import LogMelEncoder
from selfsup_speech.backbones.options import LogMelEncoderOptions, Wav2Vec2EncoderOptions
from selfsup_speech.backbones.wav2vec2 import Wav2Vec2Encoder, load_export
from selfsup_speech.data.collate import pad_audio


def clips(*lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"audio": 0.3 * torch.randn(n, generator=g), "label": 0} for n in lengths]


def w2v(**options):
    torch.manual_seed(0)
    return Wav2Vec2Encoder(Wav2Vec2EncoderOptions(**{**support.W2V_SMALL, **options})).eval()


def logmel(**options):
    torch.manual_seed(0)
    return LogMelEncoder(LogMelEncoderOptions(**{**support.LOGMEL_SMALL, **options})).eval()


#: The pretrained options change the starting weights only when set: test_pretrained.py loads them.
PRETRAINED_INERT = {"pretrained": "starting weights: test_pretrained.py loads torchaudio, hf and local checkpoints",
                    "pretrained_strict": "only with pretrained (test_pretrained.py)",
                    "pretrained_download": "only with pretrained, and tests never download"}


class TestWav2Vec2EncoderConformance(BackboneConformance):
    plugins = [selfsup_speech, support]
    backbone = ("wav2vec2_encoder", support.W2V_SMALL)
    data = support.TONES
    bad_options = [{"embed_dim": 30, "heads": 4}, {"conv_layers": [[32, 0, 5]]}, {"conv_layers": []},
                   {"pos_conv_groups": 7}, {"dropout": 1.0}, {"extractor_mode": "batch_norm"}]
    inert_options = {"sample_rate": "declares the input's rate (frame_rate, timestamps); the conv stack reads samples "
                                    "whatever their rate", **PRETRAINED_INERT}


class TestLogMelLSTMConformance(BackboneConformance):
    plugins = [selfsup_speech, support]
    backbone = ("logmel_encoder", support.LOGMEL_SMALL)
    data = support.TONES
    bad_options = [{"kind": "gru"}, {"n_mels": 4}, {"hop_ms": 30, "win_ms": 25},
                   {"kind": "transformer", "hidden_dim": 30, "heads": 4}]
    option_variants = {"sample_rate": 22050}  # 16001 Hz gives the same window, hop and mel bands (f_max = rate // 2)
    inert_options = {"heads": "transformer only (TestLogMelTransformerConformance varies it)",
                     "ffn_dim": "transformer only (TestLogMelTransformerConformance varies it)", **PRETRAINED_INERT}


class TestLogMelTransformerConformance(BackboneConformance):
    plugins = [selfsup_speech, support]
    backbone = ("logmel_encoder", {**support.LOGMEL_SMALL, "kind": "transformer"})
    data = support.TONES
    option_variants = {"sample_rate": 22050}
    inert_options = {"residual": "LSTM only (TestLogMelLSTMConformance varies it)", **PRETRAINED_INERT}


def test_wav2vec2_frames_rate_and_interface():
    enc = w2v()
    assert enc.frame_rate == 50.0 and enc.receptive_field == 825 and enc.output_dim == 32 and enc.latent_dim == 32
    batch = pad_audio(clips(16000, 9000, 3000))
    z, padding = enc.latents(batch)
    assert z.shape == (3, 48, 32) and padding.shape == (3, 48)
    assert (~padding).sum(1).tolist() == enc.num_frames(batch["lengths"]).tolist() == [48, 26, 7]
    assert torch.equal(padding, enc.padding_mask(batch))
    features, padding2 = enc.frames(batch)
    assert features.shape == (3, 48, 32) and torch.equal(padding, padding2)
    layers = enc.layers(batch)
    assert len(layers) == 3 and all(h.shape == (3, 48, 32) for h in layers)
    assert enc.embed(batch).shape == (3, 32)
    tiny = enc.embed(pad_audio(clips(100)))  # shorter than the receptive field: one frame
    assert tiny.shape == (1, 32) and torch.isfinite(tiny).all()


def test_masking_hook_replaces_exactly_the_masked_frames_input():
    enc = w2v(layers=1)
    batch = pad_audio(clips(8000, 8000))
    z, padding = enc.latents(batch)
    mask = torch.zeros_like(padding)
    mask[0, 3:6] = True
    plain = enc.contextualize(z, padding, all_layers=True)
    masked = enc.contextualize(z, padding, mask, all_layers=True)
    assert torch.allclose(masked[0][0, 3:6], enc.mask_embedding.expand(3, -1))  # transformer input
    assert torch.equal(masked[0][1], plain[0][1]) and torch.equal(masked[0][0, :3], plain[0][0, :3])
    assert not torch.allclose(masked[-1][0], plain[-1][0])  # attention spreads the change
    assert torch.allclose(masked[-1][1], plain[-1][1])  # the other utterance is untouched


@pytest.mark.parametrize("make", [w2v, logmel, lambda: logmel(kind="transformer")])
def test_a_clip_embeds_the_same_alone_and_padded_in_a_batch(make):
    enc = make()
    batch = clips(16000, 6000, seed=1)
    together = enc.embed(pad_audio(batch))
    alone = enc.embed(pad_audio(batch[1:]))
    torch.testing.assert_close(together[1], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_causal_logmel_encoder_ignores_the_future(kind):
    causal = logmel(kind=kind, normalize="none")
    bidirectional = logmel(kind=kind, normalize="none", causal=False)
    a = clips(16000, seed=2)[0]["audio"]
    b = a.clone()
    b[8000:] += 0.3  # frames centred before 7,700 samples (window 25 ms) see none of it
    for enc, same in ((causal, True), (bidirectional, False)):
        fa, _ = enc.frames({"audio": a[None]})
        fb, _ = enc.frames({"audio": b[None]})
        assert torch.equal(fa[0, :47], fb[0, :47]) == same
        assert not torch.equal(fa[0, 60:], fb[0, 60:])


def test_logmel_frames_and_latents():
    enc = logmel()
    assert enc.frame_rate == 100.0 and enc.frame_offset == 0.0
    batch = pad_audio(clips(16000, 4000))
    mel, padding = enc.logmel(batch)
    assert mel.shape == (2, 101, 20) and (~padding).sum(1).tolist() == [101, 26]
    assert (mel[1, 26:] == 0).all()
    valid = mel[0]
    torch.testing.assert_close(valid.mean(0), torch.zeros(20), atol=1e-4, rtol=0)  # utterance-normalised
    assert len(enc.layers(batch)) == 2


def test_export_round_trips_through_torchaudio(tmp_path):
    enc = w2v()
    with torch.no_grad():  # a trained-looking mask embedding must not leak into the export
        enc.mask_embedding.fill_(3.0)
    assert enc.export_formats() == {"torchaudio": enc.export}  # selfsup export --format torchaudio
    enc.export(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    model = torchaudio.models.wav2vec2_model(**config)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    model.eval()
    batch = pad_audio(clips(16000, 7000, 2500, seed=3))
    with torch.no_grad():
        ours, padding = enc.frames(batch)
        theirs, lengths = model(batch["audio"], batch["lengths"])
        assert lengths.tolist() == (~padding).sum(1).tolist()
        assert torch.equal(ours, theirs)
        layers, _ = model.extract_features(batch["audio"], batch["lengths"])
        assert all(torch.equal(a, b) for a, b in zip(enc.layers(batch)[1:], layers))
        again = load_export(tmp_path).eval()
        assert torch.equal(again.frames(batch)[0], ours)
    assert json.loads((tmp_path / "selfsup.json").read_text())["frame_rate"] == 50.0


@pytest.mark.parametrize("make", [w2v, logmel])
def test_backbones_save_with_safetensors(make, tmp_path):
    from safetensors.torch import load_model, save_model

    enc = make()
    save_model(enc, str(tmp_path / "model.safetensors"))  # what checkpoints do
    other = make()
    load_model(other, str(tmp_path / "model.safetensors"))


def test_logmel_frontend_is_published_by_name_and_matches_the_encoders_frames():
    """``logmel_frontend`` (what other plugins' audio backbones build by name instead of importing
    this plugin) gives the log-mel frames logmel_encoder computes, and embeds their mean."""
    from selfsup.components import BuildContext

    settings = {"n_mels": 16, "hop_ms": 20.0, "win_ms": 25.0, "normalize": "utterance"}
    frontend = BuildContext(name="front").build("backbones", "logmel_frontend", settings)
    assert isinstance(frontend, torch.nn.Module) and not list(frontend.parameters())
    encoder = logmel(**settings)
    batch = pad_audio(clips(8000, 5000))
    frames, padding = frontend(batch)
    expected, expected_padding = encoder.latents(batch)
    assert torch.equal(frames, expected) and torch.equal(padding, expected_padding)
    assert torch.equal(frontend.padding_mask(batch), padding)
    assert frontend.output_dim == 16 and frontend.frame_rate == encoder.frame_rate == 50.0
    valid = (~padding).float().unsqueeze(-1)
    torch.testing.assert_close(frontend.embed(batch), (frames * valid).sum(1) / valid.sum(1))
    with pytest.raises(ValueError, match="hop_ms = 30.0 exceeds win_ms"):
        BuildContext(name="front").build("backbones", "logmel_frontend", {"hop_ms": 30.0})
