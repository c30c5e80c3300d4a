"""``webdataset``: streaming tar shards for image sets larger than memory.

The webdataset layout: members sharing a key (the name before the first dot) form one sample,
e.g. ``000123.png`` + ``000123.cls``. Each epoch, shards are shuffled (seeded by run seed and
epoch) and dealt to ranks (round-robin when there are at least as many shards as ranks,
otherwise every rank reads all shards and keeps every world_size-th sample); samples pass through
a seeded shuffle buffer. Corrupt samples are skipped and counted, or raise, by ``on_error``."""

from __future__ import annotations

import glob
import random
import tarfile
from pathlib import Path
from typing import Any, Iterator

from selfsup.components import BuildContext
from selfsup_vision.data.decode import decode_bytes


def _samples_in(shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
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


class WebDatasetSource:
    def __init__(self, options: Any, base_dir: Path):
        shards: list[Path] = []
        for pattern in options.shards:
            full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
            matches = sorted(glob.glob(full))
            if not matches:
                raise ValueError(f"no shard matches {pattern!r} (looked for {full})")
            shards += [Path(m) for m in matches]
        self.shards = shards
        self.options = options
        self.skipped = 0

    def iterate(self, *, epoch: int, rank: int, world_size: int, seed: int) -> Iterator[dict[str, Any]]:
        rng = random.Random(f"{seed}:{epoch}")
        shards = list(self.shards)
        rng.shuffle(shards)
        by_shard = len(shards) >= world_size
        mine = shards[rank::world_size] if by_shard else shards
        buffer: list[dict[str, Any]] = []
        position = 0
        for shard in mine:
            for key, parts in _samples_in(shard):
                if not by_shard:
                    position += 1
                    if (position - 1) % world_size != rank:
                        continue
                sample = self._decode(shard, key, parts)
                if sample is None:
                    continue
                if len(buffer) < self.options.shuffle_buffer:
                    buffer.append(sample)
                    continue
                j = rng.randrange(len(buffer))
                buffer[j], sample = sample, buffer[j]
                yield sample
        rng.shuffle(buffer)
        yield from buffer

    def _decode(self, shard: Path, key: str, parts: dict[str, bytes]) -> dict[str, Any] | None:
        o = self.options
        try:
            data = next((parts[k] for k in o.image_keys if k in parts), None)
            if data is None:
                raise ValueError(f"no image member ({', '.join(o.image_keys)})")
            sample: dict[str, Any] = {"image": decode_bytes(data, o.size, o.channels)}
            if o.label_key and o.label_key in parts:
                sample["label"] = int(parts[o.label_key].decode().strip())
            return sample
        except Exception as exc:  # noqa: BLE001
            if o.on_error == "raise":
                raise ValueError(f"{shard}: sample {key!r}: {type(exc).__name__}: {exc}") from None
            self.skipped += 1
            return None


def build(options: Any, context: BuildContext) -> WebDatasetSource:
    return WebDatasetSource(options, context.base_dir)
