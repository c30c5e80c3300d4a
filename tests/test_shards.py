"""selfsup.lib.shards: tar shards in the webdataset layout, dealt to ranks, shuffled, bad data counted."""

from __future__ import annotations

import io
import tarfile
import warnings

import pytest

from selfsup.lib.shards import ShardStream, check_tar_shard, expand_shards, tar_samples


def _shard(path, keys, broken=()):
    with tarfile.open(path, "w") as tar:
        for key in keys:
            for ext, data in (("txt", b"bad" if key in broken else key.encode()), ("cls", b"1")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _decode(shard, key, parts):
    if parts["txt"] == b"bad":
        raise ValueError("undecodable")
    return {"text": parts["txt"].decode(), "label": int(parts["cls"])}


@pytest.fixture
def shards(tmp_path):
    for s in range(4):
        _shard(tmp_path / f"s{s}.tar", [f"{s}-{i:02d}" for i in range(10)])
    return tmp_path


def _keys(stream, **kw):
    return [key for _, key, _ in stream.raw(**kw)]


def test_samples_group_members_by_key(tmp_path):
    shard = _shard(tmp_path / "a.tar", ["x", "y"])
    assert list(tar_samples(shard)) == [("x", {"txt": b"x", "cls": b"1"}), ("y", {"txt": b"y", "cls": b"1"})]
    check_tar_shard(shard)
    with pytest.raises(ValueError, match="no shard matches 'missing-\\*.tar'"):
        expand_shards(["missing-*.tar"], tmp_path)


def test_ranks_get_disjoint_complete_seeded_streams(shards):
    stream = ShardStream("t", ["s*.tar"], shards, on_error="skip", shuffle_buffer=8).ready()
    whole = _keys(stream, epoch=0, rank=0, world_size=1, seed=3)
    assert sorted(whole) == sorted(f"{s}-{i:02d}" for s in range(4) for i in range(10))
    assert whole == _keys(stream, epoch=0, rank=0, world_size=1, seed=3)  # seeded
    assert whole != _keys(stream, epoch=1, rank=0, world_size=1, seed=3)  # a new order every epoch
    for world in (2, 3, 8):  # by shard (2), and every rank reading all shards (8 > 4 shards)
        parts = [_keys(stream, epoch=0, rank=r, world_size=world, seed=3) for r in range(world)]
        assert sorted(k for p in parts for k in p) == sorted(whole)


def test_bad_shards_and_samples_are_counted_once_and_warned(shards):
    (shards / "s9.tar").write_bytes(b"not a tar")
    raw = (shards / "s1.tar").read_bytes()
    (shards / "s1.tar").write_bytes(raw[: len(raw) // 2])  # cut short
    _shard(shards / "s2.tar", [f"2-{i:02d}" for i in range(10)], broken={"2-03"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = ShardStream("t", ["s*.tar"], shards, on_error="skip", shuffle_buffer=4).ready()
        assert len(stream.shards) == 3 and stream.skipped == 2
        for epoch in range(2):
            samples = list(stream.decoded(stream.raw(epoch=epoch, rank=0, world_size=1, seed=0), _decode))
            assert len(samples) == 29
    assert stream.skipped == 3  # the broken sample counted once over two epochs
    assert sum("2-03" in str(w.message) for w in caught) == 1


def test_raise_names_the_shard_and_key(shards):
    _shard(shards / "s0.tar", ["0-00", "0-01"], broken={"0-01"})
    stream = ShardStream("t", ["s0.tar"], shards, on_error="raise", shuffle_buffer=1).ready()
    with pytest.raises(Exception, match="s0.tar:0-01"):
        list(stream.decoded(stream.raw(epoch=0, rank=0, world_size=1, seed=0), _decode))
    (shards / "s3.tar").write_bytes(b"")
    with pytest.raises(Exception, match="s3.tar"):
        ShardStream("t", ["s3.tar"], shards, on_error="raise", shuffle_buffer=1)


def test_decoded_with_keep_decodes_only_kept_positions_and_keeps_holes(tmp_path):
    _shard(tmp_path / "s.tar", [f"k{i}" for i in range(6)], broken={"k3"})
    stream = ShardStream("t", ["*.tar"], tmp_path, on_error="skip", shuffle_buffer=1).ready()
    calls = []

    def decode(shard, key, parts):
        calls.append(key)
        return _decode(shard, key, parts)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = list(stream.raw(epoch=0, rank=0, world_size=1, seed=0))
        out = list(stream.decoded(raw, decode, keep=lambda p: p % 2 == 1))
    assert len(out) == 6 and [o is None for o in out[::2]] == [True] * 3  # positions 0, 2, 4: not decoded
    assert calls == [raw[p][1] for p in (1, 3, 5)]
    broken = [p for p, (_, key, _) in enumerate(raw) if key == "k3"][0]
    assert (out[broken] is None) and stream.skipped == (1 if broken % 2 == 1 else 0)  # a kept bad sample: a hole
    assert [o["text"] for o in stream.decoded(raw, _decode) if o] == [k for _, k, _ in raw if k != "k3"]
