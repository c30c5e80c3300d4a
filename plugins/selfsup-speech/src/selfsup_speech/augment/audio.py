"""Waveform and spectrogram augmentations for speech.

* ``speed_perturb``: Ko et al. 2015, "Audio augmentation for speech recognition" (Interspeech):
  resample by a factor f so the clip plays f times faster (length / f, pitch x f).
* ``add_noise``: white or pink (1/f power) noise, scaled to an exact signal-to-noise ratio.
* ``gain``: a random gain in dB.
* ``random_crop``: a random segment of at most ``max_seconds``.
* ``spec_augment``: Park et al. 2019, "SpecAugment: A Simple Data Augmentation Method for
  Automatic Speech Recognition" (Interspeech): frequency and time masking (no time warping).

Waveform augmentations act on ``sample[key]`` (``"audio"``, 1-D ``[T]``); ``spec_augment`` on a
spectrogram field ``[F, T]`` or ``[C, F, T]``. All randomness comes from the ``generator`` the
core passes (one per sample), never from global RNG; every augmentation returns a new sample dict
and leaves its input untouched. ``p`` is the probability of applying it (drawn first, always).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from selfsup.components import BuildContext
from selfsup_speech.data.audio_io import resample

Sample = dict[str, Any]


def _uniform(low: float, high: float, g: torch.Generator) -> float:
    return low + (high - low) * torch.rand((), generator=g, dtype=torch.float64).item()


def _randint(low: int, high: int, g: torch.Generator) -> int:
    """Uniform integer in ``[low, high]`` (both included)."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _skip(p: float, g: torch.Generator) -> bool:
    return torch.rand((), generator=g).item() >= p


def _wave(sample: Sample, key: str, name: str) -> torch.Tensor:
    if key not in sample:
        raise KeyError(f"{name}: the sample has no {key!r} field (has {sorted(sample)})")
    audio = torch.as_tensor(sample[key])
    if audio.dim() != 1:
        raise ValueError(f"{name}: {key!r} must be a 1-D waveform [T], got shape {tuple(audio.shape)}")
    return audio


# ------------------------------------------------------------------------------ speed perturbation


class SpeedPerturb:
    """Speed factor f drawn uniformly in ``factors`` in steps of 0.01 (so resampling from
    ``100 f`` to ``100`` keeps the sinc kernels small): output length ``round(T / f)``."""

    def __init__(self, options: Any):
        self.key, self.p = options.key, options.p
        self.low, self.high = round(options.factors[0] * 100), round(options.factors[1] * 100)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        audio = _wave(sample, self.key, "speed_perturb")
        if _skip(self.p, generator):
            return dict(sample)
        percent = _randint(self.low, self.high, generator)
        out = resample(audio.float(), percent, 100)  # [ceil(T * 100 / percent)]
        return {**sample, self.key: out}


def build_speed_perturb(options: Any, context: BuildContext) -> SpeedPerturb:
    return SpeedPerturb(options)


# ------------------------------------------------------------------------------ additive noise


def coloured_noise(n: int, color: str, generator: torch.Generator) -> torch.Tensor:
    """``[n]`` Gaussian noise: ``white`` (flat spectrum) or ``pink`` (power ~ 1/f: the white
    spectrum's amplitudes scaled by 1/sqrt(f), the DC bin dropped)."""
    white = torch.randn(n, generator=generator)
    if color == "white" or n < 4:
        return white
    spectrum = torch.fft.rfft(white)  # [n // 2 + 1]
    k = torch.arange(spectrum.numel(), dtype=torch.float32)
    spectrum = spectrum * torch.where(k > 0, k.clamp_min(1).rsqrt(), torch.zeros(()))
    return torch.fft.irfft(spectrum, n=n)


class AddNoise:
    """Noise scaled so that ``10 log10(mean(x^2) / mean(noise^2))`` equals the drawn SNR
    exactly; if the mixture then peaks above 1 it is scaled down as a whole (SNR unchanged).
    Silent clips are returned unchanged (their SNR is undefined)."""

    def __init__(self, options: Any):
        self.key, self.p, self.snr_db, self.color = options.key, options.p, options.snr_db, options.color

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        audio = _wave(sample, self.key, "add_noise").float()
        if _skip(self.p, generator):
            return dict(sample)
        snr = _uniform(*self.snr_db, generator)
        color = self.color if self.color != "random" else ("white", "pink")[_randint(0, 1, generator)]
        noise = coloured_noise(audio.numel(), color, generator)  # [T]
        signal_power, noise_power = audio.double().pow(2).mean(), noise.double().pow(2).mean()
        if signal_power <= 0 or noise_power <= 0:
            return dict(sample)
        scale = torch.sqrt(signal_power / (noise_power * 10 ** (snr / 10)))
        out = (audio.double() + scale * noise.double())
        peak = out.abs().max()
        if peak > 1:
            out = out / peak
        return {**sample, self.key: out.to(audio.dtype)}


def build_add_noise(options: Any, context: BuildContext) -> AddNoise:
    return AddNoise(options)


# ------------------------------------------------------------------------------ gain


class Gain:
    """``x * 10^(g / 20)`` with g drawn uniformly in ``gain_db`` (values may leave [-1, 1] for g > 0)."""

    def __init__(self, options: Any):
        self.key, self.p, self.gain_db = options.key, options.p, options.gain_db

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        audio = _wave(sample, self.key, "gain")
        if _skip(self.p, generator):
            return dict(sample)
        gain = _uniform(*self.gain_db, generator)
        return {**sample, self.key: audio * math.pow(10.0, gain / 20)}


def build_gain(options: Any, context: BuildContext) -> Gain:
    return Gain(options)


# ------------------------------------------------------------------------------ random crop


class RandomCrop:
    """``round(max_seconds * sample_rate)`` samples from a random start; shorter clips untouched."""

    def __init__(self, options: Any):
        self.key, self.p = options.key, options.p
        self.length = max(1, int(round(options.max_seconds * options.sample_rate)))

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        audio = _wave(sample, self.key, "random_crop")
        if _skip(self.p, generator) or audio.numel() <= self.length:
            return dict(sample)
        start = _randint(0, audio.numel() - self.length, generator)
        return {**sample, self.key: audio[start: start + self.length].clone()}


def build_random_crop(options: Any, context: BuildContext) -> RandomCrop:
    return RandomCrop(options)


# ------------------------------------------------------------------------------ SpecAugment


def spec_masks(n_freq: int, n_time: int, freq_masks: int, freq_width: int, time_masks: int, time_width: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Park et al.'s masks as booleans ``([F], [T])`` (True = masked): each mask has a width
    w ~ U{0..W} (capped at the axis length) and a start ~ U{0..len - w}."""
    masks = []
    for length, count, width in ((n_freq, freq_masks, freq_width), (n_time, time_masks, time_width)):
        mask = torch.zeros(length, dtype=torch.bool)
        for _ in range(count):
            w = min(_randint(0, width, generator), length)
            start = _randint(0, length - w, generator)
            mask[start: start + w] = True
        masks.append(mask)
    return masks[0], masks[1]


class SpecAugment:
    def __init__(self, options: Any):
        self.options = options

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        o = self.options
        if o.key not in sample:
            raise KeyError(f"spec_augment: the sample has no {o.key!r} field (has {sorted(sample)})")
        spec = torch.as_tensor(sample[o.key])
        if spec.dim() not in (2, 3):
            raise ValueError(f"spec_augment: {o.key!r} must be [F, T] or [C, F, T], got shape {tuple(spec.shape)}")
        if _skip(o.p, generator):
            return dict(sample)
        freq, time = spec_masks(spec.shape[-2], spec.shape[-1], o.freq_masks, o.freq_width, o.time_masks, o.time_width,
                                generator)
        cells = freq.unsqueeze(1) | time.unsqueeze(0)  # [F, T], the same for every channel
        value = spec.float().mean().item() if o.mask_value == "mean" else float(o.mask_value)
        return {**sample, o.key: spec.masked_fill(cells, value)}


def build_spec_augment(options: Any, context: BuildContext) -> SpecAugment:
    return SpecAugment(options)
