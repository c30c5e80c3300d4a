"""Bad audio data (issue 12): found when the source is built, counted, warned, or fatal at build.

``audio_manifest`` used to open no file when built: with ``on_error = "skip"`` missing, empty and
non-audio files were replaced by other clips without a message, and with the default "raise" they
stopped training mid-run with a traceback."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager


def build(name, options):
    comp = get_plugin_manager().registry.get("data_source", name)
    ctx = BuildContext(name=name)
    return comp.build(comp.options.model_validate(options, context={"base_dir": ctx.base_dir}), ctx)


def _clip(path, seconds=0.1, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)


@pytest.fixture
def manifest(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a.flac", "b.flac", "c.flac"):
        _clip(clips / name)
    (clips / "empty.flac").write_bytes(b"")
    (clips / "text.flac").write_text("this is a text file, not audio\n" * 20)
    soundfile.write(clips / "silent.wav", np.zeros((0,), np.float32), 16000)  # a valid header, no samples
    names = ["a.flac", "missing.flac", "b.flac", "empty.flac", "text.flac", "silent.wav", "c.flac"]
    tsv = tmp_path / "train.tsv"
    tsv.write_text("clips\n" + "".join(f"{n}\t1600\n" for n in names))
    (tmp_path / "train.lbl").write_text("".join(f"{n[0]}\n" for n in names))
    return tsv


def test_manifest_skip_counts_and_warns_every_bad_file_at_build(manifest):
    with pytest.warns(UserWarning, match=r"audio_manifest .*train\.tsv: skipped 4 unreadable audio file\(s\), "
                                         r"e\.g\. .*missing\.flac \(FileNotFoundError: no such file\)"):
        src = build("audio_manifest", {"manifest": str(manifest), "on_error": "skip",
                                       "labels": str(manifest.with_suffix(".lbl"))})
    assert src.files == ["a.flac", "b.flac", "c.flac"] and src.num_samples == [1600] * 3
    assert [src.labels[src[i]["label"]] for i in range(3)] == ["a", "b", "c"]  # labels stay aligned
    assert src.bad_files.counts() == {"skipped": 4, "replaced": 0, "cut": 0, "invalid_unicode": 0}
    reasons = {path.rsplit("/", 1)[1]: reason for path, reason in src.skipped}
    assert set(reasons) == {"missing.flac", "empty.flac", "text.flac", "silent.wav"}
    assert "empty file (0 bytes)" in reasons["empty.flac"] and "no audio samples" in reasons["silent.wav"]
    assert [src[i]["audio"].shape for i in range(3)] == [(1600,)] * 3  # nothing replaced while reading
    assert src.bad_files.counts()["replaced"] == 0


@pytest.mark.parametrize("first_bad", ["missing.flac", "empty.flac", "text.flac"])
def test_manifest_raise_fails_at_build_naming_the_file(manifest, first_bad):
    names = ["a.flac", first_bad, "b.flac"]
    manifest.write_text("clips\n" + "".join(f"{n}\t1600\n" for n in names))
    with pytest.raises(ValueError, match=rf"audio_manifest: unreadable audio file .*clips/{first_bad}: "):
        build("audio_manifest", {"manifest": str(manifest)})  # on_error = "raise" is the default


def test_manifest_limit_counts_only_what_it_opened(manifest):
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        src = build("audio_manifest", {"manifest": str(manifest), "on_error": "skip", "limit": 2})
    assert src.files == ["a.flac", "b.flac"]


def test_folder_file_broken_after_build_is_counted_and_warned(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        _clip(tmp_path / name)
    src = build("audio_folder", {"root": str(tmp_path)})
    (tmp_path / "b.wav").write_bytes(b"RIFF????WAVE")  # overwritten after the scan
    with pytest.warns(UserWarning, match=r"unreadable audio file .*b\.wav at read time"):
        assert src[1]["audio"].shape == (1600,)  # c.wav, counted
    assert src.bad_files.counts()["replaced"] == 1 and src.bad_files.counts()["skipped"] == 0
