"""``audio_folder``: audio files in a directory tree, class sub-folders as labels.

Every file's header is read when the source is built (soundfile): unreadable files and files
without samples are skipped and counted (``skipped`` lists ``(path, reason)``, a warning says how
many) or, with ``on_error = "raise"``, reported as an error naming the file. Samples are decoded
when asked for, mixed to mono and resampled to ``sample_rate``; a file that fails then is handled
by the same policy (skip: the next readable file is returned instead).

Samples: ``{"audio": float32 [T], "label": int}`` (``label`` only when every file is in a
sub-folder; ``labels`` lists the sub-folder names).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from selfsup.components import BuildContext
from selfsup_speech.data.audio_io import audio_frames, read_audio
from selfsup_speech.data.collate import pad_audio


class AudioFolder:
    def __init__(self, options: Any):
        root = Path(options.root)
        exts = set(options.extensions)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        self.root, self.sample_rate, self.on_error = root, options.sample_rate, options.on_error
        self.skipped: list[tuple[str, str]] = []
        good = []
        for path in files:
            try:
                frames, _ = audio_frames(path)
                if frames == 0:
                    raise ValueError("no audio samples")
            except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
                self._bad(path, exc)
                continue
            good.append(path)
        if options.limit is not None:
            good = good[: options.limit]
        if not good:
            raise ValueError(f"audio_folder: no readable audio files ({', '.join(sorted(exts))}) under {root}")
        in_folders = all(p.parent != root for p in good)
        self.labels: list[str] | None = sorted({p.relative_to(root).parts[0] for p in good}) if in_folders else None
        self.files = good
        self.file_labels = [self.labels.index(p.relative_to(root).parts[0]) for p in good] if self.labels else None
        if self.skipped:
            warnings.warn(f"audio_folder {root}: skipped {len(self.skipped)} unreadable or empty file(s), "
                          f"e.g. {self.skipped[0][0]} ({self.skipped[0][1]})", stacklevel=2)

    def _bad(self, path: Path, exc: Exception) -> None:
        if self.on_error == "raise":
            raise ValueError(f"audio_folder: unreadable audio file {path}: {type(exc).__name__}: {exc}") from None
        self.skipped.append((str(path), f"{type(exc).__name__}: {exc}"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        for offset in range(len(self.files)):
            j = (i + offset) % len(self.files)
            try:
                audio, _ = read_audio(self.files[j], self.sample_rate)  # [T]
            except Exception as exc:  # noqa: BLE001
                self._bad(self.files[j], exc)
                continue
            sample: dict[str, Any] = {"audio": audio}
            if self.file_labels is not None:
                sample["label"] = self.file_labels[j]
            return sample
        raise ValueError(f"audio_folder: no file under {self.root} could be decoded")

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_audio(samples)


def build(options: Any, context: BuildContext) -> AudioFolder:
    return AudioFolder(options)
