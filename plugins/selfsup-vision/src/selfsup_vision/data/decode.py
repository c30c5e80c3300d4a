"""Decoding image bytes/files into ``[C, size, size]`` float tensors in [0, 1]."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps


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
    with Image.open(path) as img:
        img.load()
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
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return to_tensor(img, size, channels)
