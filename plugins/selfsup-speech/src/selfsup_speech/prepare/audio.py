"""The ``prepare-audio`` pipeline: audio files -> int16 (or FLAC) shards + ``manifest.json``.

Per file, in a thread pool (soundfile, numpy and torch release the GIL; results are taken in input order,
so the output does not depend on the number of workers): decode (soundfile), mix to mono and resample
to ``sample_rate`` (:func:`selfsup_speech.data.audio_io.to_waveform`, the path ``audio_folder`` reads
files with, so shards hold what that source would yield, quantized to int16), measure the loudness,
drop what fails a check (counted by reason), cut what is longer than ``max_seconds`` into equal pieces,
and append the int16 samples to the current shard. Shards are written to a hidden temporary file and
renamed when complete; ``manifest.json`` (shard sizes and SHA-256, every entry, the counts) last.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from selfsup.lib import BadFiles
from selfsup.lib.data import find_inputs

#: File name endings read from input folders (case-insensitive).
EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
#: Reasons a file is left out, in the order the manifest lists them.
REASONS = ("unreadable", "silent", "too_quiet", "too_short")
#: A sample at or above this magnitude is clipped: it saturates int16.
CLIP_LEVEL = 32767 / 32768
#: A kept file with more than this share of clipped samples is counted as ``clipped`` (not left out).
CLIPPED_FILE_SHARE = 0.001


@dataclass(frozen=True)
class Settings:
    sample_rate: int = 16000
    format: str = "int16"  # or "flac"
    shard_size_mb: float = 64.0
    min_dbfs: float = -60.0
    min_seconds: float = 0.0
    max_seconds: float | None = None
    workers: int = 1


@dataclass
class Summary:
    found: int = 0
    kept_files: int = 0
    entries: int = 0
    seconds: float = 0.0
    bad: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    cut_files: int = 0
    clipped_files: int = 0
    shards: int = 0
    bytes: int = 0

    def text(self) -> str:
        bad = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in self.bad.items() if n) or "none"
        return (f"files: {self.found} found, {self.kept_files} kept ({self.entries} entries, "
                f"{self.seconds / 3600:.2f} h); left out: {bad}; {self.cut_files} cut at --max-seconds, "
                f"{self.clipped_files} kept with clipping (> {CLIPPED_FILE_SHARE:.1%} of samples at full scale)\n"
                f"shards: {self.shards} ({self.bytes / 1e6:.1f} MB)")


# ------------------------------------------------------------------------------------------ inputs




# ------------------------------------------------------------------------------------------ one file


@dataclass
class Decoded:
    pieces: list[np.ndarray]  # int16 [T_i]; several when cut at max_seconds
    starts: list[int]  # first sample of each piece in the whole file (at sample_rate)
    source_rate: int
    channels: int
    rms_dbfs: float
    clipped: float  # share of samples at full scale


class Rejected(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def quantize(audio: np.ndarray) -> np.ndarray:
    """float32 ``[T]`` in [-1, 1] -> int16 ``[T]`` (``round(x * 32768)``, saturated)."""
    return np.clip(np.rint(audio * 32768.0), -32768, 32767).astype("<i2")


def loudness(audio: np.ndarray) -> tuple[float, float]:
    """``(rms_dbfs, clipped share)`` of float ``[T]``: RMS in dB relative to full scale (a full-scale
    square wave is 0 dBFS, a full-scale sine -3 dBFS; silence -inf), and the share of samples at or
    above ``CLIP_LEVEL``."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    dbfs = 20.0 * math.log10(rms) if rms > 0 else -math.inf
    return dbfs, float(np.mean(np.abs(audio) >= CLIP_LEVEL))


def decode(path: Path, settings: Settings) -> Decoded:
    """``path`` -> its int16 pieces at ``settings.sample_rate``; raises :class:`Rejected` saying why not."""
    import soundfile

    from selfsup_speech.data.audio_io import to_waveform

    try:
        frames, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    except Exception as exc:  # noqa: BLE001 - anything soundfile cannot read is unreadable
        raise Rejected("unreadable", f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
    if frames.shape[0] == 0:
        raise Rejected("unreadable", "no audio samples")
    if not np.isfinite(frames).all():
        raise Rejected("unreadable", "non-finite samples (NaN or infinity)")
    audio = to_waveform(frames, rate, settings.sample_rate)[0].numpy()  # [T'] mono float32
    dbfs, clipped = loudness(audio)
    if not audio.any():
        raise Rejected("silent", "only zero samples")
    if dbfs < settings.min_dbfs:
        raise Rejected("too_quiet", f"RMS {dbfs:.1f} dBFS, under --min-dbfs {settings.min_dbfs:g}")
    q = quantize(audio)
    if not q.any():
        raise Rejected("too_quiet", f"RMS {dbfs:.1f} dBFS: every sample rounds to 0 in int16")
    if q.size < settings.min_seconds * settings.sample_rate:
        seconds = q.size / settings.sample_rate
        raise Rejected("too_short", f"{seconds:.3f} s, under --min-seconds {settings.min_seconds:g}")
    starts = [0]
    if settings.max_seconds is not None:
        longest = max(1, int(settings.max_seconds * settings.sample_rate))
        n = math.ceil(q.size / longest)  # equal pieces: no short tail
        starts = [round(k * q.size / n) for k in range(n)]
    bounds = starts + [q.size]
    return Decoded([q[a:b] for a, b in zip(bounds, bounds[1:])], starts, int(rate), int(frames.shape[1]), dbfs,
                   clipped)


def decoded_in_order(files: list[Path], settings: Settings) -> Iterator[tuple[Path, Decoded | Rejected]]:
    """``(file, Decoded or Rejected)`` of every file, in order; ``settings.workers`` threads, at most a few
    files per worker decoded ahead (memory stays bounded)."""
    import torch

    def attempt(path: Path) -> Decoded | Rejected:
        try:
            return decode(path, settings)
        except Rejected as rejected:
            return rejected

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic whatever the machine; parallel over files instead
    try:
        with ThreadPoolExecutor(max(1, settings.workers), thread_name_prefix="prepare-audio") as pool:
            chunk = 4 * max(1, settings.workers)
            for start in range(0, len(files), chunk):
                part = files[start : start + chunk]
                yield from zip(part, pool.map(attempt, part))
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ shards


class ShardWriter:
    """Appends entries to ``out/shard-NNNNN.{bin,tar}``, a new shard once one holds ``shard_bytes``.

    Each shard is written to ``out/.tmp-shard-NNNNN...`` and renamed when closed; ``shards`` lists
    ``{"file", "bytes", "sha256", "entries"}`` of the closed ones."""

    def __init__(self, out: Path, fmt: str, shard_bytes: int, sample_rate: int):
        self.out, self.format, self.shard_bytes, self.sample_rate = out, fmt, shard_bytes, sample_rate
        self.shards: list[dict[str, Any]] = []
        self._file: Any = None
        self._tar: tarfile.TarFile | None = None
        self._size = self._entries = 0

    @property
    def name(self) -> str:
        return f"shard-{len(self.shards):05d}.{'bin' if self.format == 'int16' else 'tar'}"

    def _open(self) -> None:
        self._file = open(self.out / f".tmp-{self.name}", "wb")
        if self.format == "flac":
            self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self._size = self._entries = 0

    def add(self, key: str, samples: np.ndarray, label: int | None) -> dict[str, int]:
        """Write one entry; returns where it is: ``{"shard", "offset", "samples"}`` (int16: offset in
        samples) or ``{"shard", "offset", "bytes", "samples"}`` (flac: the FLAC member's byte range)."""
        if self._file is not None and self._size >= self.shard_bytes:
            self.close()
        if self._file is None:
            self._open()
        where = {"shard": len(self.shards)}
        if self.format == "int16":
            where["offset"] = self._size // 2
            self._file.write(samples.tobytes())
            self._size += samples.nbytes
        else:
            import soundfile

            buffer = io.BytesIO()
            soundfile.write(buffer, samples, self.sample_rate, format="FLAC", subtype="PCM_16")
            data = buffer.getvalue()
            where["offset"] = self._add_member(f"{key}.flac", data)
            where["bytes"] = len(data)
            if label is not None:
                self._add_member(f"{key}.cls", str(label).encode())
            self._size = self._tar.offset
        where["samples"] = int(samples.size)
        self._entries += 1
        return where

    def _add_member(self, name: str, data: bytes) -> int:
        """Add a file member with fixed metadata (reproducible tars); returns its data's byte offset."""
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
        offset = self._tar.offset + tarfile.BLOCKSIZE  # a ustar header is one block
        self._tar.addfile(info, io.BytesIO(data))
        return offset

    def close(self) -> None:
        if self._file is None:
            return
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        from selfsup_speech.data.shards import sha256_file

        tmp, final = self.out / f".tmp-{self.name}", self.out / self.name
        os.replace(tmp, final)
        self.shards.append({"file": final.name, "bytes": final.stat().st_size, "sha256": sha256_file(final),
                            "entries": self._entries})

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            (self.out / f".tmp-{self.name}").unlink(missing_ok=True)
            self._file = self._tar = None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _clear(out: Path) -> None:
    """Remove what an earlier run wrote into ``out`` (its manifest first, so no stale manifest outlives it)."""
    (out / "manifest.json").unlink(missing_ok=True)
    for pattern in ("shard-*.bin", "shard-*.tar", ".tmp-*"):
        for path in out.glob(pattern):
            path.unlink()


def prepare_audio(inputs: Iterable[str], out: Path, settings: Settings, *, progress: Any = None) -> Summary:
    """Prepare ``inputs`` into ``out`` (created; files of an earlier run there are replaced); returns the counts.

    ``progress(done, total)`` is called after each file when given."""
    from selfsup_speech.data.shards import LAYOUT_VERSION, MANIFEST

    if settings.format not in ("int16", "flac"):
        raise ValueError(f"format must be 'int16' or 'flac', not {settings.format!r}")
    inputs = list(inputs)
    files, file_labels = find_inputs(inputs, EXTENSIONS, what="audio files")
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    summary = Summary(found=len(files))
    bad = BadFiles("prepare-audio", "skip", what="audio file")
    writer = ShardWriter(out, settings.format, int(settings.shard_size_mb * 2**20), settings.sample_rate)
    entries: list[dict[str, Any]] = []
    # label ids: positions in the sorted class names of every file found (audio_folder's numbering)
    names = sorted(set(file_labels)) if file_labels is not None else None
    try:
        for i, (path, result) in enumerate(decoded_in_order(files, settings)):
            if isinstance(result, Rejected):
                summary.bad[result.reason] += 1
                bad.record(path, f"{result.reason}: {result}")
            else:
                label = file_labels[i] if file_labels is not None else None
                summary.kept_files += 1
                summary.cut_files += len(result.pieces) > 1
                summary.clipped_files += result.clipped > CLIPPED_FILE_SHARE
                for part, (piece, start) in enumerate(zip(result.pieces, result.starts)):
                    key = f"{len(entries):08d}"
                    entry = {"key": key, "source": str(path), "label": label,
                             "duration": round(piece.size / settings.sample_rate, 6),
                             "source_rate": result.source_rate, "channels": result.channels,
                             "rms_dbfs": round(result.rms_dbfs, 2), "clipped": round(result.clipped, 6)}
                    if len(result.pieces) > 1:
                        entry.update(part=part, start=round(start / settings.sample_rate, 6))
                    entry.update(writer.add(key, piece, names.index(label) if names is not None else None))
                    entries.append(entry)
            if progress is not None:
                progress(i + 1, len(files))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    if not entries:
        raise ValueError(f"no usable audio in {', '.join(inputs)}: {bad.summary() or 'nothing found'}")
    summary.entries = len(entries)
    summary.seconds = sum(e["duration"] for e in entries)
    summary.shards = len(writer.shards)
    summary.bytes = sum(s["bytes"] for s in writer.shards)
    manifest = {
        "kind": "audio_shards", "version": LAYOUT_VERSION, "format": settings.format,
        "sample_rate": settings.sample_rate, "dtype": "int16", "scale": 32768,
        "labels": names,
        "settings": {"inputs": inputs, "shard_size_mb": settings.shard_size_mb, "min_dbfs": settings.min_dbfs,
                     "min_seconds": settings.min_seconds, "max_seconds": settings.max_seconds,
                     "resampler": "torchaudio (sinc, Hann window, width 6, rolloff 0.99)"},
        "counts": {"found": summary.found, "kept_files": summary.kept_files, "entries": summary.entries,
                   "seconds": round(summary.seconds, 3), "cut_files": summary.cut_files,
                   "clipped_files": summary.clipped_files},
        "bad_files": {**summary.bad, "total": sum(summary.bad.values())},
        "skipped": [{"source": s, "reason": r} for s, r in bad.skipped],
        "shards": writer.shards,
        "files": entries,
    }
    _write_json(out / MANIFEST, manifest)
    return summary

