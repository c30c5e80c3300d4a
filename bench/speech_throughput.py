"""Speech throughput: synthesized-audio generation and pre-training, in seconds of audio per second.

1. Generation: the ``synth_speech`` set of the quickstarts (20 words x 24 voices, ``--utterances``
   per pair) synthesized into a fresh temporary cache with 1 and with 2 worker processes
   (espeak-ng, resampling, trimming, FLAC encoding); seconds of audio made per second of wall time.
2. Training: for each speech quickstart recipe, its model and pretext task as shipped, trained for
   ``--steps`` optimizer steps (after ``--warmup`` untimed ones) on batches of the recipe's size
   drawn from its training split (seeded); seconds of audio consumed per second of wall time
   (forward, backward, optimizer step; data in memory). HuBERT's k-means targets are computed
   before timing and reported apart. hubert-iter2 trains the same model as hubert-quickstart (only
   its targets differ), so it is not listed separately.

Prints a Markdown table headed by the machine description.

    OMP_NUM_THREADS=1 .venv/bin/python bench/speech_throughput.py
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from machine import machine  # bench/machine.py

from selfsup.engine.build import build_run
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe

RECIPES = ["wav2vec2-quickstart", "hubert-quickstart", "apc-quickstart"]



def generation(utterances: int, workers: int) -> tuple[float, float, int]:
    """``(audio seconds, wall seconds, utterances)`` of one fresh generation."""
    from selfsup_speech.data.options import SynthSpeechOptions
    from selfsup_speech.data.synthesized import settings_from_options
    from selfsup_speech.synth.dataset import synthesize_dataset

    settings = settings_from_options(SynthSpeechOptions(utterances_per_pair=utterances, split="all"))
    with tempfile.TemporaryDirectory(prefix="speech-throughput-") as tmp:
        start = time.perf_counter()
        _, stats = synthesize_dataset(settings, cache_dir=tmp, workers=workers)
        wall = time.perf_counter() - start
    return float(stats["audio_seconds"]), wall, int(stats["utterances"])


def training(name: str, steps: int, warmup: int) -> dict[str, float]:
    pm = get_plugin_manager()
    with tempfile.TemporaryDirectory(prefix="speech-throughput-run-") as tmp:
        loaded = load_recipe(name, pm.registry, [f'output_dir="{tmp}"', "train.tensorboard=false"])
        built = build_run(loaded.recipe, pm.registry, base_dir=loaded.base_dir, source=loaded.source)
    recipe = loaded.recipe
    (task_name, spec), = recipe.tasks.items()
    task, backbone = built.model.tasks[task_name], built.model.backbones[spec.backbone]
    data = built.data[spec.data]
    rate = int(getattr(data, "sample_rate", 16000))
    out = {"params": sum(p.numel() for p in backbone.parameters()) / 1e6}
    if hasattr(task, "compute_targets"):
        start = time.perf_counter()
        task.compute_targets(backbone, torch.device("cpu"), recipe.seed)
        out["targets_s"] = time.perf_counter() - start
    params = [p for p in list(task.parameters()) + list(backbone.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.train.lr)
    task.train()
    backbone.train()
    g = torch.Generator().manual_seed(0)
    audio, wall = 0.0, 0.0
    for step in range(warmup + steps):
        index = torch.randint(len(data), (recipe.train.batch_size,), generator=g).tolist()
        samples = [data[i] for i in index]
        batch = task.collate(samples) if hasattr(task, "collate") else data.collate(samples)
        batch["index"] = torch.tensor(index)
        start = time.perf_counter()
        loss = task(batch, backbone).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            wall += time.perf_counter() - start
            audio += sum(s["audio"].numel() for s in samples) / rate
    out.update(audio_s=audio, wall_s=wall, batch=recipe.train.batch_size)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=2, help="Utterances per (word, voice) pair generated.")
    parser.add_argument("--steps", type=int, default=30, help="Timed training steps per recipe.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps first.")
    parser.add_argument("--recipes", nargs="*", default=RECIPES)
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    print("| what | setting | audio | wall time | audio s / s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for workers in (1, 2):
        audio, wall, n = generation(args.utterances, workers)
        print(f"| synth_speech generation | {n} clips, {workers} worker{'s' if workers > 1 else ''}, fresh cache "
              f"| {audio:.0f} s | {wall:.1f} s | {audio / wall:.1f} |", flush=True)
    for name in args.recipes:
        r = training(name, args.steps, args.warmup)
        extra = f", k-means targets {r['targets_s']:.1f} s (untimed)" if "targets_s" in r else ""
        print(f"| {name} training | {r['params']:.2f} M backbone params, batch {r['batch']}, {args.steps} steps{extra} "
              f"| {r['audio_s']:.0f} s | {r['wall_s']:.1f} s | {r['audio_s'] / r['wall_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
