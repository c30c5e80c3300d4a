"""``image_folder``: images in a directory tree, class sub-folders as labels.

Every file is checked when the source is built (PIL ``verify`` and, with ``decode_check``, a full
decode, in a thread pool: truncated and corrupt files are found here, not during training). Unreadable files are
skipped and counted (``bad_files``, a :class:`selfsup.lib.BadFiles`; ``skipped`` lists them;
one warning gives the count and examples) or, with ``on_error = "raise"``, the build fails with an
error naming the file. A file that breaks after the build is met at read time: under "skip" the
next readable image is returned instead, counted as ``replaced`` and warned naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from selfsup.components import BuildContext
from selfsup.lib import BadFiles, split_indices
from selfsup_vision.data.decode import check_file, decode_file


class ImageFolder:
    def __init__(self, options: Any):
        root = Path(options.root)
        exts = {e.lower() for e in options.extensions}
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        classes = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
        self.classes = classes
        self.size, self.channels = options.size, options.channels
        self.bad_files = BadFiles("image_folder", options.on_error, what="image")
        good = self.bad_files.scan(files, lambda path: check_file(path, options.size, options.decode_check))
        self.bad_files.warn(root)
        if not good:
            raise ValueError(f"no readable images ({', '.join(sorted(exts))}) under {root}"
                             f" ({len(files)} file(s) found, {len(files) - len(good)} unreadable)")
        top = [p.parent.relative_to(root).parts[0] if p.parent != root else None for p in good]
        labels = [classes.index(t) if t is not None and classes else -1 for t in top]
        labels_arr = np.asarray(labels)
        has_labels = bool(classes) and (labels_arr >= 0).all()
        idx = split_indices(len(good), options.split, val_fraction=options.val_fraction, seed=options.split_seed,
                            labels=labels_arr if has_labels else None)
        if options.limit is not None:
            idx = idx[: options.limit]
        self.files = [good[i] for i in idx]
        self.labels = [int(labels_arr[i]) for i in idx] if has_labels else None

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every file skipped so far."""
        return self.bad_files.skipped

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j, image = self.bad_files.read_first(self.files, i, lambda path: decode_file(path, self.size, self.channels))
        sample: dict[str, Any] = {"image": image}
        if self.labels is not None:
            sample["label"] = self.labels[j]
        return sample


def build(options: Any, context: BuildContext) -> ImageFolder:
    return ImageFolder(options)
