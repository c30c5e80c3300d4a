"""``synth_speech``: keywords spoken by espeak-ng voices, split by voice.

A small, license-free stand-in for Speech Commands (Warden 2018, "Speech Commands: A Dataset for
Limited-Vocabulary Speech Recognition", arXiv:1804.03209): the ten digits and ten command words,
each spoken ``utterances_per_pair`` times by every voice (espeak-ng accents x voice variants, i.e.
different formants, pitch ranges, breathiness and pronunciations) at jittered speaking rates and
pitches. The set is generated once per setting and cached (:mod:`selfsup_speech.synth.dataset`),
then read from FLAC files.

Splits hold out whole voices by default, so a keyword probe measures generalisation to unseen
speakers: ``val_voices``/``test_voices`` voices (picked with ``seed``, or named) form val and test,
the others train. ``split_by = "utterance"`` instead keeps every voice in every split (each
(word, voice) pair's repeats are divided), which a speaker-identification probe needs.

Samples: ``{"audio": float32 [T] in [-1, 1] at sample_rate, "label": int (index in labels),
"speaker": int (index in speakers)}`` plus ``"text"`` (the word) with ``transcripts = true``.
``speakers`` lists every voice of the set (ids are the same in every split); ``split_voices``
the ones in this split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soundfile
import torch

from selfsup.components import BuildContext
from selfsup_speech.data.collate import pad_audio
from selfsup_speech.synth.dataset import GenerationSettings, load_manifest, synthesize_dataset


def settings_from_options(options: Any) -> GenerationSettings:
    return GenerationSettings(
        words=tuple(options.words), voices=tuple(options.voice_list()), utterances_per_pair=options.utterances_per_pair,
        rate_range=tuple(options.rate_range), pitch_range=tuple(options.pitch_range), sample_rate=options.sample_rate,
        trim_db=options.trim_db, peak=options.peak, seed=options.seed, engine=options.engine,
    )


def voice_split(voices: list[str], val: int | list[str], test: int | list[str], seed: int) -> dict[str, list[str]]:
    """Voices of each split: named ones as given, counts filled from a seeded permutation of the rest."""
    named = set(val if isinstance(val, list) else []) | set(test if isinstance(test, list) else [])
    order = torch.randperm(len(voices), generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    pool = [voices[i] for i in order if voices[i] not in named]
    out: dict[str, list[str]] = {}
    for name, spec in (("val", val), ("test", test)):
        if isinstance(spec, list):
            out[name] = list(spec)
        else:
            out[name], pool = pool[:spec], pool[spec:]
    held = set(out["val"]) | set(out["test"])
    out["train"] = [v for v in voices if v not in held]
    return {k: sorted(v, key=voices.index) for k, v in out.items()}


def utterance_split(entries: list[dict[str, Any]], repeats: int, val_fraction: float, test_fraction: float,
                    seed: int) -> dict[str, set[int]]:
    """Indices of each split: every (word, voice) pair's repeats, permuted with ``seed``, are cut
    into val, test and train parts of the given fractions."""
    n_val, n_test = int(round(repeats * val_fraction)), int(round(repeats * test_fraction))
    g = torch.Generator().manual_seed(seed + 104729)
    part_of_repeat: dict[tuple[str, str], list[str]] = {}
    out: dict[str, set[int]] = {"train": set(), "val": set(), "test": set()}
    for e in entries:
        pair = (e["word"], e["voice"])
        if pair not in part_of_repeat:
            perm = torch.randperm(repeats, generator=g).tolist()
            parts = ["train"] * repeats
            for r in perm[:n_val]:
                parts[r] = "val"
            for r in perm[n_val:n_val + n_test]:
                parts[r] = "test"
            part_of_repeat[pair] = parts
        out[part_of_repeat[pair][e["repeat"]]].add(e["index"])
    return out


class SynthSpeech:
    """One split of the synthesized keyword set, held in memory (a few tens of MB)."""

    def __init__(self, options: Any):
        settings = settings_from_options(options)
        self.folder, self.generation = synthesize_dataset(settings, cache_dir=options.cache_dir,
                                                          workers=options.workers)
        manifest = load_manifest(self.folder)
        entries = manifest["utterances"]
        self.sample_rate = int(manifest["sample_rate"])
        self.labels: list[str] = list(manifest["words"])
        self.speakers: list[str] = list(manifest["voices"])
        self.split = options.split
        if options.split == "all":
            chosen = entries
            self.split_voices = list(self.speakers)
        elif options.split_by == "voice":
            voices = voice_split(self.speakers, options.val_voices, options.test_voices, options.seed)[options.split]
            self.split_voices = voices
            keep = set(voices)
            chosen = [e for e in entries if e["voice"] in keep]
        else:
            indices = utterance_split(entries, settings.utterances_per_pair, options.val_fraction,
                                      options.test_fraction,
                                      options.seed)[options.split]
            chosen = [e for e in entries if e["index"] in indices]
            self.split_voices = list(self.speakers)
        if not chosen:
            raise ValueError(f"synth_speech: split {options.split!r} is empty with these options "
                             f"(split_by={options.split_by!r}, {settings.utterances_per_pair} utterances per pair)")
        self.entries = chosen
        self.transcripts = options.transcripts
        self.audio = [torch.from_numpy(np.ascontiguousarray(soundfile.read(str(self.folder / e["file"]),
                                                                           dtype="float32")[0]))
                      for e in chosen]  # each [T]
        self.label_ids = torch.tensor([e["label"] for e in chosen], dtype=torch.long)
        self.speaker_ids = torch.tensor([e["speaker"] for e in chosen], dtype=torch.long)
        #: identifies these samples (the generated set and the split) for caches of derived values
        self.cache_key = ("synth_speech", str(self.folder), options.split, options.split_by, str(options.val_voices),
                          str(options.test_voices), options.val_fraction, options.test_fraction, options.seed,
                          options.transcripts)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"audio": self.audio[i], "label": int(self.label_ids[i]),
                                  "speaker": int(self.speaker_ids[i])}
        if self.transcripts:
            sample["text"] = self.entries[i]["word"]
        return sample

    def lengths(self) -> list[int]:
        """Samples per clip (for ``group_by_length`` batching)."""
        return [a.numel() for a in self.audio]

    @property
    def seconds(self) -> float:
        """Total audio duration of this split."""
        return sum(a.numel() for a in self.audio) / self.sample_rate

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_audio(samples)


def build(options: Any, context: BuildContext) -> SynthSpeech:
    return SynthSpeech(options)
