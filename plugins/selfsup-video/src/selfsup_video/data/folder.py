"""``video_folder``: video files in a directory tree, class sub-folders as labels, decoded with PyAV.

Every file is decoded once when the source is built (in a thread pool; FFmpeg releases the GIL),
which gives its frame count and finds unreadable and truncated files (see
:func:`selfsup_video.data.decode.check_video`): they are skipped and counted (``bad_files``, a
:class:`selfsup.lib.BadFiles`; ``skipped`` lists them; one warning gives the count and examples) or,
with ``on_error = "raise"``, the build fails naming the file. A file that breaks after the build is
met at read time: the next readable video is returned instead, counted as ``replaced`` and warned.

A sample is one clip, sampled when decoded: ``frames`` frames every ``stride`` frames from a
``random`` start (drawn from ``sample_generator(run seed, "video_folder", 0, index)``: the same
window of a video every epoch, as a data source has no epoch; put ``temporal_crop`` after a longer
window for a new one each epoch), the ``center`` or ``start``, or ``uniform``: ``frames`` frames
spread over the whole video. Decoding stops at the clip's last frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.components import BuildContext
from selfsup.lib import BadFiles, sample_generator, split_indices
from selfsup_video.data.decode import check_video, decode_clip, sample_indices


class VideoFolder:
    """Samples ``{"video": float32 [frames, C, size, size], "label": int64}`` (label with class sub-folders)."""

    def __init__(self, options: Any, seed: int = 0):
        o = self.options = options
        self.seed = seed
        root = Path(o.root)
        exts = {e.lower() for e in o.extensions}
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        self.bad_files = BadFiles("video_folder", o.on_error, what="video")
        counts: dict[Path, int] = {}

        def check(path: Path) -> None:
            counts[path] = check_video(path)

        good = self.bad_files.scan(files, check)
        self.bad_files.warn(root)
        if not good:
            raise ValueError(f"no readable videos ({', '.join(sorted(exts))}) under {root}"
                             f" ({len(files)} file(s) found, {len(files) - len(good)} unreadable)")
        classes = sorted({p.parent.relative_to(root).parts[0] for p in good if p.parent != root})
        top = [p.parent.relative_to(root).parts[0] if p.parent != root else None for p in good]
        labels = np.asarray([classes.index(t) if t is not None else -1 for t in top])
        has_labels = bool(classes) and bool((labels >= 0).all())
        idx = split_indices(len(good), o.split, val_fraction=o.val_fraction, seed=o.split_seed,
                            labels=labels if has_labels else None)
        if o.limit is not None:
            idx = idx[: o.limit]
        self.classes = classes
        self.files = [good[i] for i in idx]
        self.frame_counts = [counts[p] for p in self.files]
        self.labels = [int(labels[i]) for i in idx] if has_labels else None
        self._position = {p: k for k, p in enumerate(self.files)}

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every file skipped so far."""
        return self.bad_files.skipped

    def __len__(self) -> int:
        return len(self.files)

    def indices(self, i: int) -> list[int]:
        """The frame indices sample ``i``'s clip takes from its video."""
        o = self.options
        generator = sample_generator(self.seed, "video_folder", 0, i) if o.offset == "random" else None
        return sample_indices(self.frame_counts[i], o.frames, o.stride, o.offset, generator)

    def __getitem__(self, i: int) -> dict[str, Any]:
        o = self.options

        def read(path: Path) -> torch.Tensor:
            return decode_clip(path, self.indices(self._position[path]), o.size, o.channels)

        j, video = self.bad_files.read_first(self.files, i, read)
        sample: dict[str, Any] = {"video": video}
        if self.labels is not None:
            sample["label"] = self.labels[j]
        return sample

    def targets(self, key: str) -> list[int] | None:
        return list(self.labels) if key == "label" and self.labels is not None else None


def build(options: Any, context: BuildContext) -> VideoFolder:
    return VideoFolder(options, context.seed)
