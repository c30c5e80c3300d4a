"""``audio_shards``: the output of ``selfsup prepare-audio``, read without decoding or resampling.

A prepared folder holds ``manifest.json`` and shards (see :mod:`selfsup_speech.prepare`):

* ``format = "int16"`` (the default): ``shard-NNNNN.bin``, raw little-endian int16 samples of many
  files one after another; each manifest entry gives its shard, ``offset`` and ``samples`` (both in
  samples). Shards are memory-mapped (lazily, once per data-loader process), so a sample is a slice,
  converted to float32 (``int16 / 32768``).
* ``format = "flac"``: ``shard-NNNNN.tar`` of ``KEY.flac`` (+ ``KEY.cls``) members; each entry gives the
  byte ``offset`` and ``bytes`` of its FLAC member, read and decoded on access (soundfile).

When the source is built every shard named by the manifest is checked against the manifest's size and
(``verify = "sha256"``, the default) SHA-256: a missing, cut or altered shard is an error naming the
file, never a silently wrong sample. The recipe's ``sample_rate`` must be the one the folder was
prepared at (nothing is resampled here).

Samples: ``{"audio": float32 [T], "label": int}``, like ``audio_folder`` (``label`` when the prepared
inputs were class sub-folders; ``labels`` lists the names, sorted), so a recipe switches between the two
by changing ``type`` and ``root`` only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch

from selfsup.components import BuildContext
from selfsup_speech.data.collate import pad_audio

#: Version of the prepared-folder layout (``manifest.json``'s ``version``).
LAYOUT_VERSION = 1
MANIFEST = "manifest.json"
#: int16 full scale: samples are ``round(x * 32768)`` clipped to int16, read back as ``q / 32768``.
SCALE = 32768.0


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(root: Path) -> dict[str, Any]:
    """``root/manifest.json`` of a prepared folder; ValueError when it is missing or not one."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise ValueError(f"audio_shards: no {MANIFEST} in {root} (make one with `selfsup prepare-audio`)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("kind") != "audio_shards" or manifest.get("version") != LAYOUT_VERSION:
        raise ValueError(f"audio_shards: {path} is not a prepare-audio manifest of layout version {LAYOUT_VERSION}")
    return manifest


def verify_shards(root: Path, shards: list[dict[str, Any]], how: str, threads: int = 4) -> None:
    """Raise ``ValueError`` naming the first shard (in order) that is missing, of another size than the
    manifest says, or (``how = "sha256"``) of another SHA-256."""

    def problem(shard: dict[str, Any]) -> str | None:
        path = Path(root) / shard["file"]
        if not path.is_file():
            return f"missing shard {path}"
        size = path.stat().st_size
        if size != shard["bytes"]:
            return f"damaged shard {path}: {size} bytes, the manifest says {shard['bytes']}"
        if how == "sha256" and sha256_file(path) != shard["sha256"]:
            return f"damaged shard {path}: its SHA-256 differs from the manifest's"
        return None

    with ThreadPoolExecutor(max(1, min(threads, len(shards)))) as pool:  # hashlib releases the GIL
        for message in pool.map(problem, shards):
            if message is not None:
                raise ValueError(f"audio_shards: {message} (prepare the folder again with `selfsup prepare-audio`)")


class AudioShards:
    def __init__(self, options: Any):
        self.root = Path(options.root)
        manifest = read_manifest(self.root)
        self.format, self.sample_rate = manifest["format"], int(manifest["sample_rate"])
        if self.sample_rate != options.sample_rate:
            raise ValueError(f"audio_shards: {self.root} was prepared at {self.sample_rate} Hz, the recipe asks for "
                             f"{options.sample_rate} Hz (prepare it again with --sample-rate {options.sample_rate})")
        if self.format not in ("int16", "flac"):
            raise ValueError(f"audio_shards: unknown shard format {self.format!r} in {self.root / MANIFEST}")
        verify_shards(self.root, manifest["shards"], options.verify)
        entries = manifest["files"][: options.limit] if options.limit is not None else manifest["files"]
        if not entries:
            raise ValueError(f"audio_shards: {self.root / MANIFEST} lists no audio")
        self.labels: list[str] | None = manifest.get("labels")
        self.shard_paths = [self.root / s["file"] for s in manifest["shards"]]
        self.entries = [(int(e["shard"]), int(e["offset"]), int(e["samples"] if self.format == "int16" else e["bytes"]))
                        for e in entries]
        self.num_samples = [int(e["samples"]) for e in entries]
        self.file_labels = [self.labels.index(e["label"]) for e in entries] if self.labels else None
        self.bad_files = manifest.get("bad_files", {})  # what prepare-audio left out, by reason
        self._maps: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:  # data-loader workers map the shards themselves
        return {**self.__dict__, "_maps": {}}

    def __len__(self) -> int:
        return len(self.entries)

    def lengths(self) -> list[int]:
        """Samples per entry at ``sample_rate`` (for ``group_by_length``)."""
        return list(self.num_samples)

    def _int16(self, shard: int) -> np.ndarray:
        if shard not in self._maps:
            self._maps[shard] = np.memmap(self.shard_paths[shard], dtype="<i2", mode="r")
        return self._maps[shard]

    def read(self, i: int) -> np.ndarray:
        """Entry ``i`` as float32 ``[T]`` in [-1, 1)."""
        shard, offset, size = self.entries[i]
        if self.format == "int16":
            audio = self._int16(shard)[offset : offset + size].astype(np.float32)  # [T], a copy
            audio *= 1.0 / SCALE
            return audio
        with open(self.shard_paths[shard], "rb") as f:
            data = os.pread(f.fileno(), size, offset)
        try:
            return soundfile.read(io.BytesIO(data), dtype="float32")[0]  # PCM_16 FLAC: q / 32768
        except Exception as exc:  # noqa: BLE001 - a decoder error means a damaged shard
            raise ValueError(f"audio_shards: cannot decode entry {i} of {self.shard_paths[shard]} "
                             f"(bytes {offset}..{offset + size}): {exc}") from None

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"audio": torch.from_numpy(self.read(i))}
        if self.file_labels is not None:
            sample["label"] = self.file_labels[i]
        return sample

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_audio(samples)


def build(options: Any, context: BuildContext) -> AudioShards:
    return AudioShards(options)
