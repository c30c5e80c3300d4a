"""Hand-made speech features: MFCCs with deltas (HuBERT's first-iteration targets, the probe's
baseline) and nearest-centre alignment of frame sequences that run at different rates."""

from __future__ import annotations

import torch
import torchaudio

MFCC_HOP_S = 0.010  # 10 ms frames, as Kaldi and HuBERT
MFCC_WIN_S = 0.025


class MFCCFrames:
    """``audio [T]`` -> ``[F, 3 * n_mfcc]``: MFCCs (torchaudio, 40 mel bands, 25 ms windows every
    10 ms, centred) with deltas and delta-deltas (Davis and Mermelstein 1980; Furui 1986)."""

    def __init__(self, sample_rate: int, n_mfcc: int = 13):
        self.sample_rate = int(sample_rate)
        win = round(MFCC_WIN_S * sample_rate)
        self.hop = round(MFCC_HOP_S * sample_rate)
        self.transform = torchaudio.transforms.MFCC(
            sample_rate=sample_rate, n_mfcc=n_mfcc,
            melkwargs={"n_fft": 1 << (win - 1).bit_length(), "win_length": win, "hop_length": self.hop,
                       "n_mels": max(40, n_mfcc), "center": True},
        )
        self.frame_rate = sample_rate / self.hop
        self.frame_offset = 0.0  # centred frames

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        audio = torch.as_tensor(audio).float().flatten()
        need = self.transform.MelSpectrogram.spectrogram.n_fft // 2 + 1  # reflect padding needs this many
        if audio.numel() < need:
            audio = torch.nn.functional.pad(audio, (0, need - audio.numel()))
        mfcc = self.transform(audio)  # [n_mfcc, F]
        delta = torchaudio.functional.compute_deltas(mfcc)
        delta2 = torchaudio.functional.compute_deltas(delta)
        return torch.cat([mfcc, delta, delta2], dim=0).T.contiguous()  # [F, 3 * n_mfcc]


def align_frames(
    source: torch.Tensor,  # [F_s, D] frames at source_rate, frame 0 centred at source_offset seconds
    source_rate: float,
    source_offset: float,
    frames: int,
    rate: float,
    offset: float,
) -> torch.Tensor:
    """Resample ``source`` to ``frames`` frames at ``rate`` (frame 0 centred at ``offset`` s) by
    taking, for each target frame, the source frame whose centre is nearest: ``[frames, D]``."""
    times = offset + torch.arange(frames, dtype=torch.float64) / rate  # [frames] centres in seconds
    index = torch.round((times - source_offset) * source_rate).long().clamp(0, source.shape[0] - 1)
    return source[index.to(source.device)]
