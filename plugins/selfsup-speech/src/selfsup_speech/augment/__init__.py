"""Waveform and spectrogram augmentations (audio.py): speed, noise, gain, crop, SpecAugment.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
