"""``video_shards``: streaming tar shards of encoded videos, for sets larger than memory.

The webdataset layout: members sharing a key (the name before the first dot) form one sample,
e.g. ``000123.mp4`` + ``000123.cls``. Each epoch, shards are shuffled (seeded by run seed and epoch)
and dealt to DDP ranks (round-robin when there are at least as many shards as ranks, otherwise every
rank reads all shards and keeps every world_size-th sample); the core then interleaves a rank's
stream between its data-loader workers. Samples pass through a seeded shuffle buffer that holds the
encoded bytes (small); a video is decoded when it leaves the buffer, whole and in one pass (decoding
to the end checks that the video is complete), and its clip is sampled then: a random start drawn
from ``sample_generator(run seed, "video_shards", epoch, crc32(key))`` (a new window every epoch,
the same for a key whatever the rank layout), or the centre, start or uniform spread, over the
frame count the container declares (mp4, avi, gif; where none is, as in webm, the decoded count), so
only the clip's frames are converted to ``size``.

Bad data, by ``on_error``: when the source is built every shard's tar headers are read (a missing,
truncated or non-tar shard is skipped and counted, or the build fails naming it). A video that
fails to decode while streaming is skipped, counted once (``bad_files``, kind ``skipped``) and
warned naming the shard and key, or raises naming them. The streaming is
:class:`selfsup.lib.shards.ShardStream`, shared with the other modalities' shard sources.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

from selfsup.components import BuildContext
from selfsup.lib import sample_generator
from selfsup.lib.shards import Raw, ShardStream
from selfsup_video.data.decode import decode_sampled, sample_indices, to_float


class VideoShards:
    """Streams ``{"video": float32 [frames, C, size, size], "label": int64 (with label_key)}``."""

    def __init__(self, options: Any, base_dir: Path):
        self.options = options
        self.stream = ShardStream("video_shards", options.shards, base_dir, on_error=options.on_error,
                                  shuffle_buffer=options.shuffle_buffer, what="shard or video").ready()
        self.bad_files = self.stream.bad_files

    @property
    def shards(self) -> list[Path]:
        return self.stream.shards

    @property
    def skipped(self) -> int:
        """Shards and videos skipped so far (each counted once)."""
        return self.stream.skipped

    def raw(self, *, epoch: int, rank: int, world_size: int, seed: int) -> Iterator[Raw]:
        """This rank's encoded samples of one epoch, in the shuffle buffer's order."""
        return self.stream.raw(epoch=epoch, rank=rank, world_size=world_size, seed=seed)

    def iterate(self, *, epoch: int, rank: int, world_size: int, seed: int,
                keep: Callable[[int], bool] | None = None) -> Iterator[dict[str, Any] | None]:
        raw = self.raw(epoch=epoch, rank=rank, world_size=world_size, seed=seed)
        return self.stream.decoded(raw, lambda shard, key, parts: self._decode(key, parts, seed, epoch), keep)

    def _decode(self, key: str, parts: dict[str, bytes], seed: int, epoch: int) -> dict[str, Any]:
        o = self.options
        ext = next((k for k in o.video_keys if k in parts), None)
        if ext is None:
            raise ValueError(f"no video member ({', '.join(o.video_keys)})")
        random_start = o.offset == "random"
        g = sample_generator(seed, "video_shards", epoch, zlib.crc32(key.encode())) if random_start else None

        def choose(length: int) -> list[int]:
            return sample_indices(length, o.frames, o.stride, o.offset, g)

        clip = decode_sampled(parts[ext], choose, o.size, o.channels, f"{key}.{ext}")  # [frames, C, size, size] uint8
        sample: dict[str, Any] = {"video": to_float(clip)}
        if o.label_key and o.label_key in parts:
            sample["label"] = int(parts[o.label_key].decode().strip())
        return sample


def build(options: Any, context: BuildContext) -> VideoShards:
    return VideoShards(options, context.base_dir)
