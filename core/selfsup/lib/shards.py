"""Streaming tar shards (the webdataset layout) for data sources larger than memory.

Members of a tar shard that share a key (the path up to the first dot of the file name) form one
sample, e.g. ``000123.png`` + ``000123.cls``. :class:`ShardStream` does the part every such source
shares, whatever it decodes (images, videos, audio):

* the shard patterns are expanded (relative to the recipe), and every shard's tar headers are read
  when the source is built: a missing, truncated or non-tar shard is skipped and counted in
  ``bad_files`` (or the build fails naming it, ``on_error = "raise"``);
* each epoch, shards are shuffled (seeded by run seed and epoch) and dealt to DDP ranks
  (round-robin when there are at least as many shards as ranks, otherwise every rank reads all
  shards and keeps every world_size-th sample);
* samples pass through a seeded shuffle buffer holding their encoded bytes (small), so the source
  decodes a sample when it leaves the buffer;
* a sample the source cannot decode is reported with :meth:`ShardStream.bad`: counted once,
  warned naming the shard and key (or recorded, during a check pass at build), or raised;
* with several data-loader workers, each decodes only its share of the stream
  (:meth:`ShardStream.decoded`'s ``keep``).
"""

from __future__ import annotations

import glob
import io
import random
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from selfsup.badfiles import BadFiles

#: ``(shard, key, {extension: bytes})``: one encoded sample.
Raw = tuple[Path, str, dict[str, bytes]]


def tar_samples(shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` of each sample of a tar shard, in order (extensions lower-cased)."""
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


def check_tar_shard(shard: Path) -> None:
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
        size = Path(shard).stat().st_size
        last = max(members, key=lambda m: m.offset_data + m.size)
        if last.offset_data + last.size > size:
            raise ValueError(f"truncated: member {last.name} ends at byte {last.offset_data + last.size} of {size}")
        with open(shard, "rb") as f:
            f.seek(end)
            if f.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
                raise ValueError(f"truncated: no end-of-archive block after {last.name} (byte {end} of {size})")


def expand_shards(patterns: Iterable[str], base_dir: str | Path) -> list[Path]:
    """The files matching each glob pattern (relative ones against ``base_dir``), sorted per pattern;
    ValueError naming a pattern that matches nothing."""
    shards: list[Path] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(Path(base_dir) / pattern)
        matches = sorted(glob.glob(full))
        if not matches:
            raise ValueError(f"no shard matches {pattern!r} (looked for {full})")
        shards += [Path(m) for m in matches]
    return shards


class ShardStream:
    """The shards of a streaming source, checked, and their encoded samples in a seeded order.

    ``name`` labels warnings and errors (the source's registered name); ``on_error`` is the
    source's ``"skip"`` or ``"raise"``; ``shuffle_buffer`` the number of encoded samples held.
    During the build, failures passed to :meth:`bad` are recorded and warned once together by
    :meth:`ready`; afterwards (streaming) each is warned when met. ``bad_files`` counts them."""

    def __init__(self, name: str, patterns: Iterable[str], base_dir: str | Path, *, on_error: str,
                 shuffle_buffer: int, what: str = "shard or sample"):
        self.name, self.on_error, self.shuffle_buffer = name, on_error, shuffle_buffer
        found = expand_shards(patterns, base_dir)
        self.bad_files = BadFiles(name, on_error, what=what)
        self._reported: set[tuple[str, str]] = set()  # (shard, key) already counted
        self._streaming = False
        self._found = len(found)
        self.shards = self.bad_files.scan(found, check_tar_shard)

    def ready(self) -> "ShardStream":
        """End of the build: warn what was skipped, and raise if no shard can be read."""
        self._streaming = True
        self.bad_files.warn(f"({self._found} shards)")
        if not self.shards:
            raise ValueError(f"{self.name}: none of the {self._found} shard(s) can be read")
        return self

    @property
    def skipped(self) -> int:
        """Shards and samples skipped so far (each counted once)."""
        return self.bad_files.counts()["skipped"]

    def samples(self, shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
        """The samples of ``shard``; a shard that breaks while read (changed since the build) ends there."""
        try:
            yield from tar_samples(shard)
        except (OSError, EOFError, tarfile.TarError) as exc:
            self.bad(shard, "(rest of the shard)", exc)

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
            for key, parts in self.samples(shard):
                if not by_shard:
                    position += 1
                    if (position - 1) % world_size != rank:
                        continue
                item = (shard, key, parts)
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(item)
                    continue
                j = rng.randrange(len(buffer))
                buffer[j], item = item, buffer[j]
                yield item
        rng.shuffle(buffer)
        yield from buffer

    def bad(self, shard: Path, key: str, exc: BaseException) -> None:
        """Report a sample (or the rest of a shard) that cannot be read: raise naming it with
        ``on_error = "raise"``, else count it once and warn (while streaming) or record it (at build)."""
        reason = f"{type(exc).__name__}: {exc}"
        if self.on_error == "raise":
            self.bad_files.record(f"{shard}:{key}", reason)  # raises, naming the shard and key
        if (str(shard), key) in self._reported:
            return
        self._reported.add((str(shard), key))
        if self._streaming:
            self.bad_files.warn_now("skipped", f"{shard}:{key}", reason)
        else:
            self.bad_files.record(f"{shard}:{key}", reason)

    def decoded(self, raw: Iterable[Raw], decode: Any,
                keep: Callable[[int], bool] | None = None) -> Iterator[dict[str, Any] | None]:
        """``decode(shard, key, parts) -> sample`` of each item; one that raises is reported with
        :meth:`bad` and left out. With ``keep`` (the core's data-loader worker split, see
        :class:`selfsup.components.IterableDataSource`), the item at stream position ``i`` is decoded
        only when ``keep(i)``; every other position, and an item that cannot be decoded, yields
        ``None`` in its place, so every worker numbers the stream alike and decodes only its share."""
        for position, (shard, key, parts) in enumerate(raw):
            if keep is not None and not keep(position):
                yield None
                continue
            try:
                yield decode(shard, key, parts)
            except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
                self.bad(shard, key, exc)
                if keep is not None:
                    yield None
