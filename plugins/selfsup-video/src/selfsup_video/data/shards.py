"""``video_shards``: streaming tar shards of encoded videos, for sets larger than memory.

The webdataset layout: members sharing a key (the name before the first dot) form one sample,
e.g. ``000123.mp4`` + ``000123.cls``. Each epoch, shards are shuffled (seeded by run seed and epoch)
and dealt to DDP ranks (round-robin when there are at least as many shards as ranks, otherwise every
rank reads all shards and keeps every world_size-th sample); the core then interleaves a rank's
stream between its data-loader workers. Samples pass through a seeded shuffle buffer that holds the
encoded bytes (small); a video is decoded when it leaves the buffer, whole and in one pass, every
frame converted to ``size`` (shards hold short clips; decoding to the end also checks that the video
is complete), and its clip is sampled then: a random start drawn from
``sample_generator(run seed, "video_shards", epoch, crc32(key))`` (a new window every epoch, the
same for a key whatever the rank layout), or the centre, start or uniform spread.

Bad data, by ``on_error``: when the source is built every shard's tar headers are read (a missing,
truncated or non-tar shard is skipped and counted, or the build fails naming it). A video that
fails to decode while streaming is skipped, counted once (``bad_files``, kind ``skipped``) and
warned naming the shard and key, or raises naming them.
"""

from __future__ import annotations

import glob
import io
import random
import tarfile
import zlib
from pathlib import Path
from typing import Any, Iterator

from selfsup.components import BuildContext
from selfsup.lib import BadFiles, sample_generator
from selfsup_video.data.decode import decode_all, sample_indices, to_float

Raw = tuple[Path, str, dict[str, bytes]]  # (shard, key, {extension: bytes})


def samples_in(shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` of each sample of a tar shard, in order."""
    current, parts = None, {}
    with tarfile.open(shard, "r:*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = Path(member.name).name
            key, _, ext = name.partition(".")
            key = str(Path(member.name).parent / key)
            if current is not None and key != current:
                yield current, parts
                parts = {}
            current = key
            parts[ext.lower()] = tar.extractfile(member).read()
    if current is not None:
        yield current, parts


def check_shard(shard: Path) -> None:
    """Raise if ``shard`` cannot be read as a tar file: missing, not a tar, no file member, or cut short
    (uncompressed: a member ending past the end of the file, or no end-of-archive block after the last)."""
    with tarfile.open(shard, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        plain = isinstance(tar.fileobj, io.BufferedReader)  # uncompressed: tar offsets are file offsets
        end = tar.offset
    if not members:
        raise ValueError("no file member")
    if plain:
        size = shard.stat().st_size
        last = max(members, key=lambda m: m.offset_data + m.size)
        if last.offset_data + last.size > size:
            raise ValueError(f"truncated: member {last.name} ends at byte {last.offset_data + last.size} of {size}")
        with open(shard, "rb") as f:
            f.seek(end)
            if f.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
                raise ValueError(f"truncated: no end-of-archive block after {last.name} (byte {end} of {size})")


class VideoShards:
    """Streams ``{"video": float32 [frames, C, size, size], "label": int64 (with label_key)}``."""

    def __init__(self, options: Any, base_dir: Path):
        shards: list[Path] = []
        for pattern in options.shards:
            full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
            matches = sorted(glob.glob(full))
            if not matches:
                raise ValueError(f"no shard matches {pattern!r} (looked for {full})")
            shards += [Path(m) for m in matches]
        self.options = options
        self.bad_files = BadFiles("video_shards", options.on_error, what="shard or video")
        self._bad_samples: set[tuple[str, str]] = set()
        self.shards = self.bad_files.scan(shards, check_shard)
        self.bad_files.warn(f"({len(shards)} shards)")
        if not self.shards:
            raise ValueError(f"video_shards: none of the {len(shards)} shard(s) can be read")

    @property
    def skipped(self) -> int:
        """Shards and videos skipped so far (each counted once)."""
        return self.bad_files.counts()["skipped"]

    def raw(self, *, epoch: int, rank: int, world_size: int, seed: int) -> Iterator[Raw]:
        """This rank's encoded samples of one epoch, in the shuffle buffer's order."""
        rng = random.Random(f"{seed}:{epoch}")
        shards = list(self.shards)
        rng.shuffle(shards)
        by_shard = len(shards) >= world_size
        mine = shards[rank::world_size] if by_shard else shards
        buffer: list[Raw] = []
        position = 0
        for shard in mine:
            for key, parts in self._read(shard):
                if not by_shard:
                    position += 1
                    if (position - 1) % world_size != rank:
                        continue
                item = (shard, key, parts)
                if len(buffer) < self.options.shuffle_buffer:
                    buffer.append(item)
                    continue
                j = rng.randrange(len(buffer))
                buffer[j], item = item, buffer[j]
                yield item
        rng.shuffle(buffer)
        yield from buffer

    def iterate(self, *, epoch: int, rank: int, world_size: int, seed: int) -> Iterator[dict[str, Any]]:
        for shard, key, parts in self.raw(epoch=epoch, rank=rank, world_size=world_size, seed=seed):
            sample = self._decode(shard, key, parts, seed, epoch)
            if sample is not None:
                yield sample

    def _read(self, shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
        """The samples of ``shard``; a shard that breaks while read (changed since the build) ends there."""
        try:
            yield from samples_in(shard)
        except (OSError, EOFError, tarfile.TarError) as exc:
            self._bad(shard, "(rest of the shard)", exc)

    def _bad(self, shard: Path, key: str, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.options.on_error == "raise":
            self.bad_files.record(f"{shard}:{key}", reason)  # raises, naming the shard and key
        if (str(shard), key) in self._bad_samples:
            return
        self._bad_samples.add((str(shard), key))
        self.bad_files.warn_now("skipped", f"{shard}:{key}", reason)

    def _decode(self, shard: Path, key: str, parts: dict[str, bytes], seed: int, epoch: int) -> dict[str, Any] | None:
        o = self.options
        try:
            ext = next((k for k in o.video_keys if k in parts), None)
            if ext is None:
                raise ValueError(f"no video member ({', '.join(o.video_keys)})")
            frames = decode_all(parts[ext], o.size, o.channels, f"{key}.{ext}")  # [T, C, size, size] uint8
            random_start = o.offset == "random"
            g = sample_generator(seed, "video_shards", epoch, zlib.crc32(key.encode())) if random_start else None
            idx = sample_indices(len(frames), o.frames, o.stride, o.offset, g)
            sample: dict[str, Any] = {"video": to_float(frames[idx])}
            if o.label_key and o.label_key in parts:
                sample["label"] = int(parts[o.label_key].decode().strip())
            return sample
        except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
            self._bad(shard, key, exc)
            return None


def build(options: Any, context: BuildContext) -> VideoShards:
    return VideoShards(options, context.base_dir)
