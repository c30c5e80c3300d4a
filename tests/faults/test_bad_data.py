"""Fault injection, bad input data: ``on_error`` means the same in every file-reading data source.

"skip": every unreadable file is left out when the source is built, counted in ``source.bad_files``
(``counts()``/``examples()``, what the training loop writes to metrics.jsonl as
``bad_data/<data name>/<kind>``) and warned once with an example; "raise": the build stops with an
error naming the file. Files that break after the build are counted and warned at read time, also
from data-loader worker processes (on stderr). The plugins' own suites test each source in depth
(test_bad_images.py, test_bad_audio.py, test_bad_text.py); this suite runs the shared contract.
"""

from __future__ import annotations

import io
import json
import tarfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from selfsup.badfiles import KINDS, BadFiles
from selfsup.components import BuildContext

# ------------------------------------------------------------------------------ BadFiles itself


def _read(path: str) -> str:
    if path.startswith("bad"):
        raise OSError(f"cannot decode {path}")
    return path.upper()


def test_counts_by_kind_examples_and_one_summary():
    bad = BadFiles("src", "skip", what="image", max_doc_chars=100)
    assert bad.counts() == dict.fromkeys(KINDS, 0) and bad.examples() == [] and bad.summary() == ""
    bad.record("a.png", OSError("truncated"))
    bad.note("cut", "t.txt:3", "a document of 250 characters cut into 3")
    bad.note("invalid_unicode", "t.txt:9", "1 undecodable byte(s) replaced by U+FFFD", n=2)
    assert bad.counts() == {"skipped": 1, "replaced": 0, "cut": 1, "invalid_unicode": 2} and bad.total() == 4
    assert bad.examples(2) == [("a.png", "OSError: truncated"), ("t.txt:3", "a document of 250 characters cut into 3")]
    assert bad.examples(5, kind="invalid_unicode") == [("t.txt:9", "1 undecodable byte(s) replaced by U+FFFD")]
    text = bad.summary("root/")
    assert text.startswith("src root/: skipped 1 unreadable image(s), e.g. a.png (OSError: truncated)")
    assert "cut 1 over-long document(s) into pieces of at most 100 characters, e.g. t.txt:3" in text
    assert "replaced invalid Unicode with U+FFFD in 2 line(s), e.g. t.txt:9" in text
    with pytest.warns(UserWarning) as caught:
        bad.warn("root/")
    assert len(caught) == 1 and str(caught[0].message) == text
    with pytest.raises(ValueError, match="unknown bad-data kind 'lost'"):
        bad.note("lost", "x", "y")


def test_examples_are_bounded_and_counts_exact():
    bad = BadFiles("src", "skip")
    for i in range(20_000):
        bad.record(f"bad{i}", OSError("x"))
    assert bad.counts()["skipped"] == 20_000 and len(bad.examples(100)) == 5 and len(bad.skipped) == 10_000
    assert "skipped 20000 unreadable file(s)" in bad.summary()


def test_merge_adds_counts_and_examples():
    total, part = BadFiles("src", "skip"), BadFiles("src", "skip")
    total.note("cut", "a:1", "r")
    part.note("cut", "b:1", "r", n=3)
    part.record("c", "ValueError: not text")
    total.merge(part)
    assert total.counts()["cut"] == 4 and total.counts()["skipped"] == 1
    assert total.skipped == [("c", "ValueError: not text")]
    assert [w for w, _ in total.examples(5, kind="cut")] == ["a:1", "b:1"]


@pytest.mark.parametrize("threads", [1, 4])
def test_scan_keeps_order_and_raises_at_the_first_bad_item(threads):
    items = [f"{'bad' if i % 7 == 3 else 'ok'}{i}" for i in range(100)]
    bad = BadFiles("src", "skip")
    assert bad.scan(items, _read, threads=threads) == [x for x in items if x.startswith("ok")]
    assert [p for p, _ in bad.skipped] == [x for x in items if x.startswith("bad")]
    strict = BadFiles("src", "raise", what="image")
    with pytest.raises(ValueError, match="src: unreadable image bad3: OSError: cannot decode bad3"):
        strict.scan(items, _read, threads=threads)


def test_read_time_failures_are_counted_as_replaced_and_warned_each():
    bad = BadFiles("src", "skip")
    with pytest.warns(UserWarning) as caught:
        assert bad.read_first(["a", "bad1", "bad2", "b"], 1, _read) == (3, "B")
    assert [str(w.message).split(" (pid")[0] for w in caught] == [
        "src: unreadable file bad1 at read time (OSError: cannot decode bad1); the next readable one is used instead",
        "src: unreadable file bad2 at read time (OSError: cannot decode bad2); the next readable one is used instead",
    ]
    assert bad.counts()["replaced"] == 2 and bad.counts()["skipped"] == 0
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable file\(s\), .*\(2 of them at read time"):
        bad.warn("root/")


def test_live_warnings_stop_after_ten_but_counting_goes_on():
    bad = BadFiles("src", "skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(25):
            bad.warn_now("skipped", f"shard.tar:{i}", "OSError: broken")
    assert len(caught) == 11 and "further bad-data events" in str(caught[-1].message)
    assert bad.counts()["skipped"] == 25


# ------------------------------------------------------------------------------ every source, one contract


def _build(name: str, options: dict, base_dir: Path):
    from selfsup.plugins import get_plugin_manager

    comp = get_plugin_manager().registry.get("data_source", name)
    ctx = BuildContext(name="train", base_dir=base_dir)
    return comp.build(comp.options.model_validate(options, context={"base_dir": base_dir}), ctx)


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _images(root: Path) -> tuple[dict, list[str]]:
    (root / "imgs").mkdir()
    for i in range(3):
        (root / "imgs" / f"{i}.jpg").write_bytes(_jpeg(i))
    whole = _jpeg(9)
    (root / "imgs" / "1-truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "imgs" / "2-garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return {"root": "imgs", "size": 8}, ["1-truncated.jpg", "2-garbage.png"]


def _shards(root: Path) -> tuple[dict, list[str]]:
    for name in ("a", "b"):
        with tarfile.open(root / f"{name}.tar", "w") as tar:
            for i in range(3):
                data = _jpeg(i)
                info = tarfile.TarInfo(f"{i:03d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    raw = (root / "b.tar").read_bytes()
    (root / "b.tar").write_bytes(raw[:700])
    return {"shards": ["*.tar"], "size": 8}, ["b.tar"]


def _audio(root: Path) -> tuple[dict, list[str]]:
    import soundfile

    (root / "wavs").mkdir()
    for i in range(3):
        soundfile.write(root / "wavs" / f"{i}.wav", np.zeros(800, np.float32) + 0.1, 8000)
    (root / "wavs" / "1-empty.wav").write_bytes(b"")
    (root / "wavs" / "2-text.wav").write_text("not audio\n" * 10)
    return {"root": "wavs", "sample_rate": 8000}, ["1-empty.wav", "2-text.wav"]


def _manifest(root: Path) -> tuple[dict, list[str]]:
    options, bad = _audio(root)
    names = ["0.wav", "1-empty.wav", "1.wav", "1-missing.wav", "2-text.wav", "2.wav"]
    (root / "train.tsv").write_text("wavs\n" + "".join(f"{n}\t800\n" for n in names))
    return {"manifest": "train.tsv", "sample_rate": 8000}, ["1-empty.wav", "1-missing.wav", "2-text.wav"]


def _text(root: Path) -> tuple[dict, list[str]]:
    (root / "docs").mkdir()
    for i in range(3):
        (root / "docs" / f"{i}.txt").write_text(f"document number {i}")
    (root / "docs" / "1-binary.txt").write_bytes(bytes(range(128, 256)) * 8)
    return {"paths": ["docs"], "tokenizer": "bytes"}, ["1-binary.txt"]


def _jsonl(root: Path) -> tuple[dict, list[str]]:
    lines = [json.dumps({"text": "one"}), "{not json", json.dumps({"other": 1}), json.dumps({"text": "two"})]
    (root / "d.jsonl").write_text("\n".join(lines) + "\n")
    return {"path": "d.jsonl", "tokenizer": "bytes"}, ["d.jsonl:2", "d.jsonl:3"]


SOURCES: list[tuple[str, str, Callable[[Path], tuple[dict, list[str]]]]] = [
    ("selfsup_vision", "image_folder", _images),
    ("selfsup_vision", "webdataset", _shards),
    ("selfsup_speech", "audio_folder", _audio),
    ("selfsup_speech", "audio_manifest", _manifest),
    ("selfsup_text", "text_files", _text),
    ("selfsup_text", "jsonl", _jsonl),
]


@pytest.mark.parametrize(("plugin", "name", "make"), SOURCES, ids=[s[1] for s in SOURCES])
def test_skip_counts_and_warns_raise_stops_the_build_naming_the_file(tmp_path, plugin, name, make):
    pytest.importorskip(plugin)
    options, bad_names = make(tmp_path)
    with pytest.warns(UserWarning, match=rf"skipped {len(bad_names)} unreadable .*e\.g\. .*{bad_names[0]}"):
        source = _build(name, {**options, "on_error": "skip"}, tmp_path)
    assert isinstance(source.bad_files, BadFiles)
    assert source.bad_files.counts() == {**dict.fromkeys(KINDS, 0), "skipped": len(bad_names)}
    assert [Path(w).name for w, _ in source.bad_files.examples(10)] == bad_names
    with pytest.raises(ValueError, match=rf"unreadable .*{bad_names[0]}"):
        _build(name, {**options, "on_error": "raise"}, tmp_path)


def test_read_time_failure_in_a_data_loader_worker_is_reported_on_stderr(tmp_path, capfd):
    pytest.importorskip("selfsup_vision")
    from torch.utils.data import DataLoader

    options, _ = _images(tmp_path)
    for name in ("1-truncated.jpg", "2-garbage.png"):
        (tmp_path / "imgs" / name).unlink()
    source = _build("image_folder", options, tmp_path)
    victim = source.files[1]
    victim.write_bytes(victim.read_bytes()[:100])  # broken after the build
    batches = list(DataLoader(source, batch_size=None, num_workers=1))
    assert len(batches) == 3  # the next readable image took its place ...
    err = capfd.readouterr().err
    assert f"warning: image_folder: unreadable image {victim} at read time" in err  # ... and the worker said so
