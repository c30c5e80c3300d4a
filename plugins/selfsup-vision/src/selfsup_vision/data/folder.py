"""``image_folder``: images in a directory tree, class sub-folders as labels.

Unreadable files are found when the source is built (PIL header check), then skipped and counted
(``skipped`` lists them, a warning says how many) or, with ``on_error = "raise"``, reported as an
error naming the file. A file that passes the check but fails to decode later is handled the same
way at read time (skip: the next readable image is returned instead)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from selfsup.badfiles import BadFiles
from selfsup.components import BuildContext
from selfsup.splits import split_indices
from selfsup_vision.data.decode import decode_file


class ImageFolder:
    def __init__(self, options: Any):
        root = Path(options.root)
        exts = {e.lower() for e in options.extensions}
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        classes = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
        self.classes = classes
        self.size, self.channels = options.size, options.channels
        self.bad = BadFiles("image_folder", options.on_error, what="image")
        good, labels = [], []
        for path in files:
            try:
                with Image.open(path) as img:
                    img.verify()
            except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
                self.bad.record(path, exc)
                continue
            good.append(path)
            labels.append(classes.index(path.parent.relative_to(root).parts[0]) if path.parent != root and classes else -1)
        if not good:
            raise ValueError(f"no readable images ({', '.join(sorted(exts))}) under {root}")
        labels_arr = np.asarray(labels)
        has_labels = bool(classes) and (labels_arr >= 0).all()
        idx = split_indices(len(good), options.split, val_fraction=options.val_fraction, seed=options.split_seed,
                            labels=labels_arr if has_labels else None)
        if options.limit is not None:
            idx = idx[: options.limit]
        self.files = [good[i] for i in idx]
        self.labels = [int(labels_arr[i]) for i in idx] if has_labels else None
        self.bad.warn(root)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every file skipped so far."""
        return self.bad.skipped

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j, image = self.bad.read_first(self.files, i, lambda path: decode_file(path, self.size, self.channels))
        sample: dict[str, Any] = {"image": image}
        if self.labels is not None:
            sample["label"] = self.labels[j]
        return sample


def build(options: Any, context: BuildContext) -> ImageFolder:
    return ImageFolder(options)
