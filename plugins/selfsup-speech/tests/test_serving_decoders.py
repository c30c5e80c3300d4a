"""Serving decoders of the speech sources: uploaded audio bytes -> the sample the source yields for
such a file (same decoding, mono mix, resampling; synth_speech: same trimming and normalisation),
truncation at the source's maximum duration, and BadInput for every kind of bad upload."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile
import torch

from selfsup.components import BadInput, BuildContext, Decoder
from selfsup.plugins import get_plugin_manager
from selfsup.registry import lazy_target
from selfsup_speech.data.serving import DEFAULT_MAX_SECONDS, AudioDecoder

SYNTH = {"words": ["yes", "no"], "voices": ["en-us+m1", "en+f2", "en-029+m3"], "utterances_per_pair": 1,
         "split": "all", "workers": 1}


@pytest.fixture(scope="module", autouse=True)
def speech_cache(tmp_path_factory):
    """Synthesized sets go to a fresh cache for this module (never the user's ~/.cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SELFSUP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def _tone(seconds, rate, channels=1, freq=440.0):
    t = np.arange(int(round(seconds * rate))) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * np.sin(2 * np.pi * 3 * freq * t)
    frames = np.stack([wave * (0.5 + 0.5 * c) for c in range(channels)], axis=1)  # [T, C], channels differ
    return frames.astype(np.float32)


def _wav_bytes(frames, rate, subtype="FLOAT", format="WAV"):
    buffer = io.BytesIO()
    soundfile.write(buffer, frames, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def _source_and_decoder(tmp_path, name, options):
    ctx = BuildContext(name="x", base_dir=tmp_path)
    return ctx.build("data", name, options), ctx.decoder(name, options)


def _bad(decoder, raw, truncate=True):
    with pytest.raises(BadInput) as info:
        decoder(raw, truncate=truncate)
    return info.value


# ------------------------------------------------------------------------------ registration


@pytest.mark.parametrize("name,target", [("synth_speech", "synth_decoder"), ("audio_folder", "folder_decoder"),
                                         ("audio_manifest", "manifest_decoder")])
def test_every_source_registers_a_lazy_decoder(name, target):
    component = get_plugin_manager().registry.get("data_source", name)
    assert lazy_target(component.decoder) == f"selfsup_speech.data.serving:{target}"


# ------------------------------------------------------------------------------ audio_folder


@pytest.fixture
def folder(tmp_path):
    """Files at other rates, in stereo and three formats, in two label folders."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    soundfile.write(tmp_path / "a" / "stereo44k.wav", _tone(0.5, 44100, channels=2), 44100, subtype="PCM_16")
    soundfile.write(tmp_path / "a" / "mono22k.flac", _tone(0.3, 22050, freq=300), 22050)
    soundfile.write(tmp_path / "b" / "float8k.wav", _tone(0.4, 8000, freq=200), 8000, subtype="FLOAT")
    soundfile.write(tmp_path / "b" / "stereo48k.ogg", _tone(0.6, 48000, channels=2, freq=500), 48000)
    soundfile.write(tmp_path / "b" / "same16k.wav", _tone(0.2, 16000), 16000, subtype="PCM_24")
    return tmp_path


def test_folder_decoder_gives_the_source_sample_of_each_file(folder):
    options = {"root": str(folder), "sample_rate": 16000}
    source, decoder = _source_and_decoder(folder, "audio_folder", options)
    assert isinstance(decoder, Decoder) and decoder.fields == {"audio": "audio"}
    assert len(source) == 5
    decoded = []
    for i, path in enumerate(source.files):
        sample, stats = decoder({"audio": path.read_bytes()})
        expected = source[i]
        assert set(sample) == {"audio"} and sample["audio"].dtype == torch.float32 and sample["audio"].dim() == 1
        torch.testing.assert_close(sample["audio"], expected["audio"], rtol=0, atol=0)
        info = soundfile.info(str(path))
        assert stats == {"seconds": pytest.approx(info.frames / info.samplerate), "sample_rate": info.samplerate,
                         "channels": info.channels, "truncated": 0.0}
        decoded.append(sample)
    batch, reference = source.collate(decoded), source.collate([source[i] for i in range(len(source))])
    torch.testing.assert_close(batch["audio"], reference["audio"], rtol=0, atol=0)
    assert torch.equal(batch["lengths"], reference["lengths"]) and "label" not in batch


def test_folder_decoder_accepts_bytearray_and_memoryview(folder):
    _, decoder = _source_and_decoder(folder, "audio_folder", {"root": str(folder)})
    data = (folder / "a" / "mono22k.flac").read_bytes()
    expected, _ = decoder({"audio": data})
    for raw in (bytearray(data), memoryview(data)):
        torch.testing.assert_close(decoder({"audio": raw})[0]["audio"], expected["audio"], rtol=0, atol=0)


def test_folder_decoder_default_limit_truncates_or_refuses(tmp_path):
    (tmp_path / "clip.wav").write_bytes(_wav_bytes(_tone(0.1, 8000), 8000))
    _, decoder = _source_and_decoder(tmp_path, "audio_folder", {"root": str(tmp_path), "sample_rate": 8000})
    assert decoder.max_seconds == DEFAULT_MAX_SECONDS == 60.0
    long = _tone(61.5, 8000)
    sample, stats = decoder({"audio": _wav_bytes(long, 8000)})
    assert sample["audio"].shape == (60 * 8000,) and stats["truncated"] == 1.0
    assert stats["seconds"] == pytest.approx(61.5)
    torch.testing.assert_close(sample["audio"], torch.from_numpy(long[: 60 * 8000, 0]), rtol=0, atol=0)
    error = _bad(decoder, {"audio": _wav_bytes(long, 8000)}, truncate=False)
    assert (error.field, error.status) == ("audio", 413) and "61.50 s, at most 60 s" in error.message
    exact = _tone(60.0, 8000)  # exactly the limit: neither cut nor refused
    sample, stats = decoder({"audio": _wav_bytes(exact, 8000)}, truncate=False)
    assert sample["audio"].shape == (60 * 8000,) and stats["truncated"] == 0.0


def test_decoder_keyword_limit():
    decoder = AudioDecoder(16000, max_seconds=0.5)
    sample, stats = decoder({"audio": _wav_bytes(_tone(0.75, 16000), 16000)})
    assert sample["audio"].numel() == 8000 and stats["truncated"] == 1.0
    with pytest.raises(ValueError, match="max_seconds"):
        AudioDecoder(16000, max_seconds=0)


# ------------------------------------------------------------------------------ audio_manifest


def test_manifest_decoder_cuts_at_max_seconds_like_a_shorter_file(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    long = _tone(2.0, 22050, channels=2)
    soundfile.write(clips / "long.wav", long, 22050, subtype="FLOAT")
    soundfile.write(clips / "first_second.wav", long[:22050], 22050, subtype="FLOAT")
    (tmp_path / "train.tsv").write_text("clips\nfirst_second.wav\t16000\n")
    options = {"manifest": "train.tsv", "max_seconds": 1.0, "sample_rate": 16000}
    source, decoder = _source_and_decoder(tmp_path, "audio_manifest", options)
    assert decoder.max_seconds == 1.0 and decoder.sample_rate == 16000
    sample, stats = decoder({"audio": (clips / "long.wav").read_bytes()})
    torch.testing.assert_close(sample["audio"], source[0]["audio"], rtol=0, atol=0)
    assert stats == {"seconds": 2.0, "sample_rate": 22050.0, "channels": 2.0, "truncated": 1.0}
    error = _bad(decoder, {"audio": (clips / "long.wav").read_bytes()}, truncate=False)
    assert (error.field, error.status) == ("audio", 413) and error.message == "2.00 s, at most 1 s"
    sample, stats = decoder({"audio": (clips / "first_second.wav").read_bytes()}, truncate=False)
    torch.testing.assert_close(sample["audio"], source[0]["audio"], rtol=0, atol=0)
    assert stats["truncated"] == 0.0


def test_manifest_decoder_reads_no_manifest(tmp_path):
    (tmp_path / "broken.tsv").write_text("")  # the source cannot be built from it; the decoder never opens it
    ctx = BuildContext(name="x", base_dir=tmp_path)
    with pytest.raises(ValueError, match="empty manifest"):
        ctx.build("data", "audio_manifest", {"manifest": "broken.tsv"})
    decoder = ctx.decoder("audio_manifest", {"manifest": "broken.tsv", "sample_rate": 8000})
    assert decoder.max_seconds == DEFAULT_MAX_SECONDS
    assert decoder({"audio": _wav_bytes(_tone(0.2, 16000), 16000)})[0]["audio"].shape == (1600,)


# ------------------------------------------------------------------------------ bad inputs


def _nan_wav():
    frames = _tone(0.1, 16000)
    frames[100, 0] = np.nan
    return _wav_bytes(frames, 16000)


def _inf_wav():
    frames = _tone(0.1, 16000, channels=2)
    frames[-1, 1] = np.inf
    return _wav_bytes(frames, 16000)


BAD = {
    "missing": ({}, "missing"),
    "none": ({"audio": None}, "missing"),
    "str": ({"audio": "UklGRiQAAABXQVZF"}, "expected the bytes of an audio file, got str"),
    "list": ({"audio": [1, 2, 3]}, "got list"),
    "empty": ({"audio": b""}, "empty file (0 bytes)"),
    "text": ({"audio": b"not audio\n" * 50}, "cannot decode the audio file: Format not recognised"),
    "damaged header": ({"audio": b"RIFF????WAVE"}, "cannot decode the audio file: "),
    "cut off": ({"audio": _wav_bytes(_tone(0.1, 16000), 16000)[:30]}, "cannot decode the audio file: "),
    "zero frames": ({"audio": _wav_bytes(np.zeros((0, 1), np.float32), 16000)}, "no audio samples (zero frames)"),
    "zero frames pcm": ({"audio": _wav_bytes(np.zeros((0, 2), np.float32), 44100, "PCM_16")}, "no audio samples"),
    "nan": ({"audio": _nan_wav()}, "non-finite samples"),
    "inf": ({"audio": _inf_wav()}, "non-finite samples"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("name", ["audio_folder", "synth_speech"])
def test_bad_inputs_are_refused_with_422_naming_the_field(tmp_path, name, case):
    (tmp_path / "clip.wav").write_bytes(_wav_bytes(_tone(0.1, 16000), 16000))
    options = {"root": str(tmp_path)} if name == "audio_folder" else SYNTH
    decoder = BuildContext(name="x", base_dir=tmp_path).decoder(name, options)
    raw, message = BAD[case]
    for truncate in (True, False):
        error = _bad(decoder, raw, truncate=truncate)
        assert (error.field, error.status) == ("audio", 422) and message in error.message, error.message
        assert len(error.message) < 300 and "BytesIO" not in error.message


def test_bad_input_not_a_mapping():
    error = _bad(AudioDecoder(16000), b"RIFF")
    assert (error.field, error.status) == ("audio", 422)


# ------------------------------------------------------------------------------ synth_speech


@pytest.fixture(scope="module")
def synth_pair():
    ctx = BuildContext(name="x")
    return ctx.build("data", "synth_speech", SYNTH), ctx.decoder("synth_speech", SYNTH)


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_synth_decoder_gives_the_source_sample_of_a_clip(synth_pair, subtype):
    source, decoder = synth_pair
    assert decoder.sample_rate == source.sample_rate == 16000
    for i in range(len(source)):
        expected = source[i]["audio"]
        sample, stats = decoder({"audio": _wav_bytes(expected.numpy(), source.sample_rate, subtype)})
        assert set(sample) == {"audio"}
        # the clip is trimmed and normalised again: equal up to rescaling the 16-bit stored peak
        torch.testing.assert_close(sample["audio"], expected, rtol=0, atol=3e-5)
        assert stats == {"seconds": pytest.approx(expected.numel() / 16000), "sample_rate": 16000.0,
                         "channels": 1.0, "truncated": 0.0}
    samples = [decoder({"audio": _wav_bytes(source[i]["audio"].numpy(), 16000)})[0] for i in range(2)]
    batch = source.collate(samples)
    assert batch["audio"].shape[0] == 2 and batch["lengths"].tolist() == [s["audio"].numel() for s in samples]


def test_synth_decoder_trims_and_normalises_like_the_generated_clips(synth_pair):
    source, decoder = synth_pair
    clip = source[0]["audio"].numpy()
    silence = np.zeros(160 * 20, np.float32)  # 0.2 s, a whole number of 10 ms trimming frames
    quiet = np.concatenate([silence, 0.25 * clip])
    stereo = np.stack([quiet, quiet], axis=1)
    sample, stats = decoder({"audio": _wav_bytes(stereo, 16000)})
    # espeak-ng starts loud, so the stored clip has no margin; here one silent 10 ms frame is kept before it
    assert sample["audio"].numel() == 160 + len(clip) and not sample["audio"][:160].any()
    torch.testing.assert_close(sample["audio"][160:], source[0]["audio"], rtol=0, atol=3e-5)
    sample, _ = decoder({"audio": _wav_bytes(np.stack([0.25 * clip, 0.25 * clip], axis=1), 16000)})
    torch.testing.assert_close(sample["audio"], source[0]["audio"], rtol=0, atol=3e-5)
    assert stats["channels"] == 2.0 and stats["seconds"] == pytest.approx(len(quiet) / 16000)
    assert float(sample["audio"].abs().max()) == pytest.approx(SYNTH.get("peak", 0.9))
    error = _bad(decoder, {"audio": _wav_bytes(np.zeros((1600, 1), np.float32), 16000)})
    assert (error.field, error.status) == ("audio", 422) and "silence" in error.message
    resampled, _ = decoder({"audio": _wav_bytes(_tone(0.5, 44100), 44100)})
    assert abs(resampled.get("audio").numel() - 8000) <= 160 and float(resampled["audio"].abs().max()) == \
        pytest.approx(0.9)


def test_synth_decoder_truncates_before_trimming(synth_pair):
    _, decoder = synth_pair
    long = _tone(61.0, 16000)
    sample, stats = decoder({"audio": _wav_bytes(long, 16000)})
    assert stats["truncated"] == 1.0 and sample["audio"].numel() <= 60 * 16000
    error = _bad(decoder, {"audio": _wav_bytes(long, 16000)}, truncate=False)
    assert (error.field, error.status) == ("audio", 413) and "at most 60 s" in error.message


def test_synth_decoder_synthesizes_and_reads_nothing(tmp_path, monkeypatch):
    from selfsup_speech.data import synthesized
    from selfsup_speech.synth import dataset

    def refuse(*args, **kwargs):
        raise AssertionError("building a decoder must not synthesize or read the set")

    monkeypatch.setattr(dataset, "synthesize_dataset", refuse)
    monkeypatch.setattr(synthesized, "synthesize_dataset", refuse)
    monkeypatch.setattr(dataset, "load_manifest", refuse)
    before = dict(dataset.SYNTHESIZED)
    options = {**SYNTH, "words": ["never", "spoken"], "cache_dir": str(tmp_path / "cache"), "sample_rate": 8000,
               "peak": 0.5}
    start = time.perf_counter()
    decoder = BuildContext(name="x").decoder("synth_speech", options)
    assert time.perf_counter() - start < 5
    assert dataset.SYNTHESIZED == before and not (tmp_path / "cache").exists()
    sample, _ = decoder({"audio": _wav_bytes(_tone(0.3, 16000), 16000)})
    assert sample["audio"].numel() == pytest.approx(2400, abs=160)
    assert float(sample["audio"].abs().max()) == pytest.approx(0.5)
