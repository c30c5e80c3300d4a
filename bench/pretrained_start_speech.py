"""Start from a pretrained model, speech: continuing HuBERT pre-training from published weights vs
from a random initialisation, the same steps, measured by the plugin's keyword probe.

No public speech weights ship offline, so the "published" model is made here and published the way
a user would get one: HuBERT (``hubert-quickstart``, shrunk as the plugin's end-to-end tests shrink
it) is pre-trained on *other* spoken words (20 words that are not keywords, the same train voices),
exported with ``selfsup export --format selfsup`` and written into a temporary Hugging Face cache
(``selfsup.testing.hub.hub_cache_repo``) as ``hf:bench/hubert-other-words``. Then, per seed, the
keyword set's ``hubert-quickstart`` (shrunk, ``--steps`` steps) is trained three ways:

* ``random``: the recipe as shipped (MFCC k-means targets), random initialisation;
* ``pretrained``: the same recipe with ``backbones.encoder.options = {pretrained = "hf:bench/..."}``;
* ``pretrained+layer``: also ``tasks.hubert.options.targets = {layer = 2}``: HuBERT's next iteration,
  targets clustered from layer 2 of the pretrained backbone itself (the continuation recipe).

and scored by the recipe's ``speech_probe`` (keyword accuracy of a linear probe on frozen features,
held-out voices). Also printed: the probe on the published model as is (0 steps). Mean and standard
deviation over the seeds; the seed sets the continued run (initialisation of the random arm and of
the heads, masks, k-means, data order); the published model is the same for every seed.

    nice -n 10 .venv/bin/python bench/pretrained_start_speech.py    # 3 seeds: 51 min on 2 cores shared (load 10-17)
    nice -n 10 .venv/bin/python bench/pretrained_start_speech.py --seeds 0 --steps 50 --source-steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine  # bench/machine.py

import selfsup

#: Spoken words that are not among the keywords (digits and commands) of the probe.
OTHER_WORDS = ["apple", "river", "garden", "yellow", "window", "pencil", "monkey", "silver", "candle", "rabbit",
               "orange", "summer", "button", "dragon", "forest", "guitar", "planet", "rocket", "tiger", "violin"]
#: hubert-quickstart shrunk as the plugin's end-to-end tests do (tests/speech_models_support.py).
SHRINK = {"data.train.options.utterances_per_pair": 2, "data.val.options.utterances_per_pair": 2,
          "backbones.encoder.options.conv_layers": [[64, 10, 5], [64, 8, 4], [64, 4, 4], [64, 4, 2], [64, 4, 2]],
          "backbones.encoder.options.embed_dim": 64, "backbones.encoder.options.ffn_dim": 128,
          "backbones.encoder.options.layers": 2, "train.tensorboard": False, "train.warmup_steps": 20}
REPO = "bench/hubert-other-words"


def publish(work: Path, steps: int) -> tuple[str, float]:
    """Pre-train the source model, export it and write it into the temporary Hub cache: its spec."""
    run = selfsup.train("hubert-quickstart", {**SHRINK, "seed": 100, "output_dir": str(work / "source"),
                                              "data.train.options.words": OTHER_WORDS, "evaluators.keywords": None,
                                              "train.max_steps": steps, "train.warmup_steps": min(20, steps // 5)})
    export = selfsup.export(run, format="selfsup", out=work / "source-export")
    from selfsup.testing.hub import hub_cache_repo

    hub_cache_repo(os.environ["HF_HUB_CACHE"], REPO, {name: export / name
                                                      for name in ("selfsup.json", "backbone.safetensors")})
    return f"hf:{REPO}", run.metrics.get("train/loss", float("nan"))


def continue_run(work: Path, arm: str, seed: int, steps: int, spec: str) -> dict[str, float]:
    values: dict[str, Any] = {**SHRINK, "seed": seed, "output_dir": str(work / f"{arm}-{seed}"),
                              "train.max_steps": steps, "train.warmup_steps": min(20, steps // 5)}
    if arm != "random":
        for key in [k for k in SHRINK if k.startswith("backbones.encoder.options.")]:
            del values[key]
        values["backbones.encoder.options"] = {"pretrained": spec}
    if arm == "pretrained+layer":
        values["tasks.hubert.options.targets"] = {"layer": 2}
    run = selfsup.train("hubert-quickstart", values)
    if arm != "random":
        assert run.pretrained, f"{arm}: the run wrote no pretrained.json"
    return {"accuracy": run.metrics["keywords/accuracy"]}


def probe_untrained(work: Path, name: str, seed: int, spec: str | None) -> float:
    """The keyword probe at 0 steps: the published model as is (``spec``), or the random initialisation
    of the recipe's encoder (``None``), built as the run would build it (as train_against_random_init)."""
    import torch

    from selfsup.engine.build import build_run
    from selfsup.engine.evaluation import run_evaluators
    from selfsup.plugins import get_plugin_manager
    from selfsup.recipe import load_recipe

    pm = get_plugin_manager()
    run_dir = work / f"{name}-{seed}"
    keep = {k: v for k, v in SHRINK.items() if spec is None or not k.startswith("backbones.")}
    overrides = [f'output_dir="{run_dir}"', f"seed={seed}", *(f"{k}={json.dumps(v)}" for k, v in keep.items())]
    if spec is not None:
        overrides.append(f'backbones.encoder.options={{pretrained = "{spec}"}}')
    loaded = load_recipe("hubert-quickstart", pm.registry, overrides)
    built = build_run(loaded.recipe, pm.registry, base_dir=loaded.base_dir, source=loaded.source)
    run_dir.mkdir(parents=True, exist_ok=True)
    found = run_evaluators(loaded.recipe, built, names=["keywords"], step=0, device=torch.device("cpu"),
                           run_dir=run_dir)
    return float(found["keywords/accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100, help="Steps of every continued (and random-start) run.")
    parser.add_argument("--source-steps", type=int, default=200, help="Steps of the published model's pre-training.")
    parser.add_argument("--arms", nargs="+", default=["random", "pretrained", "pretrained+layer"])
    parser.add_argument("--json", type=Path, default=None, help="Also write the numbers here.")
    args = parser.parse_args()
    os.environ.setdefault("SELFSUP_PLUGINS", "speech")  # the speech plugin alone (no tracking plugins' overhead)
    print(f"machine: {machine()}\n", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pretrained-speech-") as tmp:
        work = Path(tmp)
        os.environ["HF_HUB_CACHE"] = str(work / "hf")  # the temporary Hub cache; nothing is downloaded
        os.environ.pop("SELFSUP_ALLOW_DOWNLOADS", None)
        spec, _ = publish(work, args.source_steps)
        print(f"published {spec} after {args.source_steps} steps ({time.monotonic() - started:.0f} s)", flush=True)
        results: dict[str, list[float]] = {arm: [] for arm in args.arms}
        for seed in args.seeds:
            for arm in args.arms:
                t0 = time.monotonic()
                acc = continue_run(work, arm, seed, args.steps, spec)["accuracy"]
                results[arm].append(acc)
                print(f"seed {seed} {arm}: keyword accuracy {acc:.3f} ({time.monotonic() - t0:.0f} s)", flush=True)
        published = probe_untrained(work, "published", args.seeds[0], spec)
        untrained = probe_untrained(work, "random-init", args.seeds[0], None)
    print(f"\ntotal {time.monotonic() - started:.0f} s; 0 steps (seed {args.seeds[0]}): published model as is "
          f"{published:.3f}, random initialisation {untrained:.3f}\n")
    print(f"| start ({args.steps} steps of hubert-quickstart, shrunk) | keyword probe accuracy (held-out voices), "
          f"mean ± std over seeds {args.seeds} |")
    print("|---|---|")
    for arm, values in results.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {arm} | {statistics.mean(values):.3f} ± {std:.3f} ({', '.join(f'{v:.3f}' for v in values)}) |")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "published_as_is": published,
                                         "random_init_as_is": untrained, "steps": args.steps,
                                         "source_steps": args.source_steps, "seeds": args.seeds}, indent=2))


if __name__ == "__main__":
    main()
