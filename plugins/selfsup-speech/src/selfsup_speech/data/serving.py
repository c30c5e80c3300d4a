"""Serving decoders of the speech data sources: the bytes of an uploaded audio file (WAV, FLAC,
OGG, ... anything soundfile reads) -> the sample the source would yield for such a file.

Each source registers a ``decoder=`` factory ``(options, context) -> AudioDecoder`` built from its
recipe options alone (no file of the data set is read, nothing is synthesized):

* ``audio_folder``, ``audio_manifest``, ``audio_shards``: decoded, mixed to mono and resampled to
  ``sample_rate`` by :func:`selfsup_speech.data.audio_io.to_waveform`, the function the sources read
  files with (``selfsup prepare-audio`` too);
* ``synth_speech``: the same, then silence-trimmed (``trim_db``) and peak-normalised (``peak``) by
  :func:`selfsup_speech.synth.postprocess.trim_and_normalise`, as every generated clip was.

Samples are ``{"audio": float32 [T]}`` (no label, speaker or text), batched by the source's
``collate`` (:func:`selfsup_speech.data.collate.pad_audio`, which adds lengths and the padding mask).
Stats: ``seconds`` (the uploaded clip's duration), ``sample_rate`` and ``channels`` (the file's),
``truncated`` (1.0 when cut).

Clip length: at most the source's ``max_seconds`` (``audio_manifest``; longer entries are left out
of its data set), else ``DEFAULT_MAX_SECONDS``. A longer clip is cut to its first ``max_seconds``
(at the file's rate, before resampling; at most ``max_seconds`` plus one frame is decoded) with
``truncate=True``, refused with status 413 otherwise.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable

import numpy as np
import soundfile
import torch

from selfsup.components import BadInput, BuildContext
from selfsup_speech.data.audio_io import to_waveform

#: Longest clip (seconds) a decoder takes when its source's options set no maximum.
DEFAULT_MAX_SECONDS = 60.0
FIELD = "audio"


def _soundfile_message(exc: Exception) -> str:
    """What soundfile said, short: libsndfile's own words without the "Error opening <BytesIO ...>" prefix."""
    text = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= 160 else text[:157] + "..."


class AudioDecoder:
    """Uploaded audio bytes -> ``({"audio": float32 [T] at sample_rate}, stats)``.

    ``postprocess(audio, sample_rate)`` runs after the mono mix and resampling (``synth_speech``: trim and
    peak-normalise); it may return an empty waveform (only silence), refused as such."""

    fields: Mapping[str, str] = MappingProxyType({FIELD: "audio"})

    def __init__(self, sample_rate: int, *, max_seconds: float | None = None, source: str = "audio",
                 postprocess: Callable[[torch.Tensor, int], torch.Tensor] | None = None):
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        self.sample_rate = int(sample_rate)
        self.max_seconds = float(max_seconds if max_seconds is not None else DEFAULT_MAX_SECONDS)
        self.source = source
        self.postprocess = postprocess

    def __repr__(self) -> str:
        return (f"AudioDecoder({self.source}: sample_rate={self.sample_rate}, max_seconds={self.max_seconds:g}"
                f"{', trim + normalise' if self.postprocess else ''})")

    def max_frames(self, rate: int) -> int:
        """Frames of ``max_seconds`` at ``rate`` (a clip of exactly ``max_seconds`` is not cut)."""
        return max(1, int(math.floor(self.max_seconds * rate + 1e-6)))

    def __call__(self, raw: Mapping[str, Any], *, truncate: bool = True) -> tuple[dict[str, Any], dict[str, float]]:
        data = raw.get(FIELD) if isinstance(raw, Mapping) else None
        if data is None:
            raise BadInput(FIELD, "missing: send the bytes of an audio file (WAV, FLAC, OGG, ...)")
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise BadInput(FIELD, f"expected the bytes of an audio file, got {type(data).__name__}")
        if not data:
            raise BadInput(FIELD, "empty file (0 bytes)")
        try:
            with soundfile.SoundFile(io.BytesIO(data)) as f:
                rate, channels, header_frames = int(f.samplerate), int(f.channels), int(f.frames)
                limit = self.max_frames(rate)
                frames = f.read(limit + 1, dtype="float32", always_2d=True)  # [T, C], one frame more tells "longer"
        except Exception as exc:  # noqa: BLE001 - anything soundfile cannot read is a bad upload
            raise BadInput(FIELD, f"cannot decode the audio file: {_soundfile_message(exc)}") from None
        if frames.shape[0] == 0:
            raise BadInput(FIELD, "no audio samples (zero frames)")
        truncated = frames.shape[0] > limit
        seconds = (max(header_frames, frames.shape[0]) if truncated else frames.shape[0]) / rate
        if truncated:
            if not truncate:
                raise BadInput(FIELD, f"{seconds:.2f} s, at most {self.max_seconds:g} s", 413)
            frames = frames[:limit]
        if not np.isfinite(frames).all():
            raise BadInput(FIELD, "non-finite samples (NaN or infinity)")
        audio, _ = to_waveform(frames, rate, self.sample_rate)  # [T'] mono at sample_rate
        if self.postprocess is not None:
            audio = self.postprocess(audio, self.sample_rate)
            if audio.numel() == 0:
                raise BadInput(FIELD, "only silence: nothing left after trimming")
        stats = {"seconds": float(seconds), "sample_rate": float(rate), "channels": float(channels),
                 "truncated": float(truncated)}
        return {"audio": audio}, stats


def folder_decoder(options: Any, context: BuildContext) -> AudioDecoder:
    """``audio_folder``: mono, resampled to ``sample_rate``; clips of at most ``DEFAULT_MAX_SECONDS``."""
    return AudioDecoder(options.sample_rate, source="audio_folder")


def manifest_decoder(options: Any, context: BuildContext) -> AudioDecoder:
    """``audio_manifest``: mono, resampled to ``sample_rate``; clips of at most ``max_seconds`` (the source's
    filter) or ``DEFAULT_MAX_SECONDS``."""
    return AudioDecoder(options.sample_rate, max_seconds=options.max_seconds, source="audio_manifest")


def shards_decoder(options: Any, context: BuildContext) -> AudioDecoder:
    """``audio_shards``: mono, resampled to ``sample_rate`` (the rate the shards were prepared at), as
    ``selfsup prepare-audio`` made them; clips of at most ``DEFAULT_MAX_SECONDS``."""
    return AudioDecoder(options.sample_rate, source="audio_shards")


def synth_decoder(options: Any, context: BuildContext) -> AudioDecoder:
    """``synth_speech``: mono, resampled to ``sample_rate``, trimmed (``trim_db``) and peak-normalised
    (``peak``) like the generated clips; clips of at most ``DEFAULT_MAX_SECONDS``. Synthesizes nothing."""
    from selfsup_speech.synth.postprocess import trim_and_normalise

    trim_db, peak = float(options.trim_db), float(options.peak)

    def postprocess(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return trim_and_normalise(audio, sample_rate, trim_db, peak)

    return AudioDecoder(options.sample_rate, source="synth_speech", postprocess=postprocess)
