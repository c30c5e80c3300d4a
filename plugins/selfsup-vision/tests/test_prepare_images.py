"""``selfsup prepare-images``: the longer side at most --max-side and never upscaled, EXIF orientation
applied, RGB, bad images counted not fatal, byte-identical output across runs and worker counts, and
shards the ``webdataset`` source reads unchanged (labels from class sub-folders)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from selfsup.components import BuildContext
from selfsup.lib.shards import tar_samples
from selfsup_vision.prepare.images import Settings, prepare_images


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Red left half, blue right half, a green top band, plus smooth noise: any flip or turn shows."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2, 0] = 220
    arr[:, width // 2 :, 2] = 220
    arr[: height // 5, :, 1] = 200
    arr = np.clip(arr.astype(int) + rng.integers(-10, 10, arr.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "cats").mkdir(), (root / "dogs").mkdir()
    _photo(640, 400, 1).save(root / "cats" / "big.jpg", quality=95)
    _photo(100, 80, 2).save(root / "cats" / "small.png")
    rgba = _photo(300, 300, 3).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "dogs" / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown after a 90-degree clockwise turn
    _photo(600, 300, 4).save(root / "dogs" / "turned.jpg", exif=exif, quality=95)
    Image.fromarray(np.full((300, 200), 90, np.uint8)).save(root / "dogs" / "gray.jpg")
    (root / "dogs" / "garbage.jpg").write_bytes(b"\xff\xd8 not a jpeg at all" * 10)
    whole = (root / "cats" / "big.jpg").read_bytes()
    (root / "cats" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    _photo(10, 40, 5).save(root / "cats" / "tiny.png")
    return root


@pytest.fixture(scope="module")
def prepared(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    prepare_images([str(folder)], out, Settings(max_side=256, shard_size_mb=0.01, workers=2))
    return out


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _members(out: Path) -> dict[str, dict[str, bytes]]:
    return {key: parts for shard in sorted(out.glob("shard-*.tar")) for key, parts in tar_samples(shard)}


def test_sizes_orientation_and_colour(folder, prepared):
    manifest, members = _manifest(prepared), _members(prepared)
    assert len(manifest["shards"]) > 1
    by_name = {Path(s["source"]).name: s for s in manifest["samples"]}
    assert set(by_name) == {"big.jpg", "small.png", "alpha.png", "turned.jpg", "gray.jpg"}
    for name, sample in by_name.items():
        img = Image.open(io.BytesIO(members[sample["key"]]["jpg"]))
        assert img.mode == "RGB" and list(img.size) == sample["size"], name
        assert max(img.size) <= 256, name
    assert by_name["big.jpg"]["size"] == [256, 160] and by_name["big.jpg"]["source_size"] == [640, 400]
    assert by_name["small.png"]["size"] == [100, 80]  # never upscaled
    assert by_name["turned.jpg"]["source_size"] == [300, 600] and by_name["turned.jpg"]["size"] == [128, 256]
    turned = np.asarray(Image.open(io.BytesIO(members[by_name["turned.jpg"]["key"]]["jpg"])), np.float32)
    raw = Image.open(folder / "dogs" / "turned.jpg")
    expected = np.asarray(ImageOps.exif_transpose(raw).convert("RGB").resize((128, 256), Image.Resampling.LANCZOS),
                          np.float32)
    assert np.abs(turned - expected).mean() < 6  # JPEG error only
    assert np.abs(turned - np.asarray(raw.convert("RGB").resize((128, 256)), np.float32)).mean() > 40  # not unturned
    alpha = np.asarray(Image.open(io.BytesIO(members[by_name["alpha.png"]["key"]]["jpg"])), np.float32)
    assert alpha[:, :, 1].mean() > 100  # half-transparent pixels over white, not over black


def test_bad_images_are_counted_by_reason_not_fatal(prepared):
    manifest = _manifest(prepared)
    assert manifest["bad_files"] == {"unreadable": 1, "truncated": 1, "too_small": 1, "too_large": 0, "total": 3}
    reasons = {Path(s["source"]).name: s["reason"].split(":")[0] for s in manifest["skipped"]}
    assert reasons == {"garbage.jpg": "unreadable", "cut.jpg": "truncated", "tiny.png": "too_small"}
    assert manifest["counts"]["found"] == 8 and manifest["counts"]["written"] == 5


def test_the_webdataset_source_reads_the_shards_unchanged(prepared):
    manifest = _manifest(prepared)
    ctx = BuildContext(name="x", base_dir=prepared)
    source = ctx.build("data", "webdataset", {"shards": ["shard-*.tar"], "size": 32, "check_samples": True})
    samples = list(source.iterate(epoch=0, rank=0, world_size=1, seed=0))
    assert len(samples) == 5 and source.skipped == 0
    assert all(s["image"].shape == (3, 32, 32) for s in samples)
    assert manifest["classes"] == ["cats", "dogs"]
    expected = sorted(manifest["classes"].index(s["label"]) for s in manifest["samples"])
    assert sorted(int(s["label"]) for s in samples) == expected == [0, 0, 1, 1, 1]


def test_two_runs_and_any_worker_count_give_identical_bytes(folder, prepared, tmp_path):
    prepare_images([str(folder)], tmp_path / "again", Settings(max_side=256, shard_size_mb=0.01, workers=1))
    names = sorted(p.name for p in prepared.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in names:
        assert (prepared / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    prepare_images([str(folder)], tmp_path / "seed1", Settings(max_side=256, shard_size_mb=0.01, seed=1))
    assert [s["source"] for s in _manifest(tmp_path / "seed1")["samples"]] != [
        s["source"] for s in _manifest(prepared)["samples"]]  # the seed deals images to shards


def test_png_and_webp_members(folder, tmp_path):
    for fmt, ext in (("png", "png"), ("webp", "webp")):
        prepare_images([str(folder / "cats")], tmp_path / fmt, Settings(max_side=64, format=fmt))
        members = _members(tmp_path / fmt)
        assert len(members) == 2 and all(set(parts) == {ext} for parts in members.values())  # no classes: no .cls
        assert all(max(Image.open(io.BytesIO(p[ext])).size) <= 64 for p in members.values())


def test_command_line(folder, tmp_path):
    selfsup = Path(sys.executable).parent / "selfsup"
    out = tmp_path / "out"
    run = subprocess.run([str(selfsup), "prepare-images", str(folder), "--out", str(out), "--max-side", "64",
                          "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "8 found, 5 written" in run.stdout and "1 unreadable, 1 truncated, 1 too small" in run.stdout
    assert _manifest(out)["settings"]["max_side"] == 64
    again = subprocess.run([str(selfsup), "prepare-images", str(folder), "--out", str(out)], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 2 and "is not empty" in again.stderr
