"""espeak-ng synthesis: determinism, voices, post-processing, the seeded plan and the on-disk cache."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch

from selfsup_speech.synth import dataset as ds
from selfsup_speech.synth.engines import BinaryEngine, LibraryEngine, make_engine
from selfsup_speech.synth.postprocess import finish, trim_silence

pytest.importorskip("espeakng_loader")


@pytest.fixture(scope="module")
def engine():
    e = LibraryEngine().start()
    yield e
    e.close()


def test_library_engine_is_deterministic_per_utterance(engine):
    assert engine.sample_rate == 22050 and engine.version
    first = engine.synthesize("seven", "en-us+f2", 170, 50, seed=3)
    engine.synthesize("yes", "en+m3", 200, 40)  # the library state must not leak into the next utterance
    again = engine.synthesize("seven", "en-us+f2", 170, 50, seed=3)
    assert first.dtype == np.int16 and np.array_equal(first, again)
    assert 0.2 < len(first) / engine.sample_rate < 1.5  # a word, not silence and not a sentence
    assert np.abs(first).max() > 3000
    other_voice = engine.synthesize("seven", "en-gb-scotland+m1", 170, 50, seed=3)
    other_word = engine.synthesize("three", "en-us+f2", 170, 50, seed=3)
    for other in (other_voice, other_word):
        n = min(len(first), len(other))
        assert len(first) != len(other) or not np.array_equal(first[:n], other[:n])


def test_same_request_gives_same_samples_in_another_process(engine):
    """A second server (another process, started at another time) gives identical samples, also
    for a breathy variant (f2), whose noise generator espeak-ng seeds with the clock."""
    other = LibraryEngine().start()
    try:
        for voice in ("en-us+f2", "en-029+m1"):
            assert np.array_equal(engine.synthesize("stop", voice, 150, 60, seed=9),
                                  other.synthesize("stop", voice, 150, 60, seed=9))
    finally:
        other.close()


def test_rate_and_pitch_change_the_audio(engine):
    slow, fast = engine.synthesize("seven", "en-us+m3", 100, 50), engine.synthesize("seven", "en-us+m3", 300, 50)
    assert len(slow) > 1.5 * len(fast)
    low, high = engine.synthesize("seven", "en-us+m3", 175, 10), engine.synthesize("seven", "en-us+m3", 175, 90)
    assert not np.array_equal(low[: min(len(low), len(high))], high[: min(len(low), len(high))])


def test_unknown_voices_are_errors(engine):
    with pytest.raises(ValueError, match="no voice variant 'nosuch'"):
        engine.synthesize("yes", "en-us+nosuch", 175, 50)
    with pytest.raises(RuntimeError, match="no voice 'xx-nothing'"):
        engine.synthesize("yes", "xx-nothing", 175, 50)
    assert engine.synthesize("yes", "en-us", 175, 50).size > 0  # the server survives a failed request


def test_finish_resamples_trims_and_normalises():
    rate = 22050
    t = np.arange(int(0.3 * rate)) / rate
    tone = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    samples = np.concatenate([np.zeros(rate // 2, np.int16), tone, np.zeros(rate, np.int16)])
    audio = finish(samples, rate, 16000, trim_db=40, peak=0.9)
    assert audio.dtype == torch.float32
    assert abs(audio.numel() - 0.3 * 16000) <= 2 * 160 + 10  # the tone plus at most a frame of margin each side
    assert audio.abs().max().item() == pytest.approx(0.9, abs=1e-4)
    spectrum = torch.fft.rfft(audio).abs()
    assert abs(spectrum.argmax().item() * 16000 / audio.numel() - 300) < 10
    assert trim_silence(torch.zeros(1000), 16000, 40).numel() == 0


def test_plan_is_seeded():
    settings = ds.GenerationSettings(words=("yes", "no"), voices=("en-us+m1", "en+f2"), utterances_per_pair=3, seed=1)
    a, b = ds.plan(settings), ds.plan(settings)
    assert a == b and len(a) == 12
    assert [(u.word, u.voice) for u in a[:4]] == [("yes", "en-us+m1")] * 3 + [("yes", "en+f2")]
    assert all(140 <= u.rate <= 200 and 35 <= u.pitch <= 65 for u in a)
    c = ds.plan(ds.GenerationSettings(words=("yes", "no"), voices=("en-us+m1", "en+f2"), utterances_per_pair=3, seed=2))
    assert [u.rate for u in a] != [u.rate for u in c]
    assert settings.key() != ds.GenerationSettings(words=("yes", "no"), voices=("en-us+m1", "en+f2"),
                                                   utterances_per_pair=3, seed=2).key()


def test_synthesize_dataset_writes_once_then_reads(tmp_path):
    settings = ds.GenerationSettings(words=("yes", "go"), voices=("en-us+m1", "en+f4"), utterances_per_pair=2)
    before = ds.SYNTHESIZED["utterances"]
    folder, stats = ds.synthesize_dataset(settings, cache_dir=tmp_path, workers=2)
    assert not stats["cached"] and stats["utterances"] == 8 and ds.SYNTHESIZED["utterances"] == before + 8
    assert folder.parent == tmp_path / "speech" and folder.name == settings.key()
    assert stats["audio_seconds_per_second"] > 0 and 1.0 < stats["audio_seconds"] < 10
    manifest = ds.load_manifest(folder)
    assert manifest["sample_rate"] == 16000 and len(manifest["utterances"]) == 8
    entry = manifest["utterances"][0]
    audio, rate = soundfile.read(folder / entry["file"], dtype="float32")
    assert rate == 16000 and audio.shape == (entry["num_samples"],) and 0.8 < np.abs(audio).max() <= 0.91
    assert not [p for p in (tmp_path / "speech").iterdir() if p.name.startswith(".tmp")]  # no temp folder left
    mtime = (folder / ds.MANIFEST).stat().st_mtime_ns

    again, stats2 = ds.synthesize_dataset(settings, cache_dir=tmp_path)
    assert again == folder and stats2["cached"] and stats2["utterances"] == 8
    assert ds.SYNTHESIZED["utterances"] == before + 8  # nothing synthesized the second time
    assert (folder / ds.MANIFEST).stat().st_mtime_ns == mtime

    # a different seed is a different set; the same seed regenerated gives the same bytes
    _, stats3 = ds.synthesize_dataset(settings, cache_dir=tmp_path, force=True, workers=1)
    assert not stats3["cached"]
    assert ds.load_manifest(folder)["utterances"] == manifest["utterances"]
    assert np.array_equal(soundfile.read(folder / entry["file"], dtype="float32")[0], audio)


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(tmp_path))
    assert ds.cache_root() == tmp_path / "speech"
    monkeypatch.delenv("SELFSUP_CACHE_DIR")
    assert ds.cache_root() == ds.Path.home() / ".cache" / "selfsup" / "speech"


def test_bench_entry_point(tmp_path, capsys):
    from selfsup_speech.synth.__main__ import main

    options = {"words": ["up", "down"], "voices": ["en-us+m1", "en+f2"], "utterances_per_pair": 1, "split": "all"}
    assert main(["--bench", "--workers", "1", "--options", json.dumps(options)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["utterances"] == 4 and stats["audio_seconds_per_second"] > 0 and not stats["cached"]


@pytest.fixture
def fake_espeak(tmp_path, monkeypatch):
    """An ``espeak-ng`` program on PATH that writes a tone whose frequency is 100 + 4 * pitch Hz
    and whose length follows the rate, and logs its arguments."""
    script = tmp_path / "bin" / "espeak-ng"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys, json, numpy as np, soundfile
        args = sys.argv[1:]
        if args == ["--version"]:
            print("eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"); sys.exit(0)
        if args == ["--voices=variant"]:
            print("Pty Language       Age/Gender VoiceName          File                 Other Languages")
            print(" 0  variant           --/M      Male 1            !v/m1")
            print(" 0  variant           --/F      Female 2          !v/f2"); sys.exit(0)
        with open({str(tmp_path / 'calls.jsonl')!r}, "a") as f:
            f.write(json.dumps(args) + "\\n")
        opts = dict(zip(args[0:8:2], args[1:8:2]))
        t = np.arange(int(22050 * 60 / int(opts["-s"]))) / 22050
        soundfile.write(opts["-w"], 0.5 * np.sin(2 * np.pi * (100 + 4 * int(opts["-p"])) * t), 22050, subtype="PCM_16")
    """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "calls.jsonl"


def test_binary_engine_runs_the_program(fake_espeak):
    engine = make_engine("binary")
    assert isinstance(engine, BinaryEngine) and engine.version == "1.51" and engine.variants == ["f2", "m1"]
    samples = engine.synthesize("left", "en-us+f2", 120, 50)
    assert samples.dtype == np.int16 and len(samples) == 22050 // 2
    assert json.loads(fake_espeak.read_text()) == ["-v", "en-us+f2", "-s", "120", "-p", "50", "-w",
                                                     json.loads(fake_espeak.read_text())[7], "--", "left"]
    with pytest.raises(ValueError, match="no voice variant 'f3'"):
        engine.synthesize("left", "en-us+f3", 120, 50)
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    assert abs(spectrum.argmax() * 22050 / len(samples) - 300) < 5
