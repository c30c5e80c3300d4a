"""``image_folder``: images in a directory tree, class sub-folders as labels.

Unreadable files are found when the source is built (PIL header check), then skipped and counted
(``skipped`` lists them, a warning says how many) or, with ``on_error = "raise"``, reported as an
error naming the file. A file that passes the check but fails to decode later is handled the same
way at read time (skip: the next readable image is returned instead)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

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
        self.on_error, self.size, self.channels = options.on_error, options.size, options.channels
        self.skipped: list[tuple[str, str]] = []
        good, labels = [], []
        for path in files:
            try:
                with Image.open(path) as img:
                    img.verify()
            except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
                self._bad(path, exc)
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
        if self.skipped:
            warnings.warn(f"image_folder {root}: skipped {len(self.skipped)} unreadable file(s), e.g. {self.skipped[0][0]}", stacklevel=2)

    def _bad(self, path: Path, exc: Exception) -> None:
        if self.on_error == "raise":
            raise ValueError(f"unreadable image {path}: {type(exc).__name__}: {exc}") from None
        self.skipped.append((str(path), f"{type(exc).__name__}: {exc}"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        for offset in range(len(self.files)):
            j = (i + offset) % len(self.files)
            try:
                image = decode_file(self.files[j], self.size, self.channels)
            except Exception as exc:  # noqa: BLE001
                self._bad(self.files[j], exc)
                continue
            sample: dict[str, Any] = {"image": image}
            if self.labels is not None:
                sample["label"] = self.labels[j]
            return sample
        raise ValueError("no image in the folder could be decoded")


def build(options: Any, context: BuildContext) -> ImageFolder:
    return ImageFolder(options)
