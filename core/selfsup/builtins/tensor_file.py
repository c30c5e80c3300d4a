"""Data source over arrays in a .npz, .npy or .safetensors file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.builtins.options import TensorFileOptions
from selfsup.splits import split_indices


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return {"input": np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return load_file(str(path))
    except Exception as exc:  # corrupt file: say which and why, in one line
        raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    raise ValueError(f"{path}: unsupported file type {suffix!r} (use .npz, .npy or .safetensors)")


class TensorFile:
    """One sample per row: ``{"input": float tensor, "label": int}`` (label when present)."""

    def __init__(self, options: TensorFileOptions):
        arrays = _load_arrays(Path(options.path))
        key = "input" if options.path.suffix == ".npy" else options.input_key
        if key not in arrays:
            raise ValueError(f"{options.path}: no array named {key!r}; it has {sorted(arrays)}")
        inputs = arrays[key]
        labels = arrays.get(options.label_key) if options.label_key else None
        if labels is not None and len(labels) != len(inputs):
            raise ValueError(f"{options.path}: {len(labels)} labels for {len(inputs)} inputs")
        idx = split_indices(
            len(inputs), options.split, val_fraction=options.val_fraction, seed=options.split_seed, labels=labels
        )
        self.inputs = torch.as_tensor(np.ascontiguousarray(inputs[idx]), dtype=torch.float32)
        self.labels = None if labels is None else torch.as_tensor(labels[idx], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"input": self.inputs[index]}
        if self.labels is not None:
            sample["label"] = self.labels[index]
        return sample
