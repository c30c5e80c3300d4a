"""Decoding image bytes/files into ``[C, size, size]`` float tensors in [0, 1].

One code path for training and serving: :func:`loaded` opens and fully decodes an image (the
folder and shard sources, and the serving decoders of :mod:`selfsup_vision.data.serving`, all go
through it), :func:`to_tensor` is the folder and shard sources' preprocessing."""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps


class ImageTooLarge(ValueError):
    """An image whose header gives more than ``limit`` pixels: refused before it is decoded."""

    def __init__(self, width: int, height: int, limit: int):
        super().__init__(f"image is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the limit of "
                         f"{limit / 1e6:g} megapixels")
        self.width, self.height, self.limit = width, height, limit


@contextmanager
def loaded(fp: str | Path | IO[bytes], *, max_pixels: int | None = None,
           formats: Sequence[str] | None = None) -> Iterator[Image.Image]:
    """The image in ``fp``, fully decoded (a truncated or corrupt file raises here, not later).

    ``max_pixels``: raise :class:`ImageTooLarge` when the header's width x height is over it, before
    any pixel is decoded (decompression bombs; PIL's own check at open stops only images over twice
    ``Image.MAX_IMAGE_PIXELS``). ``formats``: the PIL formats to try (default: all)."""
    with Image.open(fp, formats=None if formats is None else list(formats)) as img:
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ImageTooLarge(img.width, img.height, max_pixels)
        img.load()
        yield img


def to_tensor(img: Image.Image, size: int, channels: int) -> torch.Tensor:
    """Resize the shorter side to ``size``, centre-crop to a square, convert to C channels."""
    img = img.convert("L" if channels == 1 else "RGB")
    img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[None]  # [1, H, W]
    else:
        arr = arr.transpose(2, 0, 1)  # [3, H, W]
    return torch.from_numpy(np.ascontiguousarray(arr))


def decode_file(path: Path, size: int, channels: int) -> torch.Tensor:
    with loaded(path) as img:
        return to_tensor(img, size, channels)


def check_file(path: Path, size: int, decode: bool = True) -> None:
    """Raise if ``path`` is not a complete, decodable image: PIL's structural check (``verify``: PNG
    checksums, ...) and then (``decode``) a full decode, which finds truncated and corrupt JPEGs that
    ``verify`` passes. JPEGs are decoded at the smallest DCT scale still at least ``size`` (draft mode),
    which reads every byte of the file at a fraction of the cost."""
    with Image.open(path) as img:
        img.verify()
    if not decode:
        return
    with Image.open(path) as img:
        img.draft(img.mode, (size, size))
        img.load()


def decode_bytes(data: bytes, size: int, channels: int) -> torch.Tensor:
    with loaded(io.BytesIO(data)) as img:
        return to_tensor(img, size, channels)
