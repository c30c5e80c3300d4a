"""Bad image data (issue 12): found when the source is built, counted per kind, warned, or fatal at build.

A truncated JPEG passes PIL's header check (``verify``) and used to be replaced at read time by
another image, with no count and no warning."""

from __future__ import annotations

import io
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager


def build(name, options, base_dir=None):
    comp = get_plugin_manager().registry.get("data_source", name)
    ctx = BuildContext(name=name, base_dir=base_dir) if base_dir else BuildContext(name=name)
    return comp.build(comp.options.model_validate(options, context={"base_dir": ctx.base_dir}), ctx)


def _jpeg(seed: int, size=(48, 40)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            (root / cls / f"{i}.jpg").write_bytes(_jpeg(i + 10 * (cls == "dog")))
    whole = _jpeg(99)
    (root / "dog" / "truncated.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    with Image.open(root / "dog" / "truncated.jpg") as img:
        img.verify()  # the header check alone passes it: the case the old scan missed
    return root


def test_truncated_jpeg_is_excluded_at_build_and_counted(folder):
    with pytest.warns(UserWarning, match=r"image_folder .*skipped 1 unreadable image\(s\), e\.g\. .*truncated\.jpg"):
        src = build("image_folder", {"root": str(folder), "size": 16})
    assert len(src) == 8 and all(p.name != "truncated.jpg" for p in src.files)
    assert src.bad_files.counts() == {"skipped": 1, "replaced": 0, "cut": 0, "invalid_unicode": 0}
    (where, reason), = src.bad_files.examples(5)
    assert where.endswith("truncated.jpg") and "truncated" in reason
    assert src.bad_files.examples(5, kind="cut") == []
    for i in range(len(src)):  # every image decodes: nothing is replaced while reading
        assert src[i]["image"].shape == (3, 16, 16)
    assert src.bad_files.counts()["replaced"] == 0


def test_truncated_jpeg_with_raise_fails_the_build_naming_it(folder):
    with pytest.raises(ValueError, match=r"image_folder: unreadable image .*dog/truncated\.jpg: OSError: image file"):
        build("image_folder", {"root": str(folder), "on_error": "raise"})


def test_image_broken_after_the_build_is_counted_and_warned_not_silently_replaced(folder):
    (folder / "dog" / "truncated.jpg").unlink()
    src = build("image_folder", {"root": str(folder), "size": 16})
    assert src.bad_files.counts()["skipped"] == 0
    victim = src.files[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=rf"unreadable image {victim} at read time .*next readable one is used"):
        sample = src[2]
    assert sample["label"] == src.labels[3]  # the next readable image, and it is counted
    assert src.bad_files.counts() == {"skipped": 0, "replaced": 1, "cut": 0, "invalid_unicode": 0}
    assert "1 of them at read time" in src.bad_files.summary()
    victim.write_bytes(data)
    strict = build("image_folder", {"root": str(folder), "size": 16, "on_error": "raise"})
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"image_folder: unreadable image {victim}: OSError"):
        strict[2]


def test_header_only_check_leaves_truncated_files_to_read_time(folder):
    src = build("image_folder", {"root": str(folder), "size": 16, "decode_check": False})
    assert len(src) == 9 and src.bad_files.counts()["skipped"] == 0  # verify() passes a truncated JPEG
    i = [p.name for p in src.files].index("truncated.jpg")
    with pytest.warns(UserWarning, match=r"unreadable image .*truncated\.jpg at read time"):
        src[i]
    assert src.bad_files.counts()["replaced"] == 1  # found when read: replaced, counted, warned


def test_scan_cost_stays_small(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    data = _jpeg(0, size=(224, 224))
    for i in range(200):
        (root / f"{i:03d}.jpg").write_bytes(data)
    start = time.perf_counter()
    src = build("image_folder", {"root": str(root), "size": 32})
    assert len(src) == 200 and src.bad_files.total() == 0
    assert time.perf_counter() - start < 5  # a few ms per 224 px JPEG at most, even on a busy machine


# ------------------------------------------------------------------------------ webdataset


def _shard(path, jpegs: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, data in jpegs.items():
            for ext, payload in (("jpg", data), ("cls", b"1")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


@pytest.fixture
def shards(tmp_path):
    good = {f"{i:04d}": _jpeg(i) for i in range(6)}
    _shard(tmp_path / "a.tar", good)
    whole = _jpeg(7)
    _shard(tmp_path / "b.tar", {"0100": _jpeg(8), "0101": whole[: len(whole) // 2]})
    _shard(tmp_path / "c.tar", good)
    raw = (tmp_path / "c.tar").read_bytes()
    (tmp_path / "c.tar").write_bytes(raw[: len(raw) // 2])  # a shard cut short (a copy that died)
    return tmp_path


def test_webdataset_broken_shard_is_skipped_at_build_or_fatal(shards):
    with pytest.warns(UserWarning, match=r"webdataset \(3 shards\): skipped 1 unreadable .*c\.tar"):
        src = build("webdataset", {"shards": ["*.tar"], "size": 8}, base_dir=shards)
    assert [p.name for p in src.shards] == ["a.tar", "b.tar"] and src.bad_files.counts()["skipped"] == 1
    with pytest.raises(ValueError, match=r"webdataset: unreadable shard or sample .*c\.tar: ValueError: truncated"):
        build("webdataset", {"shards": ["*.tar"], "on_error": "raise"}, base_dir=shards)


def test_webdataset_corrupt_sample_counted_once_and_warned_while_streaming(shards):
    (shards / "c.tar").unlink()
    src = build("webdataset", {"shards": ["*.tar"], "size": 8}, base_dir=shards)
    with pytest.warns(UserWarning, match=r"webdataset: skipped: .*b\.tar:0101: OSError"):
        samples = list(src.iterate(epoch=0, rank=0, world_size=1, seed=0))
    assert len(samples) == 7
    list(src.iterate(epoch=1, rank=0, world_size=1, seed=0))
    assert src.bad_files.counts()["skipped"] == 1 and src.skipped == 1  # the same sample, counted once


def test_webdataset_check_samples_finds_corrupt_images_at_build(shards):
    (shards / "c.tar").unlink()
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable shard or sample\(s\), e\.g\. .*b\.tar:0101"):
        src = build("webdataset", {"shards": ["*.tar"], "size": 8, "check_samples": True}, base_dir=shards)
    assert src.bad_files.counts()["skipped"] == 1
    with pytest.raises(ValueError, match=r"unreadable shard or sample .*b\.tar:0101: OSError: image file is truncated"):
        build("webdataset", {"shards": ["*.tar"], "check_samples": True, "on_error": "raise"}, base_dir=shards)
