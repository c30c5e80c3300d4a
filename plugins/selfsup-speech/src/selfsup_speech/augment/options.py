"""Options of the speech augmentations (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from selfsup.options import Options
from selfsup_speech.data.options import Range, check_range


class _WaveAug(Options):
    key: str = Field("audio", description="Sample field holding the 1-D waveform.")
    p: float = Field(1.0, ge=0, le=1, description="Probability of applying the augmentation.")


class SpeedPerturbOptions(_WaveAug):
    """Ko et al. 2015: resample by a factor so the clip plays faster (and higher) or slower."""

    factors: Range = Field((0.9, 1.1),
                           description="Speed factor range; drawn in steps of 0.01. 1.1 = 10% faster (shorter).")

    @field_validator("factors")
    @classmethod
    def _factors(cls, v: Range) -> Range:
        return check_range(v, "factors", 0.5, 2.0)


class AddNoiseOptions(_WaveAug):
    """Add white or pink noise at a signal-to-noise ratio drawn from ``snr_db``."""

    snr_db: Range = Field((5.0, 30.0), description="SNR range in dB (uniform).")
    color: Literal["white", "pink", "random"] = Field("white", description="Noise spectrum; random: white or pink with "
                                                                           "equal odds.")

    @field_validator("snr_db")
    @classmethod
    def _snr(cls, v: Range) -> Range:
        return check_range(v, "snr_db", -30, 100)


class GainOptions(_WaveAug):
    """Scale the waveform by a gain in dB drawn from ``gain_db`` (no clipping)."""

    gain_db: Range = Field((-6.0, 6.0), description="Gain range in dB (uniform).")

    @field_validator("gain_db")
    @classmethod
    def _gain(cls, v: Range) -> Range:
        return check_range(v, "gain_db", -60, 60)


class RandomCropOptions(_WaveAug):
    """A random segment of at most ``max_seconds``; shorter clips are returned untouched."""

    max_seconds: float = Field(gt=0, description="Longest clip kept, in seconds.")
    sample_rate: int = Field(16000, ge=1000, le=192000,
                             description="Sample rate of the data (to turn seconds into samples).")


class SpecAugmentOptions(Options):
    """Park et al. 2019 time and frequency masking on a ``[F, T]`` or ``[C, F, T]`` spectrogram."""

    key: str = Field("spectrogram", description="Sample field holding the spectrogram [F, T] or [C, F, T].")
    time_masks: int = Field(2, ge=0, le=100, description="Number of time masks.")
    time_width: int = Field(20, ge=0, description="Largest time-mask width in frames (width ~ U[0, time_width]).")
    freq_masks: int = Field(2, ge=0, le=100, description="Number of frequency masks.")
    freq_width: int = Field(10, ge=0, description="Largest frequency-mask width in bins.")
    mask_value: float | Literal["mean"] = Field(0.0, description="Value written into masked cells, or the "
                                                                 "spectrogram's mean.")
    p: float = Field(1.0, ge=0, le=1, description="Probability of applying the augmentation.")
