"""Decoding video files and bytes into ``[T, C, size, size]`` float clips in [0, 1] with PyAV.

PyAV (the ``av`` package) wraps FFmpeg's demuxers and decoders (mp4/mov/mkv/webm/avi/gif; H.264,
VP8/9, MPEG-4, GIF, ...) and ships its own FFmpeg build, so no system codec is needed. One code path
serves the folder and shard sources:

* :func:`check_video` decodes a whole video once (no pixel conversion) and returns its frame count,
  raising when it cannot be opened, has no video stream or no frame, or is cut short: fewer frames
  than the container declares (mp4, avi), a decoded length well short of the container's duration
  (webm/mkv), or a GIF without its trailer byte.
* :func:`decode_sampled` decodes a whole video (checked as :func:`check_video` checks) and converts
  only the frames a clip takes from it, picked from the frame count the container declares.
* :func:`decode_clip` decodes up to the last frame a clip needs (frames before the clip are decoded,
  never converted) and converts only the clip's frames: FFmpeg's swscale resizes the shorter side to
  ``size`` (area filter) and the frame is centre-cropped to a square.
* :func:`write_video` encodes ``[T, H, W, 3]`` uint8 frames (tests, benchmarks, building shards).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Callable, Sequence

import av
import numpy as np
import torch

from selfsup_video.augment.temporal import clip_indices

Source = str | Path | IO[bytes]


def _open(src: Source | bytes) -> av.container.InputContainer:
    return av.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src, "r")


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise ValueError("no video stream")
    return container.streams.video[0]


def _check_gif(src: Source | bytes, name: str) -> None:
    if str(name or src).lower().endswith(".gif") or (isinstance(src, (bytes, bytearray)) and src[:3] == b"GIF"):
        data = src if isinstance(src, (bytes, bytearray)) else Path(src).read_bytes()
        if not data.rstrip(b"\0").endswith(b";"):
            raise ValueError("truncated GIF: no trailer byte")


def _complete(src: Source | bytes, name: str = "", size: int | None = None, channels: int = 3,
              choose: Callable[[int], list[int]] | None = None) -> tuple[int, dict[int, np.ndarray], list[int] | None]:
    """Decode every frame; raise if the video is unreadable or cut short. With ``size``, frames are converted:
    all of them, or, with ``choose`` (a video's length -> the frame indices wanted), only those ``choose``
    picks from the frame count the container declares (mp4, avi, gif; ``choose`` is then called before
    decoding) or, where none is declared (webm), all of them and ``choose`` is called with the decoded count.
    Returns ``(frame count, converted frames by index, chosen indices or None)``."""
    _check_gif(src, name)
    converted: dict[int, np.ndarray] = {}
    indices: list[int] | None = None
    with _open(src) as container:
        stream = _video_stream(container)
        declared = stream.frames
        if choose is not None and declared:
            indices = choose(declared)
        wanted = set(indices) if indices is not None else None
        rate = float(stream.average_rate) if stream.average_rate else None
        n, last_end = 0, None
        for frame in container.decode(stream):
            if size is not None and (wanted is None or n in wanted):
                converted[n] = _to_array(frame, size, channels)
            n += 1
            if frame.pts is not None and frame.time_base is not None:
                last_end = float(frame.pts * frame.time_base) + (1 / rate if rate else 0.0)
        if n == 0:
            raise ValueError("no decodable frame")
        if declared and n < declared:
            raise ValueError(f"truncated: decoded {n} of {declared} frames")
        duration = container.duration / 1e6 if container.duration else None  # seconds
        if duration and rate and last_end is not None:
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            if duration - (last_end - start) > max(2 / rate, 0.05 * duration):
                raise ValueError(f"truncated: frames end at {last_end - start:.2f}s of {duration:.2f}s")
    if choose is not None and indices is None:
        indices = choose(n)
    return n, converted, indices


def check_video(src: Source | bytes, name: str = "") -> int:
    """The number of frames of the video in ``src``, decoded completely; raises if it is unreadable or truncated."""
    return _complete(src, name)[0]


def decode_sampled(src: Source | bytes, choose: Callable[[int], list[int]], size: int, channels: int,
                   name: str = "") -> np.ndarray:
    """The frames ``choose(frame count)`` picks, as uint8 ``[len(indices), C, size, size]``: the whole video is
    decoded in one pass and checked as :func:`check_video` checks, but only the chosen frames are converted
    when the container declares its frame count (otherwise every frame is, and the chosen ones kept)."""
    _, frames, indices = _complete(src, name, size, channels, choose)
    clip = np.stack([frames[i] for i in indices])  # [T, size, size(, 3)]
    return clip[:, None] if channels == 1 else clip.transpose(0, 3, 1, 2)


def _to_array(frame: av.VideoFrame, size: int, channels: int) -> np.ndarray:
    """One frame, shorter side resized to ``size`` and centre-cropped: uint8 ``[size, size]`` or ``[size, size, 3]``."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    fmt = "gray" if channels == 1 else "rgb24"
    arr = frame.reformat(width=nw, height=nh, format=fmt, interpolation="AREA").to_ndarray()
    top, left = (nh - size) // 2, (nw - size) // 2
    return arr[top: top + size, left: left + size]


def sample_indices(length: int, frames: int, stride: int, offset: str,
                   generator: torch.Generator | None) -> list[int]:
    """Frame indices of a clip: ``uniform`` spreads ``frames`` over the whole video (the centres of equal
    segments, TSN-style); the other offsets cut ``frames`` frames every ``stride`` (see ``clip_indices``)."""
    if offset == "uniform":
        return [min(length - 1, int((i + 0.5) * length / frames)) for i in range(frames)]
    return clip_indices(length, frames, stride, offset, generator).tolist()


def decode_clip(src: Source | bytes, indices: Sequence[int], size: int, channels: int) -> torch.Tensor:
    """Frames ``indices`` (ascending, repeats allowed) of the video, as float32 ``[len(indices), C, size, size]``.

    Indices past the end of the video take its last frame."""
    wanted = set(indices)
    stop = max(wanted)
    got: dict[int, np.ndarray] = {}
    last = None
    with _open(src) as container:
        stream = _video_stream(container)
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                got[i] = _to_array(frame, size, channels)
            last = (i, frame)
            if i >= stop:
                break
    if last is None:
        raise ValueError("no decodable frame")
    end, frame = last
    missing = [i for i in wanted if i not in got]
    if missing:
        tail = got.get(end)
        tail = _to_array(frame, size, channels) if tail is None else tail
        for i in missing:
            got[i] = tail
    clip = np.stack([got[i] for i in indices])  # [T, size, size(, 3)] uint8
    return to_float(clip[:, None] if channels == 1 else clip.transpose(0, 3, 1, 2))  # [T, C, size, size]


def to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames as a float32 tensor in [0, 1], converted in numpy: torch would split these small ops across
    its intra-op threads, which on a busy machine costs more than the work (milliseconds per clip)."""
    return torch.from_numpy(np.divide(frames, np.float32(255), dtype=np.float32))


def write_video(path: Source, frames: np.ndarray, *, fps: int = 10, codec: str | None = None,
                format: str | None = None, bit_rate: int = 4_000_000) -> None:
    """Encode uint8 ``[T, H, W, 3]`` frames (even H and W for yuv420p codecs). ``codec`` defaults by the
    extension: libx264 (.mp4/.mkv/.mov), libvpx-vp9 (.webm), mpeg4 (.avi), gif (.gif); ``bit_rate`` is the
    target of the codecs that take one (mpeg4's default of 200 kbit/s blurs late frames visibly)."""
    ext = Path(str(path)).suffix.lower() if not hasattr(path, "write") else f".{format or 'mp4'}"
    codec = codec or {".webm": "libvpx-vp9", ".avi": "mpeg4", ".gif": "gif"}.get(ext, "libx264")
    with av.open(path, "w", format=format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        if codec != "gif":
            stream.bit_rate = bit_rate
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
