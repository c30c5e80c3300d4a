"""``audio_manifest``: a fairseq/wav2vec 2.0 manifest (Baevski et al. 2020, fairseq's
``examples/wav2vec/wav2vec_manifest.py``), for sets too large to scan or hold in memory.

Format: the first line is the root folder (absolute, or relative to the manifest's folder), then
one ``relative/path<TAB>num_samples`` line per file. ``min_seconds``/``max_seconds`` filter on the
manifest's sample counts (taken to be at ``manifest_sample_rate``) without opening any file.

Bad files: with ``check_files`` (the default) the header of every kept entry is read when the source
is built (soundfile, in a thread pool), so a missing, empty or non-audio file, or one without
samples, is skipped and counted (``bad_files``, a :class:`selfsup.lib.BadFiles`; one warning
with the count and examples) or, with ``on_error = "raise"``, fails the build naming the file, not
the run mid-training. Files are decoded in ``__getitem__`` (soundfile, mono mix, resampled to
``sample_rate``); one that fails then is replaced by the next readable file (counted as
``replaced``, warned naming the file) or, under "raise", the error names it.
An optional ``labels`` file has one label name per manifest entry (same order); label ids are
the names' positions in sorted order (``labels`` attribute).

Samples: ``{"audio": float32 [T]}`` plus ``"label": int`` with a labels file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfsup.components import BuildContext
from selfsup.lib import BadFiles
from selfsup_speech.data.audio_io import check_audio, read_audio
from selfsup_speech.data.collate import pad_audio


def parse_manifest(path: Path) -> tuple[Path, list[tuple[str, int]]]:
    """``(root, [(relative path, num_samples), ...])``; raises with the line number on bad lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"{path}: empty manifest (the first line must be the root folder)")
    root = Path(lines[0].strip()).expanduser()
    if not root.is_absolute():
        root = path.parent / root
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: expected 'relative/path<TAB>num_samples', got {line!r}")
        try:
            count = int(fields[1])
        except ValueError:
            raise ValueError(f"{path}:{number}: num_samples must be an integer, got {fields[1]!r}") from None
        entries.append((fields[0], count))
    return root, entries


class AudioManifest:
    def __init__(self, options: Any):
        self.root, entries = parse_manifest(Path(options.manifest))
        names: list[str] | None = None
        if options.labels is not None:
            lines = Path(options.labels).read_text(encoding="utf-8").splitlines()
            names = [line.strip() for line in lines if line.strip()]
            if len(names) != len(entries):
                raise ValueError(f"{options.labels}: {len(names)} labels for {len(entries)} manifest entries")
        self.labels: list[str] | None = sorted(set(names)) if names is not None else None
        rate = options.manifest_sample_rate
        keep = [i for i, (_, n) in enumerate(entries)
                if (options.min_seconds is None or n >= options.min_seconds * rate)
                and (options.max_seconds is None or n <= options.max_seconds * rate)]
        if not keep:
            raise ValueError(f"audio_manifest {options.manifest}: no entry left after the min/max_seconds filters")
        self.bad_files = BadFiles("audio_manifest", options.on_error, what="audio file")
        if options.check_files:
            keep = self._readable(keep, entries, options.limit)
            self.bad_files.warn(options.manifest)
            if not keep:
                raise ValueError(f"audio_manifest {options.manifest}: none of its files can be read")
        elif options.limit is not None:
            keep = keep[: options.limit]
        self.files = [entries[i][0] for i in keep]
        self.paths = [self.root / f for f in self.files]
        self.num_samples = [entries[i][1] for i in keep]
        self.file_labels = [self.labels.index(names[i]) for i in keep] if names is not None and self.labels else None
        self.dropped = len(entries) - len(keep)
        self.sample_rate = options.sample_rate

    def _readable(self, keep: list[int], entries: list[tuple[str, int]], limit: int | None) -> list[int]:
        """The entries of ``keep`` whose file header reads, the first ``limit`` of them: with a limit only
        as many files are opened as it takes (a small limit does not scan a large manifest)."""
        good: list[int] = []
        start = 0
        while start < len(keep) and (limit is None or len(good) < limit):
            part = keep[start:] if limit is None else keep[start : start + limit - len(good)]
            start += len(part)
            readable = set(self.bad_files.scan([self.root / entries[i][0] for i in part], check_audio))
            good += [i for i in part if self.root / entries[i][0] in readable]
        return good

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every file skipped so far (when the source was built, or when read)."""
        return self.bad_files.skipped

    def __len__(self) -> int:
        return len(self.files)

    def lengths(self) -> list[int]:
        """Samples per file from the manifest, at the manifest's rate (for ``group_by_length``)."""
        return list(self.num_samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j, (audio, _) = self.bad_files.read_first(self.paths, i, lambda path: read_audio(path, self.sample_rate))  # [T]
        sample: dict[str, Any] = {"audio": audio}
        if self.file_labels is not None:
            sample["label"] = self.file_labels[j]
        return sample

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_audio(samples)


def build(options: Any, context: BuildContext) -> AudioManifest:
    return AudioManifest(options)
