"""``webdataset``: streaming tar shards for image sets larger than memory.

The webdataset layout: members sharing a key (the name before the first dot) form one sample,
e.g. ``000123.png`` + ``000123.cls``. Each epoch, shards are shuffled (seeded by run seed and
epoch) and dealt to ranks (round-robin when there are at least as many shards as ranks,
otherwise every rank reads all shards and keeps every world_size-th sample); samples pass through
a seeded shuffle buffer of encoded samples (decoded as they leave it); the streaming is
:class:`selfsup.lib.shards.ShardStream`, shared with the other modalities' shard sources.

Bad data, by ``on_error``: when the source is built every shard's tar headers are read (a missing,
truncated or non-tar shard is skipped and counted, or the build fails naming it); with
``check_samples = true`` every sample is also decoded then (one full pass), so corrupt images are
found before training. Samples that fail to decode while streaming are skipped, counted once each
(``bad_files``, kind ``skipped``) and warned naming the shard and key, or raise naming them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from selfsup.components import BuildContext
from selfsup.lib.shards import ShardStream
from selfsup_vision.data.decode import decode_bytes


class WebDatasetSource:
    """Streams ``{"image": float32 [C, size, size], "label": int64 (with label_key)}``."""

    def __init__(self, options: Any, base_dir: Path):
        self.options = options
        self.stream = ShardStream("webdataset", options.shards, base_dir, on_error=options.on_error,
                                  shuffle_buffer=options.shuffle_buffer)
        self.bad_files = self.stream.bad_files
        if options.check_samples:  # one full decoding pass at build: corrupt images found before training
            for shard in self.stream.shards:
                raw = ((shard, key, parts) for key, parts in self.stream.samples(shard))
                for _ in self.stream.decoded(raw, self._decode):
                    pass
        self.stream.ready()

    @property
    def shards(self) -> list[Path]:
        return self.stream.shards

    @property
    def skipped(self) -> int:
        """Shards and samples skipped so far (each counted once)."""
        return self.stream.skipped

    def iterate(self, *, epoch: int, rank: int, world_size: int, seed: int,
                keep: Callable[[int], bool] | None = None) -> Iterator[dict[str, Any] | None]:
        raw = self.stream.raw(epoch=epoch, rank=rank, world_size=world_size, seed=seed)
        return self.stream.decoded(raw, self._decode, keep)

    def _decode(self, shard: Path, key: str, parts: dict[str, bytes]) -> dict[str, Any]:
        o = self.options
        data = next((parts[k] for k in o.image_keys if k in parts), None)
        if data is None:
            raise ValueError(f"no image member ({', '.join(o.image_keys)})")
        sample: dict[str, Any] = {"image": decode_bytes(data, o.size, o.channels)}
        if o.label_key and o.label_key in parts:
            sample["label"] = int(parts[o.label_key].decode().strip())
        return sample


def build(options: Any, context: BuildContext) -> WebDatasetSource:
    return WebDatasetSource(options, context.base_dir)
