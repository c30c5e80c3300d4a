"""Options of the speech data sources (pydantic only: importing this never imports torch)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from selfsup.options import ExistingDir, ExistingFile, Options

OnError = Literal["skip", "raise"]
Range = tuple[float, float]

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COMMAND_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
#: espeak-ng English voices ("en" is British English; the others are regional accents).
DEFAULT_ACCENTS = ["en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc"]
#: espeak-ng voice variants (espeak-ng-data/voices/!v): male m1..m7, female f1..f4.
DEFAULT_VARIANTS = ["m1", "m3", "f2", "f4"]

_VOICE = re.compile(r"^[A-Za-z0-9_/-]+(\+[A-Za-z0-9_]+)?$")


def check_range(value: Range, name: str, low: float | None = None, high: float | None = None) -> Range:
    """``value`` if it is ``(lo, hi)`` with lo <= hi inside [low, high], else a ValueError naming ``name``."""
    lo, hi = value
    if lo > hi:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value}")
    if low is not None and lo < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and hi > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


class SynthSpeechOptions(Options):
    """Keywords spoken by espeak-ng voices, generated once and cached as FLAC + a JSON manifest.

    Every (word, voice) pair is spoken ``utterances_per_pair`` times with a speaking rate and
    pitch drawn from ``rate_range``/``pitch_range`` by a generator seeded with ``seed``. The whole
    set is generated (and cached) once; ``split`` selects part of it. With ``split_by = "voice"``
    (default) the val and test splits hold voices never heard in train, so probes measure
    generalisation to unseen speakers; with ``split_by = "utterance"`` every voice appears in every
    split (for speaker-identification probes)."""

    words: list[str] = Field(default_factory=lambda: DIGIT_WORDS + COMMAND_WORDS, min_length=2,
                             description="The keywords; the label of a sample is its word's index in this list.")
    accents: list[str] = Field(default_factory=lambda: list(DEFAULT_ACCENTS), min_length=1,
                               description="espeak-ng voices (accents) combined with every variant.")
    variants: list[str] = Field(default_factory=lambda: list(DEFAULT_VARIANTS),
                                description="espeak-ng voice variants (m1..m7, f1..f4, ...); empty: the accents' own "
                                            "voices.")
    voices: list[str] | None = Field(
        None, min_length=2, description="Explicit voice list such as 'en-us+f3' (replaces accents x variants).")
    utterances_per_pair: int = Field(8, ge=1, le=1000, description="Utterances of every (word, voice) pair.")
    rate_range: Range = Field((140.0, 200.0),
                              description="Speaking rate in words per minute, drawn uniformly (espeak-ng: 80-450).")
    pitch_range: Range = Field((35.0, 65.0),
                               description="espeak-ng pitch (0-99, 50 = the voice's normal), drawn uniformly.")
    sample_rate: int = Field(16000, ge=4000, le=48000,
                             description="Sample rate of the stored audio (espeak-ng speaks at 22,050 Hz).")
    trim_db: float = Field(40.0, gt=0, le=100,
                           description="Leading/trailing frames quieter than the loudest by this many dB are cut.")
    peak: float = Field(0.9, gt=0, le=1, description="Peak amplitude after normalisation.")
    seed: int = Field(0, ge=0, description="Seeds the generation plan (rates and pitches) and the voice split.")
    engine: Literal["auto", "library", "binary"] = Field(
        "auto", description="espeak-ng through the pip library (espeakng-loader) or the espeak-ng program; auto: "
                            "library, else program.")
    split: Literal["train", "val", "test", "all"] = Field("train", description="Which part of the set.")
    split_by: Literal["voice", "utterance"] = Field("voice",
                                                    description="Hold out whole voices, or utterances of every voice.")
    val_voices: int | list[str] = Field(3, description="split_by=voice: how many voices (picked with seed), or which, "
                                                       "form val.")
    test_voices: int | list[str] = Field(3, description="split_by=voice: how many voices (picked with seed), or which, "
                                                        "form test.")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="split_by=utterance: fraction of every (word, voice) "
                                                             "pair's utterances in val.")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="split_by=utterance: fraction in test.")
    transcripts: bool = Field(False, description="Add the spoken word as sample['text'].")
    cache_dir: str | None = Field(None, description="Cache root (default $SELFSUP_CACHE_DIR or ~/.cache/selfsup); data "
                                                    "goes under <root>/speech/<hash>.")
    workers: int = Field(2, ge=1, le=64,
                         description="Synthesizer processes (and threads) used when the set is generated.")

    @field_validator("words")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        if any(not w.strip() for w in v):
            raise ValueError("words must be non-empty strings")
        if len(set(v)) != len(v):
            raise ValueError(f"words must be distinct, got {v}")
        return v

    @field_validator("accents", "variants", "voices")
    @classmethod
    def _voice_names(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            if not _VOICE.match(name):
                raise ValueError(f"not an espeak-ng voice name: {name!r} (e.g. 'en-us', 'en-us+f3')")
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"voice names must be distinct, got {v}")
        return v

    @field_validator("rate_range")
    @classmethod
    def _rate(cls, v: Range) -> Range:
        return check_range(v, "rate_range", 80, 450)

    @field_validator("pitch_range")
    @classmethod
    def _pitch(cls, v: Range) -> Range:
        return check_range(v, "pitch_range", 0, 99)

    def voice_list(self) -> list[str]:
        """Every voice of the set, in order: ``voices``, or each accent with each variant."""
        if self.voices is not None:
            return list(self.voices)
        if not self.variants:
            return list(self.accents)
        return [f"{accent}+{variant}" for accent in self.accents for variant in self.variants]

    @model_validator(mode="after")
    def _split_fits(self) -> "SynthSpeechOptions":
        voices = self.voice_list()
        if any("+" in a for a in self.accents) and self.voices is None and self.variants:
            raise ValueError("accents must not carry a '+variant' when variants are given")
        if self.split == "all":
            return self
        if self.split_by == "voice":
            held = []
            for name, value in (("val_voices", self.val_voices), ("test_voices", self.test_voices)):
                if isinstance(value, int):
                    if value < 0:
                        raise ValueError(f"{name} must be >= 0")
                    held.append(value)
                else:
                    unknown = [v for v in value if v not in voices]
                    if unknown:
                        raise ValueError(f"{name}: {unknown} are not among the set's voices {voices}")
                    held.append(len(value))
            both = isinstance(self.val_voices, list) and isinstance(self.test_voices, list)
            if both and set(self.val_voices) & set(self.test_voices):
                raise ValueError("val_voices and test_voices overlap")
            if sum(held) >= len(voices):
                raise ValueError(f"{sum(held)} held-out voices leave no training voice among {len(voices)}")
        elif self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self


class AudioFolderOptions(Options):
    """``root/<label>/<file>`` (labels from the first sub-folder names) or files directly under ``root``."""

    root: ExistingDir = Field(description="Folder of audio files (relative to the recipe).")
    sample_rate: int = Field(16000, ge=1000, le=192000, description="Every file is resampled to this rate.")
    extensions: list[str] = Field(default_factory=lambda: [".wav", ".flac", ".ogg"],
                                  description="File name endings read (case-insensitive).")
    on_error: OnError = Field(
        "skip", description="Empty or unreadable files (headers are read when the source is built): skip and "
        "count them, or stop the build naming the file.")
    limit: int | None = Field(None, gt=0, description="Keep only the first N files (sorted by path).")

    @field_validator("extensions")
    @classmethod
    def _dots(cls, v: list[str]) -> list[str]:
        if not v or any(not e.startswith(".") for e in v):
            raise ValueError("extensions must be a non-empty list like ['.wav', '.flac']")
        return [e.lower() for e in v]


class AudioManifestOptions(Options):
    """A fairseq/wav2vec manifest: the first line is the root folder, then one
    ``relative/path<TAB>num_samples`` line per file. File headers are checked when the source is built
    (``check_files``); audio is decoded when a sample is asked for."""

    manifest: ExistingFile = Field(description="The .tsv manifest (relative to the recipe).")
    sample_rate: int = Field(16000, ge=1000, le=192000, description="Audio is resampled to this rate when read.")
    manifest_sample_rate: int = Field(16000, ge=1000, le=192000,
                                      description="Rate the manifest's sample counts are at (for min/max_seconds).")
    min_seconds: float | None = Field(None, ge=0,
                                      description="Drop entries shorter than this (from the manifest's counts).")
    max_seconds: float | None = Field(None, gt=0, description="Drop entries longer than this (cropping is the "
                                                              "random_crop augmentation).")
    labels: ExistingFile | None = Field(
        None,
        description="Optional file with one label name per manifest entry (fairseq .ltr/.wrd style, line-aligned).")
    on_error: OnError = Field(
        "raise", description="Missing, empty or unreadable files: stop the build naming the file, or skip and count "
        "them (a file that fails later, when read, is replaced by the next readable one and counted).")
    check_files: bool = Field(
        True, description="Read every kept file's header when the source is built (in a thread pool); false: "
        "files are first opened when read, for manifests too large to scan.")
    limit: int | None = Field(None, gt=0, description="Keep only the first N entries.")

    @model_validator(mode="after")
    def _bounds(self) -> "AudioManifestOptions":
        if self.min_seconds is not None and self.max_seconds is not None and self.min_seconds > self.max_seconds:
            raise ValueError("min_seconds must not exceed max_seconds")
        return self


class AudioShardsOptions(Options):
    """A folder written by ``selfsup prepare-audio`` (``manifest.json`` + shards). Every shard is checked
    against the manifest when the source is built; a damaged one is an error naming it."""

    root: ExistingDir = Field(description="The prepared folder (relative to the recipe).")
    sample_rate: int = Field(16000, ge=1000, le=192000,
                             description="Must be the rate the folder was prepared at (nothing is resampled).")
    verify: Literal["sha256", "size"] = Field(
        "sha256", description="Check each shard's size and SHA-256 (reads every shard once) or only its size.")
    limit: int | None = Field(None, gt=0, description="Keep only the first N entries.")
