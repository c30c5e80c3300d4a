"""The real-video check: clips of real photos with camera motion, encoded with real codecs, read back.

No video data set ships offline (docs/video.md). What does: scikit-learn's two sample photos
(``load_sample_images``: china.jpg and flower.jpg, 427x640, installed with scikit-learn). A camera pan
and a zoom over each photo give clips with natural-image content (texture, colour, edges: what
codecs are tuned for and synthetic digits lack) and a motion known exactly, so the test can check
both that the decoded pixels are the encoded ones and that the motion survives encoding and
decoding. The clips are encoded here with PyAV as H.264 in mp4 and VP9 in webm (the codecs of
most real video), then read by ``video_folder``; truncated copies of them must be found and counted.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup_video.data.decode import write_video

FRAMES, SIDE, PAN = 16, 64, 4  # frames per clip, frame side, pan speed in output pixels per frame


def build(name, options):
    comp = get_plugin_manager().registry.get("data_source", name)
    return comp.build(comp.options.model_validate(options), BuildContext(name=name))


def camera(photo: np.ndarray, motion: str) -> np.ndarray:
    """``[FRAMES, SIDE, SIDE, 3]`` uint8: a 192 px window panning right by 12 px (= PAN output pixels) per
    frame, or zooming in from 384 to 192 px around the centre, resized to SIDE with PIL's area filter."""
    h, w, _ = photo.shape
    out = []
    for t in range(FRAMES):
        if motion == "pan":
            side, left, top = 192, 20 + 12 * t, (h - 192) // 2
        else:
            side = round(384 - 192 * t / (FRAMES - 1))
            left, top = (w - side) // 2, (h - side) // 2
        window = Image.fromarray(photo[top: top + side, left: left + side])
        out.append(np.asarray(window.resize((SIDE, SIDE), Image.Resampling.BOX)))
    return np.stack(out)


@pytest.fixture(scope="module")
def real_clips(tmp_path_factory):
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    root = tmp_path_factory.mktemp("real")
    originals = {}
    for name, photo in zip(["china", "flower"], photos.images):
        (root / name).mkdir()
        for motion in ("pan", "zoom"):
            frames = camera(photo, motion)
            for ext in (".mp4", ".webm"):
                write_video(root / name / f"{motion}{ext}", frames, fps=15)
                originals[(name, motion, ext)] = frames
    return root, originals


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255**2 / mse)


def best_shift(a: np.ndarray, b: np.ndarray, max_shift: int = 8) -> int:
    """The horizontal shift s minimising the error between frame a's columns s: and frame b's
    (b is a moved left by s pixels)."""
    errors = [float(((a[:, s:].astype(float) - b[:, : SIDE - s].astype(float)) ** 2).mean()) for s in range(max_shift)]
    return int(np.argmin(errors))


def test_real_clips_decode_to_the_encoded_frames_with_their_motion(real_clips):
    root, originals = real_clips
    src = build("video_folder", {"root": str(root), "size": SIDE, "frames": FRAMES, "offset": "start"})
    assert len(src) == 8 and src.bad_files.total() == 0 and src.frame_counts == [FRAMES] * 8
    assert src.classes == ["china", "flower"]
    for i, path in enumerate(src.files):
        s = src[i]
        assert s["label"] == src.classes.index(path.parent.name)
        video = (s["video"] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # [T, H, W, 3]
        original = originals[(path.parent.name, path.stem, path.suffix)]
        quality = [psnr(video[t], original[t]) for t in range(FRAMES)]
        print(path.parent.name, path.name, f"PSNR {min(quality):.1f}-{max(quality):.1f} dB")
        assert min(quality) > 27, (path, quality)  # H.264/VP9 at 4 Mbit/s, 4:2:0 chroma, 64x64: close to the source
        # and each decoded frame is its own source frame, not a neighbour (time order and no dropped frame)
        assert all(psnr(video[t], original[t]) > psnr(video[t], original[t + 1]) + 3 for t in range(FRAMES - 1))
        if path.stem == "pan":  # the camera moved right by PAN pixels per frame: the scene moves left
            shifts = [best_shift(video[t], video[t + 1]) for t in range(FRAMES - 1)]
            assert np.median(shifts) == PAN, (path, shifts)
        else:  # zooming in: the centre grows, so the outer ring of frame 0 is gone from the last frame
            assert psnr(video[0], video[-1]) < psnr(video[0], video[1])


def test_truncated_real_videos_are_found_and_counted(real_clips, tmp_path):
    root, _ = real_clips
    copy = tmp_path / "real"
    shutil.copytree(root, copy)
    for name in ("pan.mp4", "zoom.webm"):
        data = (copy / "china" / name).read_bytes()
        (copy / "china" / f"cut-{name}").write_bytes(data[: int(len(data) * 0.7)])
    with pytest.warns(UserWarning, match="skipped 2 unreadable video"):
        src = build("video_folder", {"root": str(copy), "size": 32, "frames": 8, "offset": "uniform"})
    assert len(src) == 8 and sorted(p.split("/")[-1] for p, _ in src.skipped) == ["cut-pan.mp4", "cut-zoom.webm"]
    assert src[0]["video"].shape == (8, 3, 32, 32)


def test_a_recipe_trains_on_streamed_shards_and_evaluates_on_the_folder(real_clips, tmp_path, one_thread, monkeypatch):
    """The sources through the core's loop as a recipe uses them: CVRL on the real clips streamed from tar shards
    (contract check, data loader, shuffle buffer), kNN fitted and scored on the same clips read by video_folder."""
    import tarfile

    from selfsup import api

    monkeypatch.setenv("SELFSUP_MLFLOW", "0")  # an installed run logger stays off (its own suite tests it)
    root, _ = real_clips
    with tarfile.open(tmp_path / "real.tar", "w") as tar:
        for k, path in enumerate(sorted(root.rglob("*.*"))):
            tar.add(path, arcname=f"{k:03d}{path.suffix}")
            (tmp_path / f"{k}.cls").write_text(str(int(path.parent.name == "flower")))
            tar.add(tmp_path / f"{k}.cls", arcname=f"{k:03d}.cls")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"""
seed = 0
[data.shards]
type = "video_shards"
options = {{ shards = ["real.tar"], size = 32, frames = 8, stride = 2, shuffle_buffer = 4 }}
[data.folder]
type = "video_folder"
options = {{ root = "{root}", size = 32, frames = 4, offset = "uniform" }}
[augmentations.clips]
type = "multi_clip"
options = {{ clips = 2, frames = 4, size = 32, flip = 0.0 }}
[backbones.cnn]
type = "r2plus1d"
options = {{ in_channels = 3, widths = [8, 16] }}
[tasks.cvrl]
type = "cvrl"
data = "shards"
augment = ["clips"]
backbone = "cnn"
[evaluators.knn]
type = "knn"
data = "folder"
fit_data = "folder"
options = {{ k = 3 }}
[train]
batch_size = 4
max_steps = 3
log_every = 1
tensorboard = false
""")
    run = api.train(recipe, [f'output_dir="{tmp_path / "run"}"'])
    assert run.status == "completed" and run.step == 3
    metrics = run.metrics
    assert 0 <= metrics["knn/accuracy"] <= 1 and metrics["loss"] == metrics["loss"]  # a number, not NaN
