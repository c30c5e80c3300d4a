"""Serving decoders of the video sources: a served clip, sent as nested JSON numbers, becomes a sample.

The core's request media are text, image, audio and tensor (``selfsup.components.Decoder``); there is
no video file kind, so a served video model takes a decoded clip: ``{"video": [[[[...]]]]}``, a
``[frames, channels, size, size]`` array of numbers in [0, 1], exactly the shape the source it was
trained on yields (checked, with the range, by :class:`ClipDecoder`). Building a decoder reads no data.
"""

from __future__ import annotations

from typing import Any, Mapping

from selfsup.components import BadInput, BuildContext
from selfsup.lib import TensorDecoder


class ClipDecoder(TensorDecoder):
    """``{"video": nested numbers}`` -> ``{"video": float32 [frames, channels, size, size]}`` in [0, 1]."""

    def __call__(self, raw: Mapping[str, Any], *, truncate: bool = True) -> tuple[dict[str, Any], dict[str, float]]:
        sample, stats = super().__call__(raw, truncate=truncate)
        video = sample[self.key]
        if video.min() < 0 or video.max() > 1:
            raise BadInput(self.key, f"values must lie in [0, 1] (got {float(video.min()):g} to "
                                     f"{float(video.max()):g})", 422)
        return sample, {**stats, "frames": float(video.shape[0])}


def clip_decoder(options: Any, context: BuildContext) -> ClipDecoder:
    """``moving_mnist``, ``video_folder`` and ``video_shards``: clips of their ``frames``, ``channels`` and ``size``."""
    return ClipDecoder("video", (options.frames, options.channels, options.size, options.size))
