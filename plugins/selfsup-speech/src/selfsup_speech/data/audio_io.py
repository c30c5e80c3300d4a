"""Reading audio files: soundfile decoding, mono mixing, torchaudio resampling.

torchaudio's own ``load``/``save`` need torchcodec, so files are decoded with soundfile (WAV,
FLAC, OGG/Vorbis, ...) and only the resampling uses torchaudio."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.transforms as T


@lru_cache(maxsize=64)
def _resampler(orig_freq: int, new_freq: int) -> T.Resample:
    return T.Resample(orig_freq, new_freq)  # band-limited sinc interpolation, kernel computed once


def resample(audio: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """``audio`` ``[..., T]`` at ``orig_freq`` -> ``[..., T * new_freq / orig_freq]`` at ``new_freq``."""
    if orig_freq == new_freq:
        return audio
    with torch.no_grad():
        return _resampler(int(orig_freq), int(new_freq))(audio)


def to_mono(frames: np.ndarray) -> np.ndarray:
    """``[T, C]`` -> ``[T]``: the mean of the channels."""
    return frames[:, 0] if frames.shape[1] == 1 else frames.mean(axis=1, dtype=np.float32)


def to_waveform(frames: np.ndarray, rate: int, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Decoded float32 ``frames`` ``[T, C]`` at ``rate`` -> mono float32 ``[T']``, resampled to
    ``sample_rate`` if given; returns ``(audio, rate)``. The one path from decoded frames to a sample:
    the sources (:func:`read_audio`) and the serving decoders (:mod:`.serving`) both take it."""
    audio = torch.from_numpy(np.ascontiguousarray(to_mono(frames)))  # [T]
    if sample_rate is not None and rate != sample_rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio.contiguous(), int(rate)


def read_audio(path: str | Path, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Decode ``path`` to mono float32 ``[T]`` in [-1, 1]; resampled to ``sample_rate`` if given.
    Returns ``(audio, rate)``; raises ``ValueError`` for a file without samples."""
    frames, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    if frames.shape[0] == 0:
        raise ValueError(f"no audio samples in {path}")
    return to_waveform(frames, rate, sample_rate)


def audio_frames(path: str | Path) -> tuple[int, int]:
    """``(frames, sample_rate)`` from the file header, without decoding; raises when unreadable."""
    info = soundfile.info(str(path))
    return int(info.frames), int(info.samplerate)


def check_audio(path: str | Path) -> int:
    """The frame count from the header of ``path``; raises, saying why, for a missing or empty file, a
    file soundfile cannot read (not audio, or a damaged header) and a file without samples."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError("no such file")
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    frames, _ = audio_frames(path)
    if frames <= 0:
        raise ValueError("no audio samples")
    return frames
