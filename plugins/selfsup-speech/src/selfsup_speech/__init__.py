"""selfsup-speech: self-supervised learning on speech.

Registers audio data sources (a synthesized-speech set made with espeak-ng, audio folders,
fairseq-style manifests, shards from ``selfsup prepare-audio``), torchaudio augmentations, backbones
(a wav2vec 2.0-style conv feature encoder + transformer built from torchaudio components, a log-mel
front end + transformer or LSTM), the wav2vec 2.0, HuBERT and APC pretext tasks, a SUPERB-style probe
evaluator with an MFCC baseline, the ``selfsup prepare-audio`` command and a quickstart recipe per
task. Every data source also registers a serving decoder (``data/serving.py``: uploaded audio bytes
-> the source's sample). Implementations are imported inside the factories, so loading this plugin
imports no torch.
"""

from __future__ import annotations

from typing import Any, Callable

import selfsup
from selfsup.registry import lazy, package_recipes
from selfsup_speech.augment import options as ao
from selfsup_speech.backbones import options as bo
from selfsup_speech.data import options as do
from selfsup_speech.evaluators import options as eo
from selfsup_speech.tasks import options as to

MODALITY = "speech"


def _lazy(path: str) -> Callable[[Any, Any], Any]:
    return lazy(f"selfsup_speech.{path}")


#: The waveform every speech source yields and every speech backbone reads (see selfsup.contract).
WAVE = {"audio": "float32[S]"}
_ON_WAVE = {"{key}": "float32[S]"}
#: What each augmentation reads and writes: crops and speed changes change the length.
AUGMENT_KEYS: dict[str, dict[str, dict[str, str]]] = {
    "speed_perturb": {"consumes": _ON_WAVE, "produces": {"{key}": "float32[_]"}},
    "add_noise": {"consumes": _ON_WAVE},
    "gain": {"consumes": _ON_WAVE},
    "random_crop": {"consumes": _ON_WAVE, "produces": {"{key}": "float32[_]"}},
    "spec_augment": {"consumes": {"{key}": "float[*,F,T]"}},
}


@selfsup.hookimpl
def register_data_sources(register):
    register("synth_speech", _lazy("data.synthesized:build"), options=do.SynthSpeechOptions, modality=MODALITY,
             decoder=_lazy("data.serving:synth_decoder"),
             summary="Keywords spoken by espeak-ng voices (pip-installed), cached; held-out voices for evaluation.",
             produces={**WAVE, "label": "int64[]", "speaker": "int64[]", "text if transcripts": "str"})
    register("audio_folder", _lazy("data.folder:build"), options=do.AudioFolderOptions, modality=MODALITY,
             decoder=_lazy("data.serving:folder_decoder"),
             summary="WAV/FLAC/OGG files in a tree (soundfile), resampled and mono-mixed; sub-folders give labels.",
             produces={**WAVE, "label?": "int64[]"})
    register("audio_manifest", _lazy("data.manifest:build"), options=do.AudioManifestOptions, modality=MODALITY,
             decoder=_lazy("data.serving:manifest_decoder"),
             summary="A fairseq-style TSV manifest (root line, then path and sample count) for large sets.",
             produces={**WAVE, "label if labels": "int64[]"})
    register("audio_shards", _lazy("data.shards:build"), options=do.AudioShardsOptions, modality=MODALITY,
             decoder=_lazy("data.serving:shards_decoder"),
             summary="Memory-mapped int16 (or FLAC) shards from `selfsup prepare-audio`, hash-checked when built.",
             produces={**WAVE, "label?": "int64[]"})


@selfsup.hookimpl
def register_augmentations(register):
    for name, options, summary in [
        ("speed_perturb", ao.SpeedPerturbOptions, "Resample to change speed (and pitch) by a random factor."),
        ("add_noise", ao.AddNoiseOptions, "Add Gaussian or coloured noise at a random SNR."),
        ("gain", ao.GainOptions, "Scale the waveform by a random gain in dB."),
        ("random_crop", ao.RandomCropOptions, "Crop a random segment of at most max_seconds."),
        ("spec_augment", ao.SpecAugmentOptions, "SpecAugment time and frequency masking on spectrogram inputs."),
    ]:
        register(name, _lazy(f"augment.audio:build_{name}"), options=options, modality=MODALITY, summary=summary,
                 **AUGMENT_KEYS.get(name, {}))


@selfsup.hookimpl
def register_backbones(register):
    register("wav2vec2_encoder", _lazy("backbones.wav2vec2:build"), options=bo.Wav2Vec2EncoderOptions,
             modality=MODALITY,
             summary="Conv feature encoder + transformer from torchaudio components (exports to Wav2Vec2Model).",
             consumes=WAVE)
    register("logmel_encoder", _lazy("backbones.logmel:build"), options=bo.LogMelEncoderOptions, modality=MODALITY,
             summary="Log-mel front end + transformer or LSTM (APC).", consumes=WAVE)
    register("logmel_frontend", _lazy("backbones.logmel:build_frontend"), options=bo.LogMelFrontendOptions,
             modality=MODALITY, summary="Log-mel frames of each clip, no weights (built by name by other plugins' "
             "audio backbones; alone: the mean log-mel vector as a baseline).", consumes=WAVE)


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("wav2vec2", _lazy("tasks.wav2vec2:build"), options=to.Wav2Vec2Options, modality=MODALITY,
             summary="Contrastive prediction of quantized latents at masked spans, with diversity loss.",
             consumes={**WAVE, "index?": "int64[]"})
    register("hubert", _lazy("tasks.hubert:build"), options=to.HuBERTOptions, modality=MODALITY,
             summary="Masked prediction of k-means targets (MFCC, then the previous model's features).",
             consumes={**WAVE, "index": "int64[]"})
    register("apc", _lazy("tasks.apc:build"), options=to.APCOptions, modality=MODALITY,
             summary="Autoregressive predictive coding: L1 on the log-mel frame n steps ahead.", consumes=WAVE)


@selfsup.hookimpl
def register_evaluators(register):
    register("speech_probe", _lazy("evaluators.probe:build"), options=eo.SpeechProbeOptions, modality=MODALITY,
             summary="Frozen-feature linear probe (keyword or voice) on held-out voices, MFCC baseline beside.",
             consumes={**WAVE, "{target}": "int64[]"})


@selfsup.hookimpl
def register_commands(cli):
    from selfsup_speech.prepare.command import add_command

    add_command(cli)


# name -> summary; the TOML text is recipes/<name>.toml in this package.
RECIPES: dict[str, str] = {
    "wav2vec2-quickstart": "wav2vec 2.0 on synthesized keywords; keyword probe on held-out voices (a few minutes on a "
                           "CPU).",
    "hubert-quickstart": "HuBERT iteration 1 (MFCC k-means targets) on synthesized keywords; keyword probe on held-out "
                         "voices.",
    "hubert-iter2": "HuBERT iteration 2: targets from a layer of the hubert-quickstart run (train that first).",
    "finetune-keywords": "Fine-tune a pretrained speech encoder (default runs/hubert-quickstart) on keyword spotting; "
                         "macro F1 on held-out voices.",
    "apc-quickstart": "APC: a unidirectional LSTM predicts log-mel frames 3 steps ahead; keyword probe on held-out "
                      "voices.",
    "data2vec-speech": "data2vec (the core's task) with the wav2vec2-quickstart encoder on synthesized keywords; "
                       "keyword probe on held-out voices.",
}


@selfsup.hookimpl
def register_recipes(register):
    package_recipes(register, "selfsup_speech", RECIPES, modality=MODALITY)


@selfsup.hookimpl
def report_sections(run):
    """``selfsup report``: codebook usage of wav2vec2 and HuBERT tasks (report.py)."""
    from selfsup_speech.report import sections

    return sections(run)
