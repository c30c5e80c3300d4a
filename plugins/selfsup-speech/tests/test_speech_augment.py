"""Speech augmentations: conformance, exact SNR and gain, crop length, speed factor, SpecAugment masks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup.testing import AugmentationConformance
from selfsup_speech.augment.audio import coloured_noise, spec_masks

RATE = 16000


def aug(name, options):
    comp = get_plugin_manager().registry.get("augmentation", name)
    return comp.build(options, BuildContext(name=name))


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def tone(freq=440.0, seconds=0.5, amplitude=0.1):
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    return (amplitude * torch.sin(2 * torch.pi * freq * t)).float()


def peak_hz(x, rate=RATE):
    return torch.fft.rfft(x.double()).abs().argmax().item() * rate / x.numel()


@pytest.fixture(scope="module")
def wave_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("waves")
    rng = np.random.default_rng(0)
    for i in range(2):
        soundfile.write(root / f"{i}.wav",
                        (0.3 * np.sin(np.arange(8000) * 0.07 * (i + 1)) + 0.05 * rng.standard_normal(8000)), RATE)
    return root


@pytest.fixture(scope="module")
def spectrograms(tmp_path_factory):
    path = tmp_path_factory.mktemp("specs") / "logmel.npy"
    np.save(path, np.random.default_rng(0).standard_normal((3, 40, 60)).astype(np.float32) + 5.0)
    return path


class _OnWaves(AugmentationConformance):
    @pytest.fixture(autouse=True)
    def _data(self, wave_folder):
        type(self).data = ("audio_folder", {"root": str(wave_folder)})


class TestSpeedPerturb(_OnWaves):
    augmentation = ("speed_perturb", {"factors": [0.8, 1.2]})
    bad_options = [{"factors": [1.2, 0.8]}, {"factors": [0.1, 1.0]}, {"p": 2}]


class TestAddNoise(_OnWaves):
    augmentation = ("add_noise", {"snr_db": [0, 20], "color": "random"})
    bad_options = [{"snr_db": [20, 0]}, {"color": "brown"}, {"p": -0.1}]


class TestGain(_OnWaves):
    augmentation = ("gain", {"gain_db": [-6, 6]})
    bad_options = [{"gain_db": [6, -6]}, {"gain_db": [-100, 0]}]


class TestRandomCrop(_OnWaves):
    augmentation = ("random_crop", {"max_seconds": 0.1})
    bad_options = [{}, {"max_seconds": 0}, {"max_seconds": 1, "sample_rate": 10}]
    option_variants = {"sample_rate": 8000}  # 0.1 s is 1,600 samples at 16,000 and at 16,001 Hz


class TestSpecAugment(AugmentationConformance):
    augmentation = ("spec_augment",
                    {"key": "input", "time_masks": 2, "time_width": 10, "freq_masks": 2, "freq_width": 8})
    bad_options = [{"time_masks": -1}, {"freq_width": -2}, {"mask_value": "median"}]

    @pytest.fixture(autouse=True)
    def _data(self, spectrograms):
        type(self).data = ("tensor_file", {"path": str(spectrograms)})


# ------------------------------------------------------------------------------ speed


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_speed_changes_length_and_pitch_by_the_factor(factor):
    x = tone(400, 1.0)
    out = aug("speed_perturb", {"factors": [factor, factor]})({"audio": x}, g())["audio"]
    assert abs(out.numel() - x.numel() / factor) <= 1
    assert abs(peak_hz(out) - 400 * factor) < 3


def test_speed_factor_is_drawn_from_the_range():
    a = aug("speed_perturb", {"factors": [0.9, 1.1]})
    x = tone(400, 1.0)
    lengths = {a({"audio": x}, g(s))["audio"].numel() for s in range(30)}
    assert len(lengths) > 5 and min(lengths) >= 16000 / 1.1 - 1 and max(lengths) <= 16000 / 0.9 + 1


# ------------------------------------------------------------------------------ noise


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_add_noise_reaches_the_exact_snr(color, snr):
    x = tone(300, 0.5, amplitude=0.05)
    out = aug("add_noise", {"snr_db": [snr, snr], "color": color})({"audio": x}, g(4))["audio"]
    noise = out.double() - x.double()
    measured = 10 * torch.log10(x.double().pow(2).mean() / noise.pow(2).mean()).item()
    assert measured == pytest.approx(snr, abs=0.01)


def test_add_noise_rescales_loud_mixtures_without_changing_the_snr():
    noisy = aug("add_noise", {"snr_db": [0, 0]})
    loud = noisy({"audio": tone(amplitude=0.95)}, g(1))["audio"].double()
    quiet = noisy({"audio": tone(amplitude=0.0095)}, g(1))["audio"].double()  # same draws, no rescaling needed
    assert loud.abs().max().item() == pytest.approx(1.0, abs=1e-6)
    assert quiet.abs().max().item() < 0.1
    # the loud mixture is the quiet one scaled as a whole, so its SNR is the same exact 0 dB
    assert torch.allclose(loud, quiet / quiet.abs().max(), atol=1e-5)


def test_pink_noise_has_a_falling_spectrum():
    noise = coloured_noise(1 << 14, "pink", g(0))
    power = torch.fft.rfft(noise.double()).abs().pow(2)
    low, high = power[10:100].mean(), power[4000:8000].mean()
    assert 30 < (low / high).item() < 200  # 1/f: about the ratio of the bands' frequencies (~110)
    white = torch.fft.rfft(coloured_noise(1 << 14, "white", g(0)).double()).abs().pow(2)
    assert 0.5 < (white[10:100].mean() / white[4000:8000].mean()).item() < 2


def test_silent_clip_is_left_alone():
    out = aug("add_noise", {})({"audio": torch.zeros(100)}, g())["audio"]
    assert torch.equal(out, torch.zeros(100))


# ------------------------------------------------------------------------------ gain


@pytest.mark.parametrize("db", [-12.0, -3.0, 0.0, 6.0])
def test_gain_is_exact_in_db(db):
    x = tone()
    out = aug("gain", {"gain_db": [db, db]})({"audio": x}, g())["audio"]
    rms_ratio = out.double().pow(2).mean().sqrt() / x.double().pow(2).mean().sqrt()
    assert 20 * torch.log10(rms_ratio).item() == pytest.approx(db, abs=1e-4)


def test_gain_probability():
    x = tone()
    skipped = aug("gain", {"gain_db": [6, 6], "p": 0.0})({"audio": x, "label": 3}, g())
    assert torch.equal(skipped["audio"], x) and skipped["label"] == 3


# ------------------------------------------------------------------------------ crop


def test_random_crop_length_and_position():
    x = torch.arange(RATE, dtype=torch.float32)  # 1 s of distinct values
    crop = aug("random_crop", {"max_seconds": 0.25})
    starts = set()
    for seed in range(10):
        out = crop({"audio": x}, g(seed))["audio"]
        assert out.numel() == 4000
        start = int(out[0])
        assert torch.equal(out, x[start:start + 4000])
        starts.add(start)
    assert len(starts) > 5
    short = torch.ones(1000)
    assert torch.equal(crop({"audio": short}, g())["audio"], short)
    with pytest.raises(ValueError, match="1-D"):
        crop({"audio": torch.zeros(2, 8000)}, g())


# ------------------------------------------------------------------------------ SpecAugment


def test_spec_augment_masks_within_bounds():
    spec = torch.randn(40, 100) + 10  # no cell is 0 before masking
    a = aug("spec_augment", {"time_masks": 2, "time_width": 7, "freq_masks": 3, "freq_width": 5})
    seen_time, seen_freq = set(), set()
    for seed in range(30):
        out = a({"spectrogram": spec}, g(seed))["spectrogram"]
        masked = out == 0
        rows = masked.all(dim=1)  # [F]: frequency bins masked over all time
        cols = masked.all(dim=0)  # [T]
        assert int(rows.sum()) <= 3 * 5 and int(cols.sum()) <= 2 * 7
        assert torch.equal(masked, rows.unsqueeze(1) | cols.unsqueeze(0))  # only whole rows and columns
        assert torch.equal(out[~masked], spec[~masked])
        seen_freq.add(int(rows.sum()))
        seen_time.add(int(cols.sum()))
    assert max(seen_freq) > 0 and max(seen_time) > 0 and len(seen_time) > 2


def test_spec_masks_count_and_width():
    for seed in range(50):
        freq, time = spec_masks(20, 50, 1, 4, 1, 9, g(seed))
        f_idx, t_idx = freq.nonzero().flatten(), time.nonzero().flatten()
        assert f_idx.numel() <= 4 and t_idx.numel() <= 9
        if f_idx.numel():  # one mask: one contiguous band
            assert (f_idx.max() - f_idx.min() + 1).item() == f_idx.numel()
        if t_idx.numel():
            assert (t_idx.max() - t_idx.min() + 1).item() == t_idx.numel()


def test_spec_augment_channels_share_masks_and_mean_value():
    spec = torch.randn(2, 30, 80) + 3
    out = aug("spec_augment", {"key": "feats", "time_masks": 2, "time_width": 10, "freq_masks": 2, "freq_width": 6,
                               "mask_value": "mean"})({"feats": spec}, g(7))["feats"]
    changed = out != spec
    assert changed.any() and torch.equal(changed[0], changed[1])
    assert torch.allclose(out[changed], torch.full_like(out[changed], spec.mean().item()))
    with pytest.raises(ValueError, match=r"\[F, T\]"):
        aug("spec_augment", {})({"spectrogram": torch.zeros(5)}, g())
