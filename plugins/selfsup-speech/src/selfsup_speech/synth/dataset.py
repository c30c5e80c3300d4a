"""Generating the synthesized keyword set once, and caching it on disk.

The plan (which word, voice, speaking rate and pitch each utterance gets) comes from a
``torch.Generator`` seeded with the settings' ``seed``; espeak-ng is deterministic per utterance
(see :mod:`selfsup_speech.synth.espeak_server`), so the same settings always give the same audio.

Layout: ``<root>/speech/<key>/manifest.json`` and ``<root>/speech/<key>/audio/<n>.flac`` (16-bit),
where ``<root>`` is ``$SELFSUP_CACHE_DIR`` or ``~/.cache/selfsup`` and ``<key>`` a hash of every
generation setting and of the engine's version. A set is written into a temporary folder next to
its final place and renamed when complete, so readers never see half a set and two processes
generating the same set at once both end with one complete copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile
import torch

from selfsup_speech.synth.engines import engine_fingerprint, make_engine, resolve_engine
from selfsup_speech.synth.postprocess import finish

FORMAT_VERSION = 1  # bump when the generation or the layout changes, to invalidate old caches
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines the generated audio (the cache key is a hash of it)."""

    words: tuple[str, ...]
    voices: tuple[str, ...]
    utterances_per_pair: int = 8
    rate_range: tuple[float, float] = (140.0, 200.0)
    pitch_range: tuple[float, float] = (35.0, 65.0)
    sample_rate: int = 16000
    trim_db: float = 40.0
    peak: float = 0.9
    seed: int = 0
    engine: str = "auto"

    def key(self) -> str:
        fields = asdict(self) | {"engine": engine_fingerprint(self.engine), "format": FORMAT_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Utterance:
    index: int
    word: str
    label: int
    voice: str
    speaker: int
    repeat: int
    rate: int  # words per minute
    pitch: int  # espeak-ng 0-99
    seed: int  # seeds the synthesizer's breath noise

    @property
    def file(self) -> str:
        return f"audio/{self.index:06d}.flac"


def plan(settings: GenerationSettings) -> list[Utterance]:
    """Every utterance of the set, in order (word-major, then voice, then repeat), with its
    rate and pitch drawn uniformly from the settings' ranges (and a noise seed) by a generator
    seeded with ``seed``."""
    g = torch.Generator().manual_seed(settings.seed)
    n = len(settings.words) * len(settings.voices) * settings.utterances_per_pair
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)  # [n, (rate, pitch)]
    (r0, r1), (p0, p1) = settings.rate_range, settings.pitch_range
    rates = torch.round(r0 + u[:, 0] * (r1 - r0)).long().tolist()
    pitches = torch.round(p0 + u[:, 1] * (p1 - p0)).long().tolist()
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=g).tolist()
    out, i = [], 0
    for label, word in enumerate(settings.words):
        for speaker, voice in enumerate(settings.voices):
            for repeat in range(settings.utterances_per_pair):
                out.append(Utterance(i, word, label, voice, speaker, repeat, rates[i], pitches[i], seeds[i]))
                i += 1
    return out


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$SELFSUP_CACHE_DIR``, else ``~/.cache/selfsup``; the sets live under ``speech/``."""
    root = cache_dir or os.environ.get("SELFSUP_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "selfsup"
    return base / "speech"


def load_manifest(folder: Path) -> dict[str, Any]:
    with open(folder / MANIFEST, encoding="utf-8") as f:
        return json.load(f)


#: How many utterances this process has synthesized (tests check that a cached set is only read).
SYNTHESIZED = {"utterances": 0}
_count_lock = threading.Lock()


def _generate(settings: GenerationSettings, folder: Path, workers: int,
              progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    utterances = plan(settings)
    (folder / "audio").mkdir(parents=True)
    engines = [make_engine(settings.engine) for _ in range(min(workers, len(utterances)))]
    free = list(engines)
    free_lock = threading.Lock()
    synth_seconds = [0.0]
    done = [0]

    def one(utt: Utterance) -> dict[str, Any]:
        with free_lock:
            engine = free.pop()
        try:
            t0 = time.perf_counter()
            samples = engine.synthesize(utt.word, utt.voice, utt.rate, utt.pitch, utt.seed)  # int16 [N] at engine rate
            t1 = time.perf_counter()
            engine_rate = engine.sample_rate
        finally:
            with free_lock:
                free.append(engine)
        audio = finish(samples, engine_rate, settings.sample_rate, settings.trim_db, settings.peak)  # [T]
        if audio.numel() == 0:
            raise RuntimeError(f"espeak-ng produced silence for {utt.word!r} with voice {utt.voice!r}")
        encoded = io.BytesIO()  # encode in memory, then one write: file creation dominates on slow disks
        soundfile.write(encoded, audio.numpy(), settings.sample_rate, format="FLAC", subtype="PCM_16")
        (folder / utt.file).write_bytes(encoded.getvalue())
        with _count_lock:
            SYNTHESIZED["utterances"] += 1
            synth_seconds[0] += t1 - t0
            done[0] += 1
            if progress is not None:
                progress(done[0], len(utterances))
        return {**asdict(utt), "file": utt.file, "num_samples": int(audio.numel())}

    start = time.perf_counter()
    threads = torch.get_num_threads()
    # Clips are tiny: intra-op threads only add contention (10x slower on a busy 2-core machine).
    torch.set_num_threads(1)
    try:
        if len(engines) == 1:
            entries = [one(u) for u in utterances]
        else:
            with ThreadPoolExecutor(len(engines)) as pool:
                entries = list(pool.map(one, utterances))
    finally:
        torch.set_num_threads(threads)
        for engine in engines:
            engine.close()
    wall = time.perf_counter() - start
    audio_seconds = sum(e["num_samples"] for e in entries) / settings.sample_rate
    stats = {
        "utterances": len(entries),
        "audio_seconds": audio_seconds,
        "generation_seconds": wall,
        "synthesis_seconds": synth_seconds[0],
        "audio_seconds_per_second": audio_seconds / wall if wall > 0 else float("inf"),
        "workers": len(engines),
        "engine": engines[0].kind,
        "engine_version": engines[0].version,
    }
    manifest = {
        "format": FORMAT_VERSION,
        "settings": asdict(settings),
        "engine": engine_fingerprint(settings.engine),
        "sample_rate": settings.sample_rate,
        "words": list(settings.words),
        "voices": list(settings.voices),
        "utterances": entries,
        "stats": stats,
    }
    with open(folder / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    return stats


def synthesize_dataset(settings: GenerationSettings, *, cache_dir: str | os.PathLike | None = None, workers: int = 1,
                       force: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """Make sure the set of ``settings`` is on disk; returns ``(folder, stats)``.

    ``stats["cached"]`` says whether it was already there (then nothing is synthesized and the
    other numbers are those recorded when it was generated). A fresh generation reports
    ``utterances``, ``audio_seconds``, ``generation_seconds`` (wall clock, synthesis + resampling +
    FLAC encoding), ``synthesis_seconds`` (time inside espeak-ng, summed over workers) and
    ``audio_seconds_per_second`` (throughput). ``force`` regenerates into a new copy."""
    resolve_engine(settings.engine)  # fail early with a clear message when espeak-ng is missing
    root = cache_root(cache_dir)
    folder = root / settings.key()
    if (folder / MANIFEST).is_file() and not force:
        return folder, {**load_manifest(folder)["stats"], "cached": True, "folder": str(folder)}
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        stats = _generate(settings, tmp, workers, progress)
        if force and folder.exists():
            shutil.rmtree(folder)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / MANIFEST).is_file():  # not another process's complete copy: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder, {**stats, "cached": False, "folder": str(folder)}


def read_clip(folder: Path, entry: dict[str, Any]) -> np.ndarray:
    """One stored clip as float32 ``[T]``."""
    audio, _ = soundfile.read(str(folder / entry["file"]), dtype="float32")
    return audio
