"""The ``prepare-images`` pipeline: image files -> WebDataset tar shards (``KEY.jpg`` + ``KEY.cls``) and
``manifest.json``.

Per image, in a thread pool (PIL releases the GIL while it decodes, resizes and encodes; results are
taken in order, so the output does not depend on the number of workers): open, refuse images over
``max_pixels`` before decoding, decode (a JPEG at the smallest DCT scale still at least the target
size, PIL's draft mode), apply the EXIF orientation, convert to RGB (transparency over white), resize
so the longer side is at most ``max_side`` (Lanczos; never upscaled), encode. The order of the images
is shuffled with ``seed`` before they are dealt to shards, so each shard mixes the classes (the
``webdataset`` source's shuffle buffer only mixes nearby samples). Tars have fixed member metadata
(reproducible bytes); each is written to a hidden temporary file and renamed when complete, and
``manifest.json`` (shard sizes and SHA-256, every sample, the counts) last.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from selfsup.lib.data import find_inputs

#: File name endings read from input folders (case-insensitive).
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
#: Reasons an image is left out.
REASONS = ("unreadable", "truncated", "too_small", "too_large")
#: The member extension of each output format (the ``webdataset`` source's ``image_keys``).
MEMBER = {"jpeg": "jpg", "png": "png", "webp": "webp"}
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class Settings:
    max_side: int = 256
    format: str = "jpeg"
    quality: int = 90
    shard_size_mb: float = 64.0
    min_side: int = 16
    max_pixels: int = 178_956_970  # PIL's own decompression-bomb limit (twice Image.MAX_IMAGE_PIXELS)
    seed: int = 0
    workers: int = 1


@dataclass
class Summary:
    found: int = 0
    written: int = 0
    resized: int = 0
    bad: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    shards: int = 0
    bytes: int = 0
    source_bytes: int = 0

    def text(self) -> str:
        bad = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in self.bad.items() if n) or "none"
        return (f"images: {self.found} found, {self.written} written ({self.resized} resized); left out: {bad}\n"
                f"shards: {self.shards} ({self.bytes / 1e6:.1f} MB, from {self.source_bytes / 1e6:.1f} MB of "
                f"input files)")




class Rejected(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Encoded:
    data: bytes
    size: tuple[int, int]  # written (width, height)
    source_size: tuple[int, int]  # the input's (width, height) as seen, after the EXIF orientation


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the longer side is ``max_side``; unchanged when already no longer."""
    longer = max(width, height)
    if longer <= max_side:
        return width, height
    scale = max_side / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode(path: Path, settings: Settings) -> Encoded:
    """The image at ``path``, oriented, RGB, at most ``max_side`` on its longer side, encoded; raises
    :class:`Rejected` saying why not."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > settings.max_pixels:
                raise Rejected("too_large", f"{width}x{height}, over --max-pixels {settings.max_pixels}")
            if min(width, height) < settings.min_side:
                raise Rejected("too_small", f"{width}x{height}, shorter side under --min-side {settings.min_side}")
            stored = target_size(width, height, settings.max_side)  # in the file's own orientation
            if img.format == "JPEG":  # decode at a reduced DCT scale still at least the target size
                img.draft("RGB", stored)
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation: turned by 90 degrees
                width, height, stored = height, width, stored[::-1]
            scaled = stored  # as seen, after the orientation
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")  # transparency over white
                img = Image.new("RGB", rgba.size, (255, 255, 255))
                img.paste(rgba, mask=rgba.getchannel("A"))
            else:
                img = img.convert("RGB")
    except Rejected:
        raise
    except Exception as exc:  # noqa: BLE001 - anything PIL cannot read is unreadable
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        text = str(exc).lower()
        reason = "truncated" if "truncated" in text else "too_large" if "decompression bomb" in text else "unreadable"
        raise Rejected(reason, message) from None
    if img.size != scaled:
        img = img.resize(scaled, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if settings.format == "jpeg":
        img.save(buffer, format="JPEG", quality=settings.quality)
    elif settings.format == "webp":
        img.save(buffer, format="WEBP", quality=settings.quality, method=4)
    else:
        img.save(buffer, format="PNG", compress_level=6)
    return Encoded(buffer.getvalue(), img.size, (width, height))


def encoded_in_order(files: list[Path], settings: Settings) -> Iterator[tuple[Path, Encoded | Rejected]]:
    """``(file, Encoded or Rejected)`` of every file, in order; at most a few files per worker ahead."""

    def attempt(path: Path) -> Encoded | Rejected:
        try:
            return encode(path, settings)
        except Rejected as rejected:
            return rejected

    workers = max(1, settings.workers)
    with ThreadPoolExecutor(workers, thread_name_prefix="prepare-images") as pool:
        for start in range(0, len(files), 4 * workers):
            part = files[start : start + 4 * workers]
            yield from zip(part, pool.map(attempt, part))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


class TarShards:
    """``out/shard-NNNNN.tar`` shards of webdataset samples, a new one once a shard holds ``shard_bytes``;
    each written to ``out/.tmp-...`` and renamed when closed. ``shards`` lists the closed ones."""

    def __init__(self, out: Path, shard_bytes: int):
        self.out, self.shard_bytes = out, shard_bytes
        self.shards: list[dict[str, Any]] = []
        self._tar: tarfile.TarFile | None = None
        self._samples = 0

    @property
    def name(self) -> str:
        return f"shard-{len(self.shards):05d}.tar"

    def add(self, key: str, members: dict[str, bytes]) -> int:
        """Write one sample (``{extension: bytes}``); returns the index of its shard."""
        if self._tar is not None and self._tar.offset >= self.shard_bytes:
            self.close()
        if self._tar is None:
            self._tar = tarfile.open(self.out / f".tmp-{self.name}", mode="w", format=tarfile.USTAR_FORMAT)
            self._samples = 0
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                len(data), 0, 0o644, 0, 0, "", "")
            self._tar.addfile(info, io.BytesIO(data))
        self._samples += 1
        return len(self.shards)

    def close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._tar = None
        tmp, final = self.out / f".tmp-{self.name}", self.out / self.name
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self.shards.append({"file": final.name, "bytes": final.stat().st_size, "sha256": _sha256(final),
                            "samples": self._samples})

    def abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
            (self.out / f".tmp-{self.name}").unlink(missing_ok=True)
            self._tar = None


def _clear(out: Path) -> None:
    """Remove what an earlier run wrote into ``out`` (its manifest first)."""
    (out / "manifest.json").unlink(missing_ok=True)
    for pattern in ("shard-*.tar", ".tmp-*"):
        for path in out.glob(pattern):
            path.unlink()


def prepare_images(inputs: Iterable[str], out: Path, settings: Settings, *, progress: Any = None) -> Summary:
    """Prepare ``inputs`` into ``out`` (created; shards of an earlier run there are replaced); returns the counts."""
    from selfsup.lib import BadFiles

    if settings.format not in MEMBER:
        raise ValueError(f"format must be one of {', '.join(MEMBER)}, not {settings.format!r}")
    inputs = list(inputs)
    files, labels = find_inputs(inputs, EXTENSIONS, what="image files")
    classes = sorted(set(labels)) if labels is not None else None  # image_folder's numbering
    order = list(range(len(files)))
    random.Random(settings.seed).shuffle(order)
    files = [files[i] for i in order]
    labels = [labels[i] for i in order] if labels is not None else None
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    summary = Summary(found=len(files))
    bad = BadFiles("prepare-images", "skip", what="image")
    writer = TarShards(out, int(settings.shard_size_mb * 2**20))
    samples: list[dict[str, Any]] = []
    ext = MEMBER[settings.format]
    try:
        for i, (path, result) in enumerate(encoded_in_order(files, settings)):
            summary.source_bytes += path.stat().st_size if path.is_file() else 0
            if isinstance(result, Rejected):
                summary.bad[result.reason] += 1
                bad.record(path, f"{result.reason}: {result}")
            else:
                key = f"{len(samples):08d}"
                label = labels[i] if labels is not None else None
                members = {ext: result.data}
                if classes is not None:
                    members["cls"] = str(classes.index(label)).encode()
                shard = writer.add(key, members)
                summary.resized += result.size != result.source_size
                samples.append({"key": key, "source": str(path), "label": label, "shard": shard,
                                "size": list(result.size), "source_size": list(result.source_size)})
            if progress is not None:
                progress(i + 1, len(files))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    if not samples:
        raise ValueError(f"no usable image in {', '.join(inputs)}: {bad.summary() or 'nothing found'}")
    summary.written, summary.shards = len(samples), len(writer.shards)
    summary.bytes = sum(s["bytes"] for s in writer.shards)
    manifest = {
        "kind": "image_shards", "version": LAYOUT_VERSION, "format": settings.format, "image_key": ext,
        "label_key": "cls" if classes is not None else None, "classes": classes,
        "settings": {"inputs": inputs, "max_side": settings.max_side, "quality": settings.quality,
                     "shard_size_mb": settings.shard_size_mb, "min_side": settings.min_side,
                     "max_pixels": settings.max_pixels, "seed": settings.seed},
        "counts": {"found": summary.found, "written": summary.written, "resized": summary.resized,
                   "source_bytes": summary.source_bytes, "shard_bytes": summary.bytes},
        "bad_files": {**summary.bad, "total": sum(summary.bad.values())},
        "skipped": [{"source": s, "reason": r} for s, r in bad.skipped],
        "shards": writer.shards,
        "samples": samples,
    }
    tmp = out / ".tmp-manifest.json"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    return summary
