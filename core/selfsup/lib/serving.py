"""Serving helpers for plugins: decoders of served inputs that several data sources share.

A data source's ``decoder=`` factory (its ``register`` call) returns a
:class:`selfsup.components.Decoder`; :class:`TensorDecoder` is the one for sources whose samples
are plain float tensors (the core's ``tensor_file``, vectors of a plugin).
"""

from __future__ import annotations

from typing import Any, Mapping

from selfsup.components import BadInput


class TensorDecoder:
    """``{key: nested numbers}`` -> ``{key: float32 tensor}``; ``shape`` (optional, e.g. ``(64,)``)
    is checked when given. Stats: ``{"values": number of values}``."""

    def __init__(self, key: str = "input", shape: tuple[int, ...] | None = None, max_values: int = 16_777_216):
        self.key, self.shape, self.max_values = key, None if shape is None else tuple(shape), max_values
        self.fields: Mapping[str, str] = {key: "tensor"}

    def __call__(self, raw: Mapping[str, Any], *, truncate: bool = True) -> tuple[dict[str, Any], dict[str, float]]:
        import torch

        if self.key not in raw:
            raise BadInput(self.key, "missing", 422)
        try:
            value = torch.as_tensor(raw[self.key], dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise BadInput(self.key, f"must be numbers in a regular nested list: {exc}", 422) from None
        if value.numel() == 0:
            raise BadInput(self.key, "empty", 422)
        if value.numel() > self.max_values:
            raise BadInput(self.key, f"{value.numel()} values; at most {self.max_values}", 413)
        if not torch.isfinite(value).all():
            raise BadInput(self.key, "must be finite numbers", 422)
        if self.shape is not None and tuple(value.shape) != self.shape:
            raise BadInput(self.key, f"shape {list(value.shape)}; the model takes {list(self.shape)}", 422)
        return {self.key: value}, {"values": float(value.numel())}
