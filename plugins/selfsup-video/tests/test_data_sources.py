"""Video data sources: generated Moving MNIST, video folders (with bad files), streaming tar shards."""

from __future__ import annotations

import atexit
import io
import math
import shutil
import tarfile
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup.testing import DataSourceConformance
from selfsup_video.data import moving_mnist as mm
from selfsup_video.data.decode import write_video

# small tensor ops: a second torch thread on the shared 2-core box only adds waiting
pytestmark = pytest.mark.usefixtures("one_thread")


def build(name, options, base_dir=None, seed=0):
    comp = get_plugin_manager().registry.get("data_source", name)
    ctx = BuildContext(name=name, seed=seed, base_dir=base_dir or Path.cwd())
    return comp.build(comp.options.model_validate(options, context={"base_dir": ctx.base_dir}), ctx)


# ----------------------------------------------------------------------------- moving_mnist


class TestMovingMNIST(DataSourceConformance):
    data = ("moving_mnist", {"n": 16, "frames": 8})
    bad_options = [{"digits": 3}, {"split": "all"}, {"speed": (2.0, 1.0)}, {"digit_size": 32}, {"directions": 6},
                   {"friction": 1.0}]
    option_variants = {"angle_jitter": 20.0}


def test_moving_mnist_shapes_labels_and_range():
    src = build("moving_mnist", {"n": 50, "frames": 12, "size": 32, "label": "motion", "directions": 8})
    s = src[3]
    assert s["video"].shape == (12, 1, 32, 32) and s["video"].dtype == torch.float32
    assert 0 <= s["video"].min() and s["video"].max() <= 1 and s["video"].max() > 0.9
    assert s["label"] == s["motion"] and 0 <= int(s["motion"]) < 8 and 0 <= int(s["digit"]) < 10
    assert s["label"].dtype == torch.int64 and s["digit"].dtype == torch.int64
    assert sorted(set(src.targets("motion"))) == list(range(8))
    rgb = build("moving_mnist", {"n": 50, "frames": 12, "channels": 3})[3]["video"]
    assert rgb.shape == (12, 3, 32, 32) and torch.equal(rgb[:, 0], rgb[:, 2])


def test_moving_mnist_is_deterministic_and_seeds_and_splits_differ():
    opts = {"n": 40, "frames": 10, "digits": 2}
    a = build("moving_mnist", opts)
    mm.generate.cache_clear()  # regenerate from scratch: the same seed gives the same pixels
    b = build("moving_mnist", opts)
    assert a.videos is not b.videos and torch.equal(a.videos, b.videos) and torch.equal(a.digit, b.digit)
    c = build("moving_mnist", {**opts, "seed": 1})
    assert not torch.equal(a.videos, c.videos)
    val = build("moving_mnist", {**opts, "split": "val"})
    assert not torch.equal(a.videos, val.videos)
    # the splits draw their digit images from disjoint, stratified parts of the 1,797 digits
    _, labels, parts = mm._digit_pool()
    assert sum(len(p) for p in parts) == 1797
    assert not set(parts[0]) & set(parts[1]) and not set(parts[1]) & set(parts[2]) and not set(parts[0]) & set(parts[2])
    assert np.bincount(labels[parts[1]], minlength=10).min() >= 34


def _centre_of_mass(frame: torch.Tensor) -> np.ndarray:
    """(x, y) centre of mass of a [1, H, W] frame's ink."""
    w = frame[0].double()
    ys, xs = torch.meshgrid(torch.arange(w.shape[0]), torch.arange(w.shape[1]), indexing="ij")
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


@pytest.mark.parametrize("directions", [4, 8])
def test_motion_label_matches_the_digits_trajectory_in_pixels(directions):
    """The direction of the digit's ink between frames 0 and 2 (from pixels alone) is the motion class,
    for every sequence whose digit does not reach a wall in those frames (then it bounces)."""
    src = build("moving_mnist", {"n": 200, "frames": 3, "directions": directions, "speed": (2.0, 3.0),
                                 "label": "motion", "seed": 3})
    limit = 32 - 12
    checked = 0
    for i in range(len(src)):
        free = src.position[i, 0] + 2 * src.velocity[i]  # where frame 2 would be without walls
        if not ((0 <= free) & (free <= limit)).all():
            continue
        s = src[i]
        dx, dy = _centre_of_mass(s["video"][2]) - _centre_of_mass(s["video"][0])
        angle = math.atan2(-dy, dx) % (2 * math.pi)  # image y points down; classes go counter-clockwise from right
        assert round(angle / (2 * math.pi / directions)) % directions == int(s["label"]), (i, dx, dy)
        checked += 1
    assert checked > 100


def test_bouncing_digits_stay_on_the_canvas_and_reflect():
    src = build("moving_mnist", {"n": 100, "frames": 30, "speed": (2.0, 3.0)})
    pos = src.position  # [n, T, 2] top-left corners
    assert pos.min() >= 0 and pos.max() <= 20 + 1e-9
    step = np.diff(pos, axis=1)  # [n, T-1, 2]
    assert (np.abs(step) <= np.abs(src.velocity[:, None]) + 1e-9).all()
    flips = np.sign(step[:, 1:]) * np.sign(step[:, :-1]) < 0  # velocity reversed at a wall
    assert flips.any(axis=(1, 2)).mean() > 0.9
    assert src.videos[:, :, :, :].reshape(100, 30, -1).amax(dim=-1).min() > 200  # the digit never leaves


def test_digit_label_is_the_class_of_the_drawn_digit():
    src = build("moving_mnist", {"n": 30, "frames": 4, "digit_size": 12})
    images, labels, _ = mm._digit_pool()
    sprites = mm._upscaled(12)
    for i in range(len(src)):
        x, y = np.rint(src.position[i, 0]).astype(int)
        crop = src.videos[i, 0, y: y + 12, x: x + 12].numpy()
        matches = np.flatnonzero((sprites == crop).all(axis=(1, 2)))
        assert len(matches) and set(labels[matches]) == {int(src.digit[i])}


def test_wrap_keeps_the_direction_and_two_digits_draw_two():
    one = build("moving_mnist", {"n": 20, "frames": 16, "boundary": "wrap", "speed": (2.0, 2.0)})
    step = np.diff(one.position, axis=1)  # [n, T-1, 2], wrapped positions
    step = (step + 16) % 32 - 16  # undo the wrap
    assert np.allclose(step, one.velocity[:, None], atol=1e-9)
    two = build("moving_mnist", {"n": 20, "frames": 4, "digits": 2})
    assert (two.videos[:, 0] > 0).sum() > (build("moving_mnist", {"n": 20, "frames": 4}).videos[:, 0] > 0).sum()


def test_friction_slows_the_digits_down_by_its_factor_every_frame():
    """With friction the distance travelled between frames shrinks by (1 - friction) each frame, so a
    clip played backwards speeds up: time has a direction. Without it the draws are unchanged."""
    options = {"n": 40, "frames": 12, "boundary": "wrap", "speed": (2.0, 3.0)}
    plain, slowing = build("moving_mnist", options), build("moving_mnist", {**options, "friction": 0.2})
    step = (np.diff(slowing.position, axis=1) + 16) % 32 - 16  # [n, T-1, 2], the wrap undone
    expected = slowing.velocity[:, None] * 0.8 ** np.arange(11)[None, :, None]
    assert np.allclose(step, expected, atol=1e-9)
    np.testing.assert_allclose(slowing.velocity, plain.velocity)  # the same seeded draws
    assert torch.equal(plain.videos, build("moving_mnist", {**options, "friction": 0.0}).videos)
    assert not torch.equal(plain.videos[:, 1:], slowing.videos[:, 1:])


def test_more_frames_lengthen_the_same_trajectories():
    short, long = build("moving_mnist", {"n": 20, "frames": 6}), build("moving_mnist", {"n": 20, "frames": 12})
    assert torch.equal(short.videos, long.videos[:, :6]) and torch.equal(short.motion, long.motion)


def test_generation_of_thousands_of_sequences_takes_seconds():
    mm.generate.cache_clear()
    start = time.perf_counter()
    src = build("moving_mnist", {"n": 3000, "frames": 20, "digits": 2, "seed": 11})
    elapsed = time.perf_counter() - start
    assert len(src) == 3000 and elapsed < 30, elapsed  # about 1-2 s on a loaded 2-core box
    start = time.perf_counter()
    build("moving_mnist", {"n": 3000, "frames": 20, "digits": 2, "seed": 11, "label": "motion"})
    assert time.perf_counter() - start < 1.0  # cached: the label option does not regenerate


# ----------------------------------------------------------------------------- videos written here

FRAMES = 12


def _frames(level: int, colour: tuple[int, int, int], n: int = FRAMES) -> np.ndarray:
    """``[n, 32, 48, 3]`` uint8: frame t is grey ``level + 8 t`` with a coloured square moving right."""
    out = np.zeros((n, 32, 48, 3), np.uint8)
    for t in range(n):
        out[t] = min(255, level + 8 * t)
        out[t, 8:20, 2 * t: 2 * t + 12] = colour
    return out


def _temporary_dir(prefix: str) -> Path:
    """A folder shared by the tests of this process (the conformance suites need their paths before any
    fixture runs), removed when the process ends."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, root, True)
    return root


@lru_cache(maxsize=None)
def video_tree() -> Path:
    """root/<cls>/<video>: two classes, mp4, webm, avi and gif, each video distinct (made once per process)."""
    root = _temporary_dir("selfsup-video-tree-")
    for c, cls in enumerate(["left", "right"]):
        (root / cls).mkdir()
        for i, ext in enumerate([".mp4", ".webm", ".avi", ".gif"]):
            write_video(root / cls / f"v{i}{ext}", _frames(20 + 10 * i + 40 * c, (255, 60 * i, 250 * c)))
    return root


@lru_cache(maxsize=None)
def other_tree() -> Path:
    root = _temporary_dir("selfsup-video-other-")
    for i in range(3):
        write_video(root / f"o{i}.mp4", _frames(100 + 10 * i, (0, 255, 0)))
    return root


class TestVideoFolder(DataSourceConformance):
    bad_options = [{"root": "/nonexistent/videos"}, {"frames": 0}, {"offset": "middle"}]
    inert_options = {"on_error": "every file of the suite's folder is readable",
                     "stride": "the suite's offset is 'uniform', which spreads the frames over the video instead",
                     "split_seed": "split is 'all'", "val_fraction": "split is 'all'"}

    @property
    def data(self):
        return ("video_folder", {"root": str(video_tree()), "size": 16, "frames": 4, "offset": "uniform"})

    @property
    def option_variants(self):
        return {"extensions": [".mp4"], "root": str(other_tree()), "limit": 3}


def test_video_folder_reads_every_format_with_labels():
    src = build("video_folder", {"root": str(video_tree()), "size": 16, "frames": 6, "offset": "start"})
    assert len(src) == 8 and src.classes == ["left", "right"] and src.bad_files.total() == 0
    assert src.frame_counts == [FRAMES] * 8
    assert sorted(src.files[i].suffix for i in range(4)) == [".avi", ".gif", ".mp4", ".webm"]
    for i in range(len(src)):
        s = src[i]
        assert s["video"].shape == (6, 3, 16, 16) and s["video"].dtype == torch.float32
        assert s["label"] == (0 if src.files[i].parent.name == "left" else 1)
    grey = build("video_folder", {"root": str(video_tree()), "size": 16, "frames": 6, "channels": 1})[0]["video"]
    assert grey.shape == (6, 1, 16, 16)


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".avi", ".gif"])
def test_decoded_frames_are_the_encoded_ones_at_the_sampled_times(ext, tmp_path):
    """Frame t of the written video is grey 20 + 8t (the corner pixels, away from the moving square): the
    decoded clip's corners give back which frames were taken (codecs are lossy: a few grey levels off)."""
    write_video(tmp_path / f"a{ext}", _frames(20, (255, 0, 0), n=20))
    for offset, stride, expect in [("start", 3, [0, 3, 6, 9]), ("center", 2, [6, 8, 10, 12]),
                                   ("uniform", 1, [2, 7, 12, 17])]:
        src = build("video_folder", {"root": str(tmp_path), "size": 16, "frames": 4, "stride": stride,
                                     "offset": offset})
        assert src.indices(0) == expect
        corner = src[0]["video"][:, :, -3:, -3:].mean(dim=(1, 2, 3)) * 255  # [4] grey levels
        assert torch.allclose(corner, torch.tensor([20.0 + 8 * t for t in expect]), atol=6), (offset, corner)


def test_random_offsets_are_seeded_per_sample_and_within_bounds():
    opts = {"root": str(video_tree()), "size": 16, "frames": 3, "stride": 2, "offset": "random"}
    a, b, other = build("video_folder", opts), build("video_folder", opts), build("video_folder", opts, seed=5)
    starts = [a.indices(i)[0] for i in range(len(a))]
    assert starts == [b.indices(i)[0] for i in range(len(b))]
    assert starts != [other.indices(i)[0] for i in range(len(other))]
    for i in range(len(a)):
        idx = a.indices(i)
        assert idx == [idx[0], idx[0] + 2, idx[0] + 4] and 0 <= idx[0] <= FRAMES - 5
    assert torch.equal(a[2]["video"], b[2]["video"])


def test_a_video_shorter_than_the_clip_repeats_its_last_frame(tmp_path):
    write_video(tmp_path / "short.mp4", _frames(20, (255, 0, 0), n=4))
    src = build("video_folder", {"root": str(tmp_path), "size": 16, "frames": 6, "offset": "start"})
    v = src[0]["video"]
    assert src.indices(0) == [0, 1, 2, 3, 3, 3] and v.shape[0] == 6 and torch.equal(v[3], v[5])


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".avi", ".gif"])
def test_decode_sampled_converts_only_the_chosen_frames_where_the_count_is_declared(ext, tmp_path, monkeypatch):
    """What ``video_shards`` decodes with: the chosen frames equal those of a full decode, ``choose`` sees the
    true frame count, and only the chosen frames are converted when the container declares its count."""
    import av

    from selfsup_video.data import decode

    path = tmp_path / f"a{ext}"
    write_video(path, _frames(20, (255, 0, 0), n=20))
    data = path.read_bytes()
    full = decode.decode_sampled(data, lambda n: list(range(n)), 16, 3)  # [20, 3, 16, 16]
    assert full.shape == (20, 3, 16, 16)
    seen, converted = [], []
    to_array = decode._to_array
    monkeypatch.setattr(decode, "_to_array", lambda frame, size, channels: converted.append(1) or
                        to_array(frame, size, channels))

    def choose(n):
        seen.append(n)
        return [3, 4, 4, 9]

    clip = decode.decode_sampled(data, choose, 16, 3)
    assert seen == [20] and np.array_equal(clip, full[[3, 4, 4, 9]])
    with av.open(str(path)) as container:
        declared = container.streams.video[0].frames  # 0 where the container does not say (webm)
    assert declared in (0, 20)
    assert len(converted) == (3 if declared else 20), (ext, declared, len(converted))
    assert ext != ".mp4" or declared  # the common case takes the short path
    with pytest.raises(ValueError):  # a cut file still fails (the whole video is decoded)
        decode.decode_sampled(data[: len(data) * 2 // 3], choose, 16, 3)


def _bad_tree(tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    shutil.copytree(video_tree(), root)
    mp4 = (root / "left" / "v0.mp4").read_bytes()
    (root / "left" / "truncated.mp4").write_bytes(mp4[: len(mp4) // 2])
    (root / "right" / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    webm = (root / "right" / "v1.webm").read_bytes()
    (root / "right" / "truncated.webm").write_bytes(webm[: int(len(webm) * 0.6)])
    gif = (root / "left" / "v3.gif").read_bytes()
    (root / "left" / "truncated.gif").write_bytes(gif[: int(len(gif) * 0.6)])
    (root / "left" / "empty.avi").write_bytes(b"")
    return root


def test_unreadable_and_truncated_videos_are_skipped_and_counted(tmp_path):
    root = _bad_tree(tmp_path)
    with pytest.warns(UserWarning, match="skipped 5 unreadable video"):
        src = build("video_folder", {"root": str(root), "size": 16, "frames": 4})
    assert len(src) == 8 and src.bad_files.counts()["skipped"] == 5
    names = sorted(Path(p).name for p, _ in src.skipped)
    assert names == ["empty.avi", "noise.mp4", "truncated.gif", "truncated.mp4", "truncated.webm"]
    assert all(len(src[i]["video"]) == 4 for i in range(len(src)))
    with pytest.raises(ValueError, match=r"unreadable video .*(empty|noise|truncated)"):
        build("video_folder", {"root": str(root), "size": 16, "frames": 4, "on_error": "raise"})


def test_a_video_broken_after_the_build_is_replaced_and_counted(tmp_path):
    root = tmp_path / "v"
    shutil.copytree(video_tree(), root)
    src = build("video_folder", {"root": str(root), "size": 16, "frames": 4})
    src.files[0].write_bytes(b"broken since the build")
    with pytest.warns(UserWarning, match="at read time"):
        s = src[0]
    assert s["video"].shape == (4, 3, 16, 16) and src.bad_files.counts()["replaced"] == 1


# ----------------------------------------------------------------------------- video_shards


def _write_shards(root: Path, tree: Path, per_shard: int) -> list[Path]:
    """The tree's videos as webdataset shards: ``<cls>_<name>.<ext>`` + ``.cls`` members, sorted by path."""
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    classes = sorted({p.parent.name for p in files})
    shards = []
    for k in range(0, len(files), per_shard):
        path = root / f"shard-{k // per_shard:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for f in files[k: k + per_shard]:
                key = f"{f.parent.name}_{f.stem}_{f.suffix[1:]}"
                for name, data in [(f"{key}{f.suffix}", f.read_bytes()),
                                   (f"{key}.cls", str(classes.index(f.parent.name)).encode())]:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        shards.append(path)
    return shards


@lru_cache(maxsize=None)
def shard_dir() -> Path:
    root = _temporary_dir("selfsup-video-shards-")
    _write_shards(root, video_tree(), per_shard=3)
    return root


class TestVideoShards(DataSourceConformance):
    bad_options = [{"shards": []}, {"shuffle_buffer": 0}]
    inert_options = {"on_error": "every shard and video of the suite is readable",
                     "stride": "the suite's offset is 'uniform', which spreads the frames over the video instead"}
    min_samples = 4

    @property
    def data(self):
        return ("video_shards", {"shards": [str(shard_dir() / "*.tar")], "size": 16, "frames": 4, "offset": "uniform",
                                 "shuffle_buffer": 2})

    @property
    def option_variants(self):
        return {"shards": [str(shard_dir() / "shard-000.tar")], "video_keys": ["webm"], "label_key": None}


def _clips(samples) -> list[tuple[int, tuple[float, ...]]]:
    """Order-free fingerprint of samples: (label, rounded per-frame means), sorted."""
    return sorted((int(s["label"]), tuple(round(float(m), 3) for m in s["video"].mean(dim=(1, 2, 3))))
                  for s in samples)


def test_shards_stream_the_same_clips_as_the_folder():
    opts = {"size": 16, "frames": 5, "stride": 2, "offset": "center"}
    folder = build("video_folder", {"root": str(video_tree()), **opts})
    shards = build("video_shards", {"shards": [str(shard_dir() / "*.tar")], **opts})
    streamed = list(shards.iterate(epoch=0, rank=0, world_size=1, seed=0))
    assert len(streamed) == len(folder) == 8
    assert _clips(streamed) == _clips(folder[i] for i in range(len(folder)))


@pytest.mark.parametrize("per_shard", [3, 8])  # 3 shards for 2 ranks (dealt by shard), or 1 (by sample)
def test_ddp_ranks_get_disjoint_shares_that_cover_the_epoch(per_shard, tmp_path):
    _write_shards(tmp_path, video_tree(), per_shard)
    src = build("video_shards", {"shards": [str(tmp_path / "*.tar")], "size": 16, "frames": 2, "shuffle_buffer": 3})
    for epoch in (0, 1):
        keys = [[k for _, k, _ in src.raw(epoch=epoch, rank=r, world_size=2, seed=7)] for r in (0, 1)]
        assert keys[0] and keys[1] and not set(keys[0]) & set(keys[1])
        assert sorted(keys[0] + keys[1]) == sorted(k for _, k, _ in src.raw(epoch=0, rank=0, world_size=1, seed=7))


def test_shuffle_is_seeded_by_seed_and_epoch_and_random_offsets_change_per_epoch():
    src = build("video_shards", {"shards": [str(shard_dir() / "*.tar")], "size": 16, "frames": 3, "shuffle_buffer": 4})
    order = [k for _, k, _ in src.raw(epoch=0, rank=0, world_size=1, seed=1)]
    assert order == [k for _, k, _ in src.raw(epoch=0, rank=0, world_size=1, seed=1)]
    others = [[k for _, k, _ in src.raw(epoch=e, rank=0, world_size=1, seed=s)] for e, s in [(1, 1), (0, 2)]]
    assert all(sorted(o) == sorted(order) for o in others) and any(o != order for o in others)
    a, again = (list(src.iterate(epoch=0, rank=0, world_size=1, seed=1)) for _ in range(2))
    assert all(torch.equal(x["video"], y["video"]) for x, y in zip(a, again, strict=True))
    epochs = [_clips(src.iterate(epoch=e, rank=0, world_size=1, seed=1)) for e in range(4)]
    assert any(e != epochs[0] for e in epochs[1:])  # a new random window in some later epoch


def test_bad_shards_and_videos_are_skipped_and_counted(tmp_path):
    shards = _write_shards(tmp_path, _bad_tree(tmp_path), per_shard=4)
    data = shards[0].read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        src = build("video_shards", {"shards": [str(tmp_path / "*.tar")], "size": 16, "frames": 4})
    assert len(src.shards) == len(shards)
    with pytest.warns(UserWarning, match="skipped"):
        samples = list(src.iterate(epoch=0, rank=0, world_size=1, seed=0))
    assert len(samples) == 8 and src.skipped == 2 + 5
    list(src.iterate(epoch=1, rank=0, world_size=1, seed=0))  # each bad video is counted once
    assert src.skipped == 7
    strict = build("video_shards", {"shards": [str(p) for p in shards], "size": 16, "frames": 4, "on_error": "raise"})
    with pytest.raises(ValueError, match="unreadable shard or video .*tar:"):
        list(strict.iterate(epoch=0, rank=0, world_size=1, seed=0))


# ----------------------------------------------------------------------------- serving


@pytest.mark.parametrize("name", ["moving_mnist", "video_folder", "video_shards"])
def test_every_video_source_registers_a_lazy_clip_decoder(name):
    component = get_plugin_manager().registry.get("data_source", name)
    assert getattr(component.decoder, "lazy_target", "") == "selfsup_video.data.serving:clip_decoder"


def test_a_served_clip_is_the_sources_sample_and_bad_clips_are_refused():
    from selfsup.components import BadInput, Decoder

    options = {"n": 4, "frames": 6, "channels": 3, "size": 24, "digit_size": 10}
    context = BuildContext(name="x")
    source = context.build("data", "moving_mnist", options)
    decoder = context.decoder("moving_mnist", options)
    assert isinstance(decoder, Decoder) and decoder.fields == {"video": "tensor"}
    sample, stats = decoder({"video": source[2]["video"].tolist()})
    assert torch.equal(sample["video"], source[2]["video"]) and stats["frames"] == 6
    for raw, status, match in [({}, 422, "missing"), ({"video": [[0.5]]}, 422, "shape"),
                               ({"video": (source[0]["video"] * 2 - 0.5).tolist()}, 422, r"\[0, 1\]")]:
        with pytest.raises(BadInput, match=match) as info:
            decoder(raw)
        assert info.value.field == "video" and info.value.status == status
    folder = context.decoder("video_folder", {"root": str(video_tree()), "size": 16, "frames": 4, "channels": 1})
    assert folder({"video": torch.rand(4, 1, 16, 16).tolist()})[0]["video"].shape == (4, 1, 16, 16)
