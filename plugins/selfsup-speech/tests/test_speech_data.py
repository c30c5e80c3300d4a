"""Speech data sources: synth_speech (voice split, cache), audio_folder (corrupt/empty files,
resampling, mono mixing), audio_manifest (fairseq TSV), and pad_audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup.testing import DataSourceConformance
from selfsup_speech.data.collate import pad_audio
from selfsup_speech.synth import dataset as ds

SMALL = {"words": ["yes", "no", "up"],
         "voices": ["en-us+m1", "en+f2", "en-029+m3", "en-gb-scotland+f4", "en-us-nyc+m1"],
         "utterances_per_pair": 2, "val_voices": 1, "test_voices": 1, "workers": 1}


@pytest.fixture(scope="module", autouse=True)
def speech_cache(tmp_path_factory):
    """Synthesized sets go to a fresh cache for this module (never the user's ~/.cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SELFSUP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def build(name, options, base_dir=None):
    comp = get_plugin_manager().registry.get("data_source", name)
    ctx = BuildContext(name=name, base_dir=base_dir) if base_dir else BuildContext(name=name)
    return comp.build(comp.options.model_validate(options, context={"base_dir": ctx.base_dir}), ctx)


def synth(**overrides):
    return build("synth_speech", {**SMALL, **overrides})


# ------------------------------------------------------------------------------ synth_speech


class TestSynthSpeech(DataSourceConformance):
    data = ("synth_speech", {**SMALL, "split": "train"})
    bad_options = [
        {"words": ["yes"]}, {"words": ["yes", "yes"]}, {"split": "dev"}, {"rate_range": [300, 100]},
        {"pitch_range": [10, 120]}, {"voices": ["en-us+f3", "not a voice"]}, {"utterances_per_pair": 0},
        {**SMALL, "val_voices": 3, "test_voices": 2},
        {**SMALL, "val_voices": ["en-us+m1"], "test_voices": ["en-us+m1"]},
        {**SMALL, "test_voices": ["en-us+f3"]}, {"split_by": "utterance", "val_fraction": 0.6, "test_fraction": 0.5},
        {"engine": "festival"},
    ]
    option_variants = {"sample_rate": 8000}  # resampling 22,050 Hz speech to 16,001 Hz is slow
    inert_options = {
        "accents": "the suite gives explicit voices, which replace accents x variants",
        "variants": "the suite gives explicit voices, which replace accents x variants",
        "engine": "auto uses the espeak-ng library, which is installed here: the same as 'library'",
        "val_fraction": "split_by = 'utterance' only (the suite splits by voice)",
        "test_fraction": "split_by = 'utterance' only (the suite splits by voice)",
        "cache_dir": "where the generated set is cached: the samples are the same",
        "workers": "synthesizer processes: only speed changes",
    }


def test_samples_labels_speakers_and_rate():
    train = synth(split="train")
    assert train.sample_rate == 16000 and train.labels == ["yes", "no", "up"] and train.speakers == SMALL["voices"]
    s = train[0]
    assert s["audio"].dtype == torch.float32 and s["audio"].dim() == 1
    assert 0.15 < s["audio"].numel() / 16000 < 1.5 and 0.8 < s["audio"].abs().max() <= 0.91
    assert isinstance(s["label"], int) and isinstance(s["speaker"], int) and "text" not in s
    assert len(train) == 3 * 3 * 2  # 3 words x 3 train voices x 2 utterances
    assert sorted({train[i]["label"] for i in range(len(train))}) == [0, 1, 2]


def test_voice_split_is_disjoint_and_held_out_voices_never_in_train():
    parts = {name: synth(split=name) for name in ("train", "val", "test", "all")}
    voices = {name: set(p.split_voices) for name, p in parts.items()}
    assert len(voices["val"]) == 1 and len(voices["test"]) == 1 and len(voices["train"]) == 3
    assert not voices["train"] & voices["val"] and not voices["train"] & voices["test"]
    assert not voices["val"] & voices["test"]
    assert voices["train"] | voices["val"] | voices["test"] == set(SMALL["voices"]) == voices["all"]
    speaker_ids = {name: {p[i]["speaker"] for i in range(len(p))} for name, p in parts.items()}
    held = {SMALL["voices"].index(v) for v in voices["val"] | voices["test"]}
    assert not speaker_ids["train"] & held
    assert speaker_ids["val"] == {SMALL["voices"].index(v) for v in voices["val"]}
    assert sum(len(parts[n]) for n in ("train", "val", "test")) == len(parts["all"]) == 30
    # the split depends on the seed, and named voices are honoured
    named = synth(split="val", val_voices=["en+f2"], test_voices=["en-029+m3"])
    assert named.split_voices == ["en+f2"] and {named[i]["speaker"] for i in range(len(named))} == {1}


def test_utterance_split_keeps_every_voice_in_every_split():
    opts = {"split_by": "utterance", "utterances_per_pair": 2, "val_fraction": 0.5, "test_fraction": 0.0}
    train, val = synth(split="train", **opts), synth(split="val", **opts)
    assert len(train) == len(val) == 15
    val_speakers, train_speakers = ({p[i]["speaker"] for i in range(len(p))} for p in (val, train))
    assert val_speakers == train_speakers == set(range(5))
    train_audio = {train[i]["audio"].numpy().tobytes() for i in range(len(train))}
    assert not any(val[i]["audio"].numpy().tobytes() in train_audio for i in range(len(val)))
    with pytest.raises(ValueError, match="split 'test' is empty"):
        synth(split="test", **opts)


def test_transcripts_and_collate():
    src = synth(split="val", transcripts=True)
    samples = [src[i] for i in range(4)]
    assert all(s["text"] == src.labels[s["label"]] for s in samples)
    batch = src.collate(samples)
    lengths = [s["audio"].numel() for s in samples]
    assert batch["audio"].shape == (4, max(lengths)) and batch["lengths"].tolist() == lengths
    assert batch["label"].dtype == torch.long and batch["speaker"].shape == (4,)
    assert batch["text"] == [s["text"] for s in samples]


def test_cache_is_reused_across_builds_and_splits():
    synth(split="train")  # generated (or already cached by an earlier test)
    count = ds.SYNTHESIZED["utterances"]
    again = synth(split="test")
    assert again.generation["cached"] and ds.SYNTHESIZED["utterances"] == count
    other = synth(split="train", seed=5)  # another seed is another set
    assert not other.generation["cached"] and ds.SYNTHESIZED["utterances"] == count + 30


def test_default_set_size():
    """The defaults: 20 keywords x 24 voices (6 accents x 4 variants) x 8 utterances; 18 voices train."""
    from selfsup_speech.data.options import SynthSpeechOptions

    o = SynthSpeechOptions()
    assert len(o.words) == 20 and len(o.voice_list()) == 24 and o.utterances_per_pair == 8
    assert len(o.voice_list()) - o.val_voices - o.test_voices == 18


# ------------------------------------------------------------------------------ pad_audio


def test_pad_audio():
    samples = [{"audio": torch.ones(3), "label": 1, "index": 0},
               {"audio": torch.full((5,), 2.0), "label": 0, "index": 1}]
    batch = pad_audio(samples)
    assert batch["audio"].tolist() == [[1, 1, 1, 0, 0], [2, 2, 2, 2, 2]]
    assert batch["lengths"].tolist() == [3, 5] and batch["label"].tolist() == [1, 0]
    assert batch["index"].tolist() == [0, 1]
    assert batch["padding_mask"].tolist() == [[False] * 3 + [True] * 2, [False] * 5]
    with pytest.raises(ValueError, match="1-D"):
        pad_audio([{"audio": torch.zeros(2, 3)}])


# ------------------------------------------------------------------------------ audio_folder


def _sine(freq, seconds, rate, amplitude=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    (root / "cat").mkdir()
    (root / "dog").mkdir()
    left = _sine(440, 0.5, 8000)
    soundfile.write(root / "cat" / "stereo8k.wav", np.stack([left, 0.5 * left], axis=1), 8000, subtype="PCM_16")
    soundfile.write(root / "cat" / "b.flac", _sine(300, 0.25, 16000), 16000)
    soundfile.write(root / "dog" / "c.ogg", _sine(500, 0.3, 22050), 22050, format="OGG", subtype="VORBIS")
    soundfile.write(root / "dog" / "d.wav", _sine(600, 0.2, 16000), 16000)
    (root / "dog" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk that is not audio")
    soundfile.write(root / "dog" / "empty.wav", np.zeros((0,), np.float32), 16000)
    (root / "dog" / "notes.txt").write_text("not audio: ignored by extension")
    return root


class TestAudioFolder(DataSourceConformance):
    data = ("audio_folder", {})  # root set by the fixture below
    bad_options = [{"root": "/no/such/folder"}, {"extensions": ["wav"]}, {"sample_rate": 10}]

    option_variants = {"limit": 1, "sample_rate": 8000}  # resampling to 16,001 Hz is slow

    @pytest.fixture(autouse=True)
    def _root(self, folder):
        type(self).data = ("audio_folder", {"root": str(folder)})
        type(self).option_variants = {"limit": 1, "sample_rate": 8000, "root": str(folder / "cat")}


def test_audio_folder_skips_and_counts_corrupt_and_empty(folder):
    with pytest.warns(UserWarning, match="skipped 2 unreadable audio file"):
        src = build("audio_folder", {"root": str(folder)})
    assert len(src) == 4 and src.labels == ["cat", "dog"]
    assert sorted(p.rsplit("/", 1)[1] for p, _ in src.skipped) == ["corrupt.wav", "empty.wav"]
    assert [src[i]["label"] for i in range(4)] == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="unreadable audio file .*corrupt.wav"):
        build("audio_folder", {"root": str(folder), "on_error": "raise"})


def test_audio_folder_resamples_and_mixes_to_mono(folder):
    with pytest.warns(UserWarning):
        src = build("audio_folder", {"root": str(folder), "sample_rate": 16000, "extensions": [".wav"]})
    sample = src[[p.name for p in src.files].index("stereo8k.wav")]["audio"]
    assert sample.dtype == torch.float32 and sample.shape == (8000,)  # 0.5 s at 16 kHz
    spectrum = torch.fft.rfft(sample).abs()
    assert abs(spectrum.argmax().item() * 16000 / sample.numel() - 440) < 2.5
    middle = sample[1000:7000]
    assert middle.abs().max().item() == pytest.approx(0.75 * 0.5, abs=0.01)  # (L + 0.5 L) / 2
    ogg = build("audio_folder", {"root": str(folder / "dog"), "extensions": [".ogg"]})
    assert ogg[0]["audio"].numel() == pytest.approx(0.3 * 16000, abs=2) and "label" not in ogg[0]


# ------------------------------------------------------------------------------ audio_manifest


@pytest.fixture
def manifest(tmp_path):
    audio = tmp_path / "clips"
    audio.mkdir()
    lengths = [4000, 16000, 40000]
    for i, n in enumerate(lengths):
        soundfile.write(audio / f"{i}.flac", _sine(200 + 100 * i, n / 16000, 16000), 16000)
    tsv = tmp_path / "train.tsv"
    tsv.write_text("clips\n" + "".join(f"{i}.flac\t{n}\n" for i, n in enumerate(lengths)) + "missing.flac\t8000\n")
    (tmp_path / "train.lbl").write_text("b\na\nb\na\n")
    return tsv


def test_audio_manifest_reads_lazily_and_filters(manifest):
    lazy = {"manifest": str(manifest), "check_files": False}  # headers not read at build (test_bad_audio.py: read)
    src = build("audio_manifest", lazy)
    assert len(src) == 4 and src.root == manifest.parent / "clips" and src.num_samples[:3] == [4000, 16000, 40000]
    assert src[1]["audio"].shape == (16000,) and src[0]["audio"].dtype == torch.float32
    with pytest.raises(ValueError, match="unreadable audio file .*missing.flac"):
        src[3]  # the missing file is found only when it is read
    skip = build("audio_manifest", {**lazy, "on_error": "skip"})
    with pytest.warns(UserWarning, match="missing.flac at read time"):
        assert skip[3]["audio"].shape == (4000,) and len(skip.skipped) == 1  # the next readable file instead
    assert skip.bad_files.counts()["replaced"] == 1
    short = build("audio_manifest", {**lazy, "min_seconds": 0.4, "max_seconds": 2.0})
    assert short.files == ["1.flac", "missing.flac"] and short.dropped == 2
    labelled = build("audio_manifest", {**lazy, "labels": str(manifest.with_suffix(".lbl")), "max_seconds": 1.5})
    assert labelled.labels == ["a", "b"] and [labelled[i]["label"] for i in range(2)] == [1, 0]
    resampled = build("audio_manifest", {**lazy, "sample_rate": 8000})
    assert resampled[2]["audio"].shape == (20000,)


def test_audio_manifest_errors(tmp_path, manifest):
    bad = tmp_path / "bad.tsv"
    bad.write_text("/root\nclip.wav 100\n")
    with pytest.raises(ValueError, match="bad.tsv:2: expected"):
        build("audio_manifest", {"manifest": str(bad)})
    with pytest.raises(ValueError, match="no entry left"):
        build("audio_manifest", {"manifest": str(manifest), "min_seconds": 100})
    comp = get_plugin_manager().registry.get("data_source", "audio_manifest")
    with pytest.raises(Exception, match="min_seconds must not exceed"):
        comp.options.model_validate({"manifest": str(manifest), "min_seconds": 3, "max_seconds": 1})
