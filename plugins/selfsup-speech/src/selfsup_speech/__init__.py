"""selfsup-speech: self-supervised learning on speech.

Registers audio data sources (a synthesized-speech set made with espeak-ng, audio folders,
fairseq-style manifests), torchaudio augmentations, backbones (a wav2vec 2.0-style conv feature
encoder + transformer built from torchaudio components, a log-mel front end + transformer or LSTM),
the wav2vec 2.0, HuBERT and APC pretext tasks, a SUPERB-style probe evaluator with an MFCC
baseline, and a quickstart recipe per task. Implementations are imported inside the factories, so
loading this plugin imports no torch.
"""

from __future__ import annotations

from typing import Any, Callable

import selfsup
from selfsup.registry import lazy, package_recipes
from selfsup_speech.options import data as od
from selfsup_speech.options import models as om

MODALITY = "speech"


def _lazy(path: str) -> Callable[[Any, Any], Any]:
    return lazy(f"selfsup_speech.{path}")


@selfsup.hookimpl
def register_data_sources(register):
    register("synth_speech", _lazy("data.synthesized:build"), options=od.SynthSpeechOptions, modality=MODALITY,
             summary="Keywords spoken by espeak-ng voices (pip-installed), cached; held-out voices for evaluation.")
    register("audio_folder", _lazy("data.folder:build"), options=od.AudioFolderOptions, modality=MODALITY,
             summary="WAV/FLAC/OGG files in a tree (soundfile), resampled and mono-mixed; sub-folders give labels.")
    register("audio_manifest", _lazy("data.manifest:build"), options=od.AudioManifestOptions, modality=MODALITY,
             summary="A fairseq-style TSV manifest (root line, then path and sample count) for large sets.")


@selfsup.hookimpl
def register_augmentations(register):
    for name, options, summary in [
        ("speed_perturb", od.SpeedPerturbOptions, "Resample to change speed (and pitch) by a random factor."),
        ("add_noise", od.AddNoiseOptions, "Add Gaussian or coloured noise at a random SNR."),
        ("gain", od.GainOptions, "Scale the waveform by a random gain in dB."),
        ("random_crop", od.RandomCropOptions, "Crop a random segment of at most max_seconds."),
        ("spec_augment", od.SpecAugmentOptions, "SpecAugment time and frequency masking on spectrogram inputs."),
    ]:
        register(name, _lazy(f"augment:build_{name}"), options=options, modality=MODALITY, summary=summary)


@selfsup.hookimpl
def register_backbones(register):
    register("wav2vec2_encoder", _lazy("backbones.wav2vec2:build"), options=om.Wav2Vec2EncoderOptions,
             modality=MODALITY, summary="Conv feature encoder + transformer from torchaudio components (exports to Wav2Vec2Model).")
    register("logmel_encoder", _lazy("backbones.logmel:build"), options=om.LogMelEncoderOptions, modality=MODALITY,
             summary="Log-mel front end + transformer or LSTM (APC).")


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("wav2vec2", _lazy("wav2vec2:build"), options=om.Wav2Vec2Options, modality=MODALITY,
             summary="Contrastive prediction of quantized latents at masked spans, with diversity loss.")
    register("hubert", _lazy("hubert:build"), options=om.HuBERTOptions, modality=MODALITY,
             summary="Masked prediction of k-means targets (MFCC, then the previous model's features).")
    register("apc", _lazy("apc:build"), options=om.APCOptions, modality=MODALITY,
             summary="Autoregressive predictive coding: L1 on the log-mel frame n steps ahead.")


@selfsup.hookimpl
def register_evaluators(register):
    register("speech_probe", _lazy("evaluators.probe:build"), options=om.SpeechProbeOptions, modality=MODALITY,
             summary="Frozen-feature linear probe (keyword or voice) on held-out voices, MFCC baseline beside.")


# name -> summary; the TOML text is recipes/<name>.toml in this package.
RECIPES: dict[str, str] = {
    "wav2vec2-quickstart": "wav2vec 2.0 on synthesized keywords; keyword probe on held-out voices (a few minutes on a CPU).",
    "hubert-quickstart": "HuBERT iteration 1 (MFCC k-means targets) on synthesized keywords; keyword probe on held-out voices.",
    "hubert-iter2": "HuBERT iteration 2: targets from a layer of the hubert-quickstart run (train that first).",
    "apc-quickstart": "APC: a unidirectional LSTM predicts log-mel frames 3 steps ahead; keyword probe on held-out voices.",
}


@selfsup.hookimpl
def register_recipes(register):
    package_recipes(register, "selfsup_speech", RECIPES, modality=MODALITY)
