"""Data at hardware speed: ``selfsup prepare-audio`` / ``prepare-images`` against reading the raw files.

1. Real folders, built here. Audio: the quickstarts' espeak-ng keywords (20 words x 24 voices,
   ``--utterances`` per pair) synthesized at 44.1 kHz and written as stereo OGG Vorbis files in
   word sub-folders. Images: scikit-learn's two sample photos (china.jpg, flower.jpg), random crops,
   flips and colour shifts of each, upscaled to ``--side`` px on the longer side and written as JPEG
   (quality 92) in class sub-folders.
2. Prepare: ``prepare_audio`` (16 kHz int16 shards) and ``prepare_images`` (``--max-side``, JPEG 90),
   timed, with the sizes before and after.
3. Loader speed: every sample of the raw folder (``audio_folder``; ``image_folder`` at ``size = 32``)
   and of the prepared shards (``audio_shards``; ``webdataset`` at ``size = 32``) read through the
   source and batched with its collate (16 per batch), in this process with one torch thread (as in a
   data-loader worker); samples/s, best of
   ``--rounds`` rounds, the two sources alternating. Building the source (header scan, hash check,
   image decode check) is timed apart.
4. Training: a shipped recipe with only its training data switched to the raw folder or to the
   prepared shards (``--set data.train=...``; evaluators and the validation data removed),
   ``--steps`` steps (warmup a third of them) logged every ``--log-every``: the loop's
   ``data_wait_share`` (first window, which includes starting the data-loader workers, and the mean
   of the later ones) and samples/s.
   Speech: wav2vec2-quickstart as shipped (batch 16, no workers). Vision: simclr-digits with
   ``batch_size = 64`` (256 raw 2000-px photos per step would take minutes) and 1-channel 32 px
   images for its 1-channel CNN; its multi-view augmentation (8 px crops) and 2 workers as shipped.
   Vision also from shards prepared at ``--small-side`` (64 px), nearer its 32 px input.
   ``--repeats`` runs of each, the raw and prepared runs alternating; median (min–max).
5. The shipped quickstarts as they are (``--quickstarts``): ``--steps`` steps, evaluators removed,
   the same numbers over ``--repeats`` runs.

The MLflow plugin is switched off (``SELFSUP_MLFLOW=0``) unless set otherwise. Prints Markdown
tables headed by the machine description.

    nice -n 10 .venv/bin/python bench/prepare_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from machine import machine  # bench/machine.py

from selfsup.components import BuildContext
from selfsup.engine.loop import train
from selfsup.engine.metrics import read_metrics
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe

QUICKSTARTS = ["simclr-digits", "wav2vec2-quickstart", "hubert-quickstart", "apc-quickstart", "clm-quickstart",
               "mlm-quickstart", "cvrl-moving-mnist"]


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------ real folders


def audio_folder(root: Path, utterances: int, cache: Path) -> int:
    from selfsup_speech.data.options import SynthSpeechOptions
    from selfsup_speech.data.synthesized import settings_from_options
    from selfsup_speech.synth.dataset import load_manifest, read_clip, synthesize_dataset

    options = SynthSpeechOptions(utterances_per_pair=utterances, split="all", sample_rate=44100, workers=2)
    folder, _ = synthesize_dataset(settings_from_options(options), cache_dir=cache, workers=2)
    manifest = load_manifest(folder)
    for entry in manifest["utterances"]:
        mono = read_clip(folder, entry)
        stereo = np.stack([mono, 0.8 * mono], axis=1)  # [T, 2]
        (root / entry["word"]).mkdir(parents=True, exist_ok=True)
        soundfile.write(root / entry["word"] / f"{entry['index']:06d}.ogg", stereo, 44100, format="OGG",
                        subtype="VORBIS")
    return len(manifest["utterances"])


def image_folder(root: Path, count: int, side: int) -> int:
    from PIL import Image, ImageEnhance, ImageOps
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    rng = random.Random(0)
    for name, array in zip(("china", "flower"), photos.images):
        (root / name).mkdir(parents=True, exist_ok=True)
        photo = Image.fromarray(array)
        for i in range(count // 2):
            w, h = photo.size
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
            img = photo.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                img = ImageOps.mirror(img)
            img = ImageEnhance.Color(img).enhance(rng.uniform(0.7, 1.3))
            scale = side / max(img.size)
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
            img.save(root / name / f"{i:04d}.jpg", quality=92)
    return 2 * (count // 2)


# ------------------------------------------------------------------------------------------ loader speed


def build(name: str, options: dict, base: Path):
    return BuildContext(name="bench", base_dir=base).build("data", name, options)


def read_all(source, batch: int = 16) -> int:
    """Every sample of ``source`` through its collate, ``batch`` at a time; returns the count."""
    if hasattr(source, "iterate"):
        samples = source.iterate(epoch=0, rank=0, world_size=1, seed=0)
    else:
        order = torch.randperm(len(source), generator=torch.Generator().manual_seed(0)).tolist()
        samples = (source[i] for i in order)
    collate = getattr(source, "collate", torch.utils.data.default_collate)
    n, pending = 0, []
    for sample in samples:
        pending.append(sample)
        if len(pending) == batch:
            collate(pending)
            n, pending = n + batch, []
    return n + len(pending)


def loader_speed(specs: dict[str, tuple[str, dict, Path]], rounds: int) -> dict[str, dict[str, float]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a data-loader worker (PyTorch gives each one thread)
    try:
        return _loader_speed(specs, rounds)
    finally:
        torch.set_num_threads(threads)


def _loader_speed(specs: dict[str, tuple[str, dict, Path]], rounds: int) -> dict[str, dict[str, float]]:
    out = {}
    sources = {}
    for label, (name, options, base) in specs.items():
        start = time.perf_counter()
        sources[label] = build(name, options, base)
        out[label] = {"build_s": time.perf_counter() - start, "rates": []}
    for _ in range(rounds):
        for label, source in sources.items():
            start = time.perf_counter()
            n = read_all(source)
            out[label]["rates"].append(n / (time.perf_counter() - start))
            out[label]["samples"] = n
    for row in out.values():
        row["best"], row["median"] = max(row["rates"]), statistics.median(row["rates"])
    return out


# ------------------------------------------------------------------------------------------ training


def wait_share(recipe: str, overrides: list[str], workdir: Path) -> dict[str, float]:
    pm = get_plugin_manager()
    run_dir = workdir / f"run-{len(list(workdir.glob('run-*')))}"
    loaded = load_recipe(recipe, pm.registry, [f'output_dir="{run_dir}"', "train.tensorboard=false",
                                               "train.checkpoint_every=0", "evaluators=", *overrides])
    start = time.perf_counter()
    result = train(loaded, pm, progress=False)
    wall = time.perf_counter() - start
    records = [r for r in read_metrics(result.run_dir) if r["kind"] == "train"]
    later = records[1:] or records
    return {"first": records[0]["data_wait_share"], "later": statistics.mean(r["data_wait_share"] for r in later),
            "samples_per_s": statistics.mean(r["samples_per_s"] for r in later), "wall_s": wall,
            "windows": len(records)}


def spread(rows: list[dict[str, float]], key: str, fmt: str = "{:.1%}") -> str:
    """``median (min–max)`` of ``key`` over ``rows``."""
    values = sorted(r[key] for r in rows)
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(values[0])}–{fmt.format(values[-1])})"


def inline(values: dict) -> str:
    """``{"a": 1, "b": "x"}`` -> the TOML inline table ``{ a = 1, b = "x" }`` (values JSON-encoded, which is
    valid TOML for the strings, numbers and lists used here)."""
    items = (f"{k} = {inline(v) if isinstance(v, dict) else json.dumps(v)}" for k, v in values.items())
    return "{ " + ", ".join(items) + " }"


def train_data(kind: str, **options) -> list[str]:
    """``--set`` overrides: the recipe's training data is a ``kind`` source, and it has no validation data."""
    return [f"data.train={inline({'type': kind, 'options': options})}", "data.val="]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=1, help="Utterances per (word, voice): 480 files each.")
    parser.add_argument("--images", type=int, default=480)
    parser.add_argument("--side", type=int, default=2000, help="Longer side of the raw photos.")
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("--small-side", type=int, default=64, help="A second image preparation, for training.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="prepare-* threads.")
    parser.add_argument("--quickstarts", nargs="*", default=QUICKSTARTS)
    parser.add_argument("--repeats", type=int, default=3, help="Training runs of each row (median, min-max).")
    parser.add_argument("--json", default=None, help="Also write every number to this file.")
    args = parser.parse_args()
    os.environ.setdefault("SELFSUP_MLFLOW", "0")  # the loop alone: no MLflow logging in the timed windows
    from selfsup_speech.prepare.audio import Settings as AudioSettings
    from selfsup_speech.prepare.audio import prepare_audio
    from selfsup_vision.prepare.images import Settings as ImageSettings
    from selfsup_vision.prepare.images import prepare_images

    print(machine())
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="prepare-speed-") as tmp:
        tmp = Path(tmp)
        raw_audio, raw_images = tmp / "raw-audio", tmp / "raw-images"
        start = time.perf_counter()
        n_audio = audio_folder(raw_audio, args.utterances, tmp / "cache")
        n_images = image_folder(raw_images, args.images, args.side)
        print(f"\nreal folders: {n_audio} OGG files ({folder_bytes(raw_audio) / 1e6:.1f} MB), {n_images} JPEGs "
              f"({folder_bytes(raw_images) / 1e6:.1f} MB), made in {time.perf_counter() - start:.0f} s")

        prepared_audio, prepared_images = tmp / "prepared-audio", tmp / "prepared-images"
        start = time.perf_counter()
        prepare_audio([str(raw_audio)], prepared_audio, AudioSettings(workers=args.workers))
        audio_s = time.perf_counter() - start
        start = time.perf_counter()
        prepare_images([str(raw_images)], prepared_images, ImageSettings(max_side=args.max_side, workers=args.workers))
        image_s = time.perf_counter() - start
        small_images = tmp / f"prepared-images-{args.small_side}"  # near the training size: cheaper to decode
        prepare_images([str(raw_images)], small_images, ImageSettings(max_side=args.small_side, workers=args.workers))
        print("\n| prepare | files | seconds | files/s | MB in | MB out |\n| --- | ---: | ---: | ---: | ---: | ---: |")
        print(f"| prepare-audio (16 kHz int16) | {n_audio} | {audio_s:.1f} | {n_audio / audio_s:.0f} | "
              f"{folder_bytes(raw_audio) / 1e6:.1f} | {folder_bytes(prepared_audio) / 1e6:.1f} |")
        print(f"| prepare-images (max side {args.max_side}, JPEG 90) | {n_images} | {image_s:.1f} | "
              f"{n_images / image_s:.0f} | {folder_bytes(raw_images) / 1e6:.1f} | "
              f"{folder_bytes(prepared_images) / 1e6:.1f} |")

        specs = {
            "audio_folder (44.1 kHz stereo OGG)": ("audio_folder", {"root": str(raw_audio)}, tmp),
            "audio_shards (16 kHz int16)": ("audio_shards", {"root": str(prepared_audio)}, tmp),
            f"image_folder ({args.side} px JPEG, size 32)":
                ("image_folder", {"root": str(raw_images), "size": 32}, tmp),
            f"webdataset ({args.max_side} px JPEG shards, size 32)":
                ("webdataset", {"shards": ["shard-*.tar"], "size": 32}, prepared_images),
        }
        speed = loader_speed(specs, args.rounds)
        print("\n| source | samples | build s | samples/s (best) | samples/s (median) |\n"
              "| --- | ---: | ---: | ---: | ---: |")
        for label, row in speed.items():
            print(f"| {label} | {row['samples']} | {row['build_s']:.2f} | {row['best']:,.0f} | {row['median']:,.0f} |")
        best = [row["best"] for row in speed.values()]
        print(f"\nratio prepared / raw (best samples/s, same run): audio {best[1] / best[0]:.1f}x, "
              f"images {best[3] / best[2]:.1f}x")
        results["speed"] = speed

        shards = str(prepared_images / "shard-*.tar")
        runs = {
            ("wav2vec2-quickstart", "raw OGG folder"): train_data("audio_folder", root=str(raw_audio)),
            ("wav2vec2-quickstart", "prepared shards"): train_data("audio_shards", root=str(prepared_audio)),
            ("simclr-digits", "raw JPEG folder"): [
                *train_data("image_folder", root=str(raw_images), size=32, channels=1), "train.batch_size=64"],
            ("simclr-digits", "prepared shards"): [
                *train_data("webdataset", shards=[shards], size=32, channels=1), "train.batch_size=64"],
            ("simclr-digits", f"prepared shards, max side {args.small_side}"): [
                *train_data("webdataset", shards=[str(small_images / "shard-*.tar")], size=32, channels=1),
                "train.batch_size=64"],
        }
        steps = ["train.epochs=", f"train.max_steps={args.steps}", f"train.log_every={args.log_every}",
                 f"train.warmup_steps={args.steps // 3}"]  # a shipped warmup may be longer than the short run
        print("\n| recipe | training data | data_wait_share, first window | later windows | samples/s (later) |\n"
              "| --- | --- | ---: | ---: | ---: |")
        table = {key: [] for key in runs}
        for _ in range(args.repeats):  # the two data of a recipe alternate: load changes hit both alike
            for key, overrides in runs.items():
                table[key].append(wait_share(key[0], [*overrides, *steps], tmp))
        for (recipe, data), rows in table.items():
            results[f"{recipe} / {data}"] = rows
            print(f"| {recipe} | {data} | {spread(rows, 'first')} | {spread(rows, 'later')} | "
                  f"{spread(rows, 'samples_per_s', '{:,.0f}')} |")

        if args.quickstarts:
            print(f"\n| shipped recipe (as is, {args.steps} steps) | data_wait_share, first window | later windows | "
                  f"samples/s (later) |\n| --- | ---: | ---: | ---: |")
        for recipe in args.quickstarts:
            rows = [wait_share(recipe, steps, tmp) for _ in range(args.repeats)]
            results[recipe] = rows
            print(f"| {recipe} | {spread(rows, 'first')} | {spread(rows, 'later')} | "
                  f"{spread(rows, 'samples_per_s', '{:,.0f}')} |", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
