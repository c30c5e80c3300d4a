"""``webdataset``: streaming tar shards for image sets larger than memory.

The webdataset layout: members sharing a key (the name before the first dot) form one sample,
e.g. ``000123.png`` + ``000123.cls``. Each epoch, shards are shuffled (seeded by run seed and
epoch) and dealt to ranks (round-robin when there are at least as many shards as ranks,
otherwise every rank reads all shards and keeps every world_size-th sample); samples pass through
a seeded shuffle buffer.

Bad data, by ``on_error``: when the source is built every shard's tar headers are read (a missing,
truncated or non-tar shard is skipped and counted, or the build fails naming it); with
``check_samples = true`` every sample is also decoded then (one full pass), so corrupt images are
found before training. Samples that fail to decode while streaming are skipped, counted once each
(``bad_files``, kind ``skipped``) and warned naming the shard and key, or raise naming them."""

from __future__ import annotations

import glob
import io
import random
import tarfile
from pathlib import Path
from typing import Any, Iterator

from selfsup.components import BuildContext
from selfsup.lib import BadFiles
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


def check_shard(shard: Path) -> None:
    """Raise if ``shard`` cannot be read as a tar file: missing, not a tar, no file member, or cut short
    (for an uncompressed tar: a member that ends past the end of the file, or no end-of-archive block
    after the last member; a compressed one is decompressed to its end)."""
    with tarfile.open(shard, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        plain = isinstance(tar.fileobj, io.BufferedReader)  # uncompressed: tar offsets are file offsets
        end = tar.offset  # just past the last member
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


class WebDatasetSource:
    def __init__(self, options: Any, base_dir: Path):
        shards: list[Path] = []
        for pattern in options.shards:
            full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
            matches = sorted(glob.glob(full))
            if not matches:
                raise ValueError(f"no shard matches {pattern!r} (looked for {full})")
            shards += [Path(m) for m in matches]
        self.options = options
        self.bad_files = BadFiles("webdataset", options.on_error, what="shard or sample")
        self._bad_samples: set[tuple[str, str]] = set()  # (shard, key) already counted
        self._streaming = False  # warn each bad sample when met while streaming; at build, once at the end
        self.shards = self.bad_files.scan(shards, check_shard)
        if options.check_samples:
            for shard in self.shards:
                for key, parts in self._read(shard):
                    self._decode(shard, key, parts)
        self._streaming = True
        self.bad_files.warn(f"({len(shards)} shards)")
        if not self.shards:
            raise ValueError(f"webdataset: none of the {len(shards)} shard(s) can be read")

    @property
    def skipped(self) -> int:
        """Shards and samples skipped so far (each counted once)."""
        return self.bad_files.counts()["skipped"]

    def iterate(self, *, epoch: int, rank: int, world_size: int, seed: int) -> Iterator[dict[str, Any]]:
        rng = random.Random(f"{seed}:{epoch}")
        shards = list(self.shards)
        rng.shuffle(shards)
        by_shard = len(shards) >= world_size
        mine = shards[rank::world_size] if by_shard else shards
        buffer: list[dict[str, Any]] = []
        position = 0
        for shard in mine:
            for key, parts in self._read(shard):
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

    def _read(self, shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
        """The samples of ``shard``; a shard that breaks while read (changed since the build) ends there."""
        try:
            yield from _samples_in(shard)
        except (OSError, EOFError, tarfile.TarError) as exc:
            self._bad(shard, "(rest of the shard)", exc)

    def _bad(self, shard: Path, key: str, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.options.on_error == "raise":
            self.bad_files.record(f"{shard}:{key}", reason)  # raises, naming the shard and key
        if (str(shard), key) in self._bad_samples:
            return
        self._bad_samples.add((str(shard), key))
        if self._streaming:
            self.bad_files.warn_now("skipped", f"{shard}:{key}", reason)
        else:
            self.bad_files.record(f"{shard}:{key}", reason)

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
        except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
            self._bad(shard, key, exc)
            return None


def build(options: Any, context: BuildContext) -> WebDatasetSource:
    return WebDatasetSource(options, context.base_dir)
