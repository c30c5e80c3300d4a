"""``selfsup prepare-audio`` and the ``audio_shards`` source: the shards hold what ``audio_folder`` yields
(up to int16 quantization), resampling and mono mixing match torchaudio, bad files are counted not fatal,
the output is byte-identical across runs and worker counts, and a damaged shard is an error naming it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as F

from selfsup.components import BuildContext
from selfsup.testing import DataSourceConformance
from selfsup_speech.prepare.audio import Settings, prepare_audio

Q = 0.5 / 32768 + 1e-7  # int16 rounding error bound


def _tone(seconds: float, rate: int, freq: float, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    wave = amp * np.sin(2 * np.pi * freq * t) + 0.2 * amp * np.sin(2 * np.pi * 2.7 * freq * t)
    return np.stack([wave * (1.0 - 0.4 * c) for c in range(channels)], axis=1).astype(np.float32)  # [T, C]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """cat/ and dog/ clips (44.1 kHz stereo OGG, 16 kHz WAV, 22.05 kHz FLAC), plus one corrupt, one
    silent and one too quiet file."""
    root = tmp_path_factory.mktemp("audio")
    for label, freq in (("cat", 330.0), ("dog", 520.0)):
        (root / label).mkdir()
        soundfile.write(root / label / "a.ogg", _tone(0.7, 44100, freq, channels=2), 44100, format="OGG",
                        subtype="VORBIS")
        soundfile.write(root / label / "b.wav", _tone(0.5, 16000, freq * 1.5), 16000, subtype="FLOAT")
        soundfile.write(root / label / "c.flac", _tone(0.4, 22050, freq * 0.8), 22050)
    (root / "cat" / "corrupt.wav").write_bytes(b"RIFF\x00\x00not really a wave file" * 4)
    soundfile.write(root / "dog" / "silent.wav", np.zeros((8000, 1), np.float32), 16000)
    soundfile.write(root / "dog" / "quiet.wav", _tone(0.5, 16000, 440.0, amp=1e-5), 16000, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def prepared(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    prepare_audio([str(folder)], out, Settings(shard_size_mb=0.02, workers=2))
    return out


def _build(name: str, options: dict, base: Path):
    return BuildContext(name="x", base_dir=base).build("data", name, options)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_shards_hold_what_audio_folder_yields(folder, prepared):
    shards = _build("audio_shards", {"root": str(prepared)}, prepared)
    with pytest.warns(UserWarning, match="corrupt.wav"):
        reference = _build("audio_folder", {"root": str(folder)}, folder)
    manifest = _manifest(prepared)
    assert len(manifest["shards"]) > 1  # 0.02 MiB shards: several
    assert shards.labels == reference.labels == ["cat", "dog"]
    assert len(shards) == 6 and len(manifest["files"]) == 6
    by_path = {str(p): i for i, p in enumerate(reference.files)}
    for i, entry in enumerate(manifest["files"]):
        ours, theirs = shards[i], reference[by_path[entry["source"]]]
        assert ours["audio"].dtype == torch.float32 and ours["audio"].shape == theirs["audio"].shape
        assert (ours["audio"] - theirs["audio"]).abs().max() <= Q, entry["source"]
        assert ours["label"] == theirs["label"]
        assert entry["duration"] == pytest.approx(ours["audio"].numel() / 16000)
        assert entry["label"] == Path(entry["source"]).parent.name
    assert shards.lengths() == [e["samples"] for e in manifest["files"]]
    batch = shards.collate([shards[0], shards[1]])
    assert batch["audio"].shape[0] == 2 and batch["label"].tolist() == [shards[0]["label"], shards[1]["label"]]


def test_bad_files_are_counted_by_reason_not_fatal(prepared):
    manifest = _manifest(prepared)
    assert manifest["bad_files"] == {"unreadable": 1, "silent": 1, "too_quiet": 1, "too_short": 0, "total": 3}
    reasons = {Path(s["source"]).name: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"corrupt.wav", "silent.wav", "quiet.wav"}
    assert reasons["quiet.wav"].startswith("too_quiet: RMS -10") and reasons["silent.wav"].startswith("silent")
    assert manifest["counts"]["found"] == 9 and manifest["counts"]["kept_files"] == 6
    kept = {Path(e["source"]).name for e in manifest["files"]}
    assert not kept & set(reasons)
    assert all(-20 < e["rms_dbfs"] < -5 and e["clipped"] == 0 for e in manifest["files"])


def test_44k_stereo_is_mixed_to_mono_and_resampled_like_torchaudio(tmp_path):
    frames = _tone(1.0, 44100, 440.0, channels=2)  # the two channels differ (right = 0.6 x left)
    soundfile.write(tmp_path / "x.wav", frames, 44100, subtype="FLOAT")  # lossless: the reference is exact
    out = tmp_path / "out"
    prepare_audio([str(tmp_path / "x.wav")], out, Settings(sample_rate=16000))
    got = _build("audio_shards", {"root": str(out)}, tmp_path)[0]["audio"]
    mono = torch.from_numpy(frames.mean(axis=1))
    expected = F.resample(mono, 44100, 16000)
    assert got.shape == expected.shape == (16000,)
    # int16 rounding plus float32 rounding (torchaudio's Resample module vs its function); another
    # filter or a plain channel would be off by 1e-3 or more
    assert (got - expected).abs().max() <= Q + 2e-6
    assert (got - torch.from_numpy(frames[:, 0])[: 16000]).abs().max() > 0.05  # not a channel, not unresampled
    entry = _manifest(out)["files"][0]
    assert entry["source_rate"] == 44100 and entry["channels"] == 2 and entry["label"] is None


def test_two_runs_and_any_worker_count_give_identical_bytes(folder, prepared, tmp_path):
    prepare_audio([str(folder)], tmp_path / "again", Settings(shard_size_mb=0.02, workers=1))
    names = sorted(p.name for p in prepared.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in names:
        assert (prepared / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    for fmt in ("flac",):
        a, b = tmp_path / f"{fmt}1", tmp_path / f"{fmt}2"
        prepare_audio([str(folder)], a, Settings(format=fmt, workers=3))
        prepare_audio([str(folder)], b, Settings(format=fmt, workers=1))
        assert [p.read_bytes() for p in sorted(a.iterdir())] == [p.read_bytes() for p in sorted(b.iterdir())]


def test_flac_shards_decode_to_the_same_samples_and_read_as_webdataset_tars(folder, prepared, tmp_path):
    from selfsup.lib.shards import tar_samples

    out = tmp_path / "flac"
    prepare_audio([str(folder)], out, Settings(format="flac"))
    flac = _build("audio_shards", {"root": str(out)}, tmp_path)
    raw = _build("audio_shards", {"root": str(prepared)}, tmp_path)
    assert len(flac) == len(raw)
    for i in range(len(raw)):
        assert torch.equal(flac[i]["audio"], raw[i]["audio"]) and flac[i]["label"] == raw[i]["label"]
    members = [m for shard in sorted(out.glob("shard-*.tar")) for m in tar_samples(shard)]
    assert [key for key, _ in members] == [e["key"] for e in _manifest(out)["files"]]
    assert all(set(parts) == {"flac", "cls"} for _, parts in members)


def test_long_files_are_cut_into_equal_pieces(tmp_path):
    soundfile.write(tmp_path / "long.wav", _tone(3.0, 16000, 300.0), 16000, subtype="FLOAT")
    out = tmp_path / "out"
    prepare_audio([str(tmp_path)], out, Settings(max_seconds=1.25))
    entries = _manifest(out)["files"]
    assert [e["part"] for e in entries] == [0, 1, 2] and [e["start"] for e in entries] == [0.0, 1.0, 2.0]
    source = _build("audio_shards", {"root": str(out)}, tmp_path)
    whole = torch.cat([source[i]["audio"] for i in range(3)])
    assert whole.shape == (48000,)
    assert (whole - torch.from_numpy(_tone(3.0, 16000, 300.0)[:, 0])).abs().max() <= Q


def test_a_damaged_shard_is_an_error_naming_it(prepared, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    shard = sorted(copy.glob("shard-*.bin"))[1]
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"damaged shard {shard}: its SHA-256"):
        _build("audio_shards", {"root": str(copy)}, tmp_path)
    assert len(_build("audio_shards", {"root": str(copy), "verify": "size"}, tmp_path)) == 6  # size only: unseen
    shard.write_bytes(bytes(data[:-2]))
    with pytest.raises(ValueError, match=f"damaged shard {shard}: {len(data) - 2} bytes"):
        _build("audio_shards", {"root": str(copy), "verify": "size"}, tmp_path)
    shard.unlink()
    with pytest.raises(ValueError, match=f"missing shard {shard}"):
        _build("audio_shards", {"root": str(copy)}, tmp_path)


def test_the_recipe_rate_must_be_the_prepared_rate(prepared, tmp_path):
    with pytest.raises(ValueError, match="prepared at 16000 Hz, the recipe asks for 8000 Hz"):
        _build("audio_shards", {"root": str(prepared), "sample_rate": 8000}, tmp_path)
    with pytest.raises(ValueError, match="no manifest.json"):
        _build("audio_shards", {"root": str(tmp_path)}, tmp_path)


def test_command_line(folder, tmp_path):
    selfsup = Path(sys.executable).parent / "selfsup"
    out = tmp_path / "out"
    run = subprocess.run([str(selfsup), "prepare-audio", str(folder), "--out", str(out), "--workers", "2",
                          "--min-dbfs", "-50"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "9 found, 6 kept" in run.stdout and "1 unreadable, 1 silent, 1 too quiet" in run.stdout
    assert _manifest(out)["settings"]["min_dbfs"] == -50
    again = subprocess.run([str(selfsup), "prepare-audio", str(folder), "--out", str(out)], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 2 and "is not empty" in again.stderr
    missing = subprocess.run([str(selfsup), "prepare-audio", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no such file, folder or matching pattern" in missing.stderr


class TestAudioShards(DataSourceConformance):
    data = ("audio_shards", {})  # root set by the fixture below
    bad_options = [{"root": "/no/such/folder"}, {"verify": "md5"}, {"sample_rate": 10}, {"limit": 0}]
    inert_options = {"verify": "every shard of the suite's folder is intact: both checks pass"}

    @pytest.fixture(autouse=True)
    def _root(self, prepared, tmp_path_factory):
        other = tmp_path_factory.mktemp("other")
        soundfile.write(other / "x.wav", _tone(0.3, 16000, 200.0), 16000)
        soundfile.write(other / "y.wav", _tone(0.2, 16000, 250.0), 16000)
        prepare_audio([str(other)], other / "prepared", Settings())
        type(self).data = ("audio_shards", {"root": str(prepared)})
        type(self).option_variants = {"root": str(other / "prepared"), "sample_rate": 8000, "limit": 1}
