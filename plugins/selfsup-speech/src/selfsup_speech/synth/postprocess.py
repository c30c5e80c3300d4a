"""From espeak-ng's int16 output to a stored clip: resample, trim silence, peak-normalise."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from selfsup_speech.data.audio_io import resample


def trim_silence(audio: torch.Tensor, sample_rate: int, threshold_db: float, frame_ms: float = 10.0) -> torch.Tensor:
    """Cut leading and trailing frames whose RMS is more than ``threshold_db`` below the loudest
    frame's (energy threshold on ``frame_ms`` frames), keeping one frame of margin each side."""
    frame = max(1, int(round(sample_rate * frame_ms / 1000)))
    n = audio.numel()
    if n == 0:
        return audio
    frames = F.pad(audio, (0, (-n) % frame)).view(-1, frame)  # [n_frames, frame]
    rms = frames.pow(2).mean(1).sqrt()  # [n_frames]
    peak = rms.max()
    if peak <= 0:
        return audio[:0]
    loud = torch.nonzero(rms >= peak * 10 ** (-threshold_db / 20)).flatten()
    first, last = max(int(loud[0]) - 1, 0), min(int(loud[-1]) + 2, len(rms))
    return audio[first * frame: min(last * frame, n)]


def peak_normalise(audio: torch.Tensor, peak: float) -> torch.Tensor:
    top = audio.abs().max() if audio.numel() else torch.tensor(0.0)
    return audio if top <= 0 else audio * (peak / top)


def trim_and_normalise(audio: torch.Tensor, sample_rate: int, trim_db: float, peak: float) -> torch.Tensor:
    """float32 ``[T]`` at ``sample_rate`` -> ``[T']``: silence trimmed (:func:`trim_silence`), then
    scaled so that its largest magnitude is ``peak``. Generation and the serving decoder share it."""
    audio = trim_silence(audio, sample_rate, trim_db)
    return peak_normalise(audio, peak).contiguous()


def finish(samples: np.ndarray, engine_rate: int, sample_rate: int, trim_db: float, peak: float) -> torch.Tensor:
    """``samples``: int16 ``[N]`` at ``engine_rate`` -> float32 ``[T]`` at ``sample_rate``, trimmed
    and scaled so that its largest magnitude is ``peak``."""
    audio = torch.from_numpy(samples.astype(np.float32) / 32768.0)  # [N]
    if engine_rate != sample_rate:
        audio = resample(audio, engine_rate, sample_rate)  # [N * sample_rate / engine_rate]
    return trim_and_normalise(audio, sample_rate, trim_db, peak)
