"""``audio_folder``: audio files in a directory tree, class sub-folders as labels.

Every file's header is read when the source is built (soundfile): empty and unreadable files and
files without samples are skipped and counted (``bad_files``, a :class:`selfsup.lib.BadFiles`;
``skipped`` lists ``(path, reason)``; one warning gives the count and examples) or, with
``on_error = "raise"``, the build fails naming the file. Samples are decoded when asked for, mixed
to mono and resampled to ``sample_rate``; a file that fails then (changed since the build) is
handled by the same policy: the next readable file is returned instead, counted as ``replaced``
and warned naming the file, or the error names it.

Samples: ``{"audio": float32 [T], "label": int}`` (``label`` only when every file is in a
sub-folder; ``labels`` lists the sub-folder names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfsup.components import BuildContext
from selfsup.lib import BadFiles
from selfsup_speech.data.audio_io import check_audio, read_audio
from selfsup_speech.data.collate import pad_audio


class AudioFolder:
    def __init__(self, options: Any):
        root = Path(options.root)
        exts = set(options.extensions)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        self.root, self.sample_rate = root, options.sample_rate
        self.bad_files = BadFiles("audio_folder", options.on_error, what="audio file")
        good = self.bad_files.scan(files, check_audio)
        self.bad_files.warn(root)
        if options.limit is not None:
            good = good[: options.limit]
        if not good:
            raise ValueError(f"audio_folder: no readable audio files ({', '.join(sorted(exts))}) under {root}")
        in_folders = all(p.parent != root for p in good)
        self.labels: list[str] | None = sorted({p.relative_to(root).parts[0] for p in good}) if in_folders else None
        self.files = good
        self.file_labels = [self.labels.index(p.relative_to(root).parts[0]) for p in good] if self.labels else None

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every file skipped so far (unreadable, or without samples)."""
        return self.bad_files.skipped

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j, (audio, _) = self.bad_files.read_first(self.files, i, lambda path: read_audio(path, self.sample_rate))  # [T]
        sample: dict[str, Any] = {"audio": audio}
        if self.file_labels is not None:
            sample["label"] = self.file_labels[j]
        return sample

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_audio(samples)


def build(options: Any, context: BuildContext) -> AudioFolder:
    return AudioFolder(options)
