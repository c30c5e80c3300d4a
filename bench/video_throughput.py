"""Video data throughput: clips/s with decoding included, and decoding's share of a small training step.

Videos: ``--videos`` clips of ``--length`` frames, camera pans over scikit-learn's two sample photos
(each video its own start and direction), at ``--res`` x ``--res`` pixels, encoded here as H.264 mp4
(PyAV/libx264, 4 Mbit/s) into a temporary folder, and the same files as webdataset tar shards.

Measured, one process (``num_workers = 0``), torch with ``--threads`` threads:

1. Source build: ``video_folder`` decodes every file once when built (frame counts, bad-file check).
2. Clips/s of the source alone and of ``sample -> clip_crop -> clip_flip``, 16-frame 32x32 clips,
   from ``moving_mnist`` (generated, in memory), ``video_folder`` (``frames = 16, stride = 2``, random offset: decoding
   stops at the clip's last frame) and ``video_shards`` (each video decoded whole and converted).
3. A small training step: the ``r2plus1d`` backbone (widths 16/32/64, (2+1)D) forward + backward +
   AdamW on a batch of ``--batch`` clips, with the batch read from each source in the same loop;
   decoding's share = data time / (data time + step time).

Each measurement is repeated ``--repeats`` rounds (sources alternating within a round); the table
gives the median and the range.

Prints a Markdown table headed by the machine description.

    nice -n 10 .venv/bin/python bench/video_throughput.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine  # bench/machine.py
from PIL import Image
from torch.utils.data import default_collate

from selfsup.components import BuildContext
from selfsup.lib import sample_generator
from selfsup.plugins import get_plugin_manager
from selfsup_video.data.decode import write_video

FRAMES, SIZE = 16, 32


def build(kind: str, name: str, options: dict):
    comp = get_plugin_manager().registry.get(kind, name)
    return comp.build(comp.options.model_validate(options), BuildContext(name=name))


def make_videos(root: Path, n: int, length: int, res: int) -> list[Path]:
    """``n`` camera pans over the two sklearn photos, H.264 mp4, under root/<photo>/."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        photo = photos[i % 2]
        h, w, _ = photo.shape
        side = int(rng.integers(160, 240))
        step = rng.uniform(-1, 1, size=2) * (min(h, w) - side) / length
        top0, left0 = rng.uniform(0, h - side), rng.uniform(0, w - side)
        frames = []
        for t in range(length):
            top = int(np.clip(top0 + step[0] * t, 0, h - side))
            left = int(np.clip(left0 + step[1] * t, 0, w - side))
            window = Image.fromarray(photo[top: top + side, left: left + side])
            frames.append(np.asarray(window.resize((res, res), Image.Resampling.BILINEAR)))
        path = root / ("china" if i % 2 == 0 else "flower") / f"{i:04d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, np.stack(frames), fps=25)
        paths.append(path)
    return paths


def make_shards(root: Path, videos: list[Path], per_shard: int) -> str:
    for k in range(0, len(videos), per_shard):
        with tarfile.open(root / f"shard-{k // per_shard:04d}.tar", "w") as tar:
            for p in videos[k: k + per_shard]:
                for name, data in [(f"{p.parent.name}_{p.stem}.mp4", p.read_bytes()),
                                   (f"{p.parent.name}_{p.stem}.cls", b"0" if p.parent.name == "china" else b"1")]:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(root / "*.tar")


def clip_stream(name: str, source, pipeline, n: int):
    """``n`` augmented samples of ``source`` (cycled), seeded per position."""
    if name.startswith("video_shards"):
        epoch = 0
        while True:
            for i, s in enumerate(source.iterate(epoch=epoch, rank=0, world_size=1, seed=0)):
                yield apply(s, pipeline, i)
            epoch += 1
    i = 0
    while True:
        yield apply(source[i % len(source)], pipeline, i)
        i += 1


@contextlib.contextmanager
def every_frame_converted():
    """``video_shards`` as before 2026-12-07: every decoded frame converted to the clip size, the clip picked
    after (now only the clip's frames are converted where the container declares its frame count)."""
    from selfsup_video.data import decode
    from selfsup_video.data import shards as module

    def decode_then_pick(src, choose, size, channels, name=""):
        n, frames, _ = decode._complete(src, name, size, channels)  # every frame converted
        clip = np.stack([frames[i] for i in choose(n)])
        return clip[:, None] if channels == 1 else clip.transpose(0, 3, 1, 2)

    current = module.decode_sampled
    module.decode_sampled = decode_then_pick
    try:
        yield
    finally:
        module.decode_sampled = current


def apply(sample, pipeline, i):
    g = sample_generator(0, 0, 0, i)
    for step in pipeline:
        sample = step(sample, g)
    return {"video": sample["video"]}


def clips_per_second(name: str, source, pipeline, n: int) -> float:
    it = clip_stream(name, source, pipeline, n)
    next(it)  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - start)


def training_share(name: str, source, pipeline, channels: int, batch: int, steps: int) -> tuple[float, float, float]:
    """``(data seconds per batch, step seconds per batch, data share)`` over ``steps`` timed steps."""
    torch.manual_seed(0)
    backbone = build("backbone", "r2plus1d", {"in_channels": channels, "widths": [16, 32, 64]})
    opt = torch.optim.AdamW(backbone.parameters(), lr=1e-3)
    it = clip_stream(name, source, pipeline, batch * (steps + 1))
    data_t, step_t = [], []
    for k in range(steps + 1):
        t0 = time.perf_counter()
        b = default_collate([next(it) for _ in range(batch)])
        t1 = time.perf_counter()
        loss = backbone.embed(b).pow(2).mean()  # the backbone's pass, as any pretext task makes it
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if k:  # the first step warms up
            data_t.append(t1 - t0)
            step_t.append(t2 - t1)
    d, s = statistics.median(data_t), statistics.median(step_t)
    return d, s, d / (d + s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--length", type=int, default=48, help="frames per encoded video")
    ap.add_argument("--res", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--clips", type=int, default=96, help="clips timed per source")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    print()
    pipe1 = [build("augmentation", "clip_crop", {"size": SIZE, "scale": (0.6, 1.0)}),
             build("augmentation", "clip_flip", {})]
    rows = []
    mm = build("data_source", "moving_mnist", {"n": 2000, "frames": FRAMES, "size": SIZE})
    rows.append(("moving_mnist (in memory)", "-", "-", mm, 1, "moving_mnist"))
    tmps = []
    for res in args.res:
        tmp = tempfile.TemporaryDirectory(prefix="video-throughput-")
        tmps.append(tmp)
        root = Path(tmp.name)
        t0 = time.perf_counter()
        videos = make_videos(root / "videos", args.videos, args.length, res)
        encode = time.perf_counter() - t0
        t0 = time.perf_counter()
        folder = build("data_source", "video_folder", {"root": str(root / "videos"), "size": SIZE, "frames": FRAMES,
                                                       "stride": 2})
        scan = time.perf_counter() - t0
        (root / "shards").mkdir()
        shards = build("data_source", "video_shards", {"shards": [make_shards(root / "shards", videos, 8)],
                                                       "size": SIZE, "frames": FRAMES, "stride": 2,
                                                       "shuffle_buffer": 16})
        print(f"{res}x{res}: encoded {args.videos} videos of {args.length} frames in {encode:.1f} s; "
              f"video_folder build (decodes every file once) {scan:.2f} s = "
              f"{args.videos * args.length / scan:.0f} frames/s")
        rows.append((f"video_folder, mp4 {res}x{res}", res, scan, folder, 3, "video_folder"))
        rows.append((f"video_shards, mp4 {res}x{res}", res, None, shards, 3, "video_shards"))
        rows.append((f"video_shards, mp4 {res}x{res}, every frame converted (before)", res, None, shards, 3,
                     "video_shards_every_frame"))
    print()
    results: dict[str, list[tuple[float, ...]]] = {row[0]: [] for row in rows}
    for _ in range(args.repeats):  # rounds alternate the sources, so a burst of load hits them all
        for label, _, _, source, channels, name in rows:
            with every_frame_converted() if name == "video_shards_every_frame" else contextlib.nullcontext():
                raw = clips_per_second(name, source, [], args.clips)
                cps = clips_per_second(name, source, pipe1, args.clips)
                share = training_share(name, source, pipe1, channels, args.batch, args.steps)
            results[label].append((raw, cps, *share))
    print(f"| source | clips/s, source only | clips/s with crop+flip | data s/batch of {args.batch} | "
          f"r2plus1d step s/batch | data share of step |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")

    def cell(values: list[float], fmt: str) -> str:
        return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"

    for label, runs in results.items():
        raw, cps, d, s, share = (list(v) for v in zip(*runs))
        print(f"| {label} | {cell(raw, '.0f')} | {cell(cps, '.0f')} | {cell(d, '.3f')} | {cell(s, '.3f')} | "
              f"{cell([100 * x for x in share], '.0f')} % |", flush=True)
    print(f"\nmedian (min-max) over {args.repeats} rounds")
    for res in args.res:  # converting only the clip's frames, against every frame, measured in this run
        now = results[f"video_shards, mp4 {res}x{res}"]
        before = results[f"video_shards, mp4 {res}x{res}, every frame converted (before)"]
        ratio = [a[0] / b[0] for a, b in zip(now, before)]  # per round: source-only clips/s
        print(f"video_shards {res}x{res}: clips/s now / every frame converted = {statistics.median(ratio):.2f}x "
              f"({min(ratio):.2f}-{max(ratio):.2f})")
    for tmp in tmps:
        tmp.cleanup()


if __name__ == "__main__":
    main()
