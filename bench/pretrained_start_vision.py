"""Continuing pre-training from hub weights against a random start, on held-out 8x8 digits (issue 21).

No public image weights ship offline, so the "public" weights are made here: SimCLR pre-trains the
``simclr-digits`` small CNN (widths 32-64-128-256, batch norm) on another domain, 4,000 MNIST digits
(``simclr-mnist5k``, downsampled to 8x8 so the same architecture fits), its backbone is exported
(``selfsup export --format selfsup``) and published into a temporary Hugging Face Hub cache as the
repository ``bench/small-cnn-mnist5k`` (``selfsup.testing.hub.hub_cache_repo``: the cache layout a
download leaves). Then, per seed, ``simclr-digits`` trains for the same optimizer steps from

* (a) ``backbones.cnn.options.pretrained = "hf:bench/small-cnn-mnist5k"`` (resolved offline from the
  cache, strict load, sha256 recorded in the run's pretrained.json), and
* (b) random init (the recipe as shipped),

and ``selfsup eval RUN --json`` measures both on the held-out digits with the recipe's evaluators:
weighted kNN (k = 200, t = 0.1) and a linear probe. The pre-training run uses seed 0 for every seed
of the continuation (one published model, as with real hub weights). Everything runs through the CLI
(subprocesses), as a user would.

    nice -n 10 .venv/bin/python bench/pretrained_start_vision.py                      # seeds 0 1 2
    nice -n 10 .venv/bin/python bench/pretrained_start_vision.py --seeds 0 1 --epochs 10   # shorter
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/machine.py

SELFSUP = [str(Path(sys.executable).parent / "selfsup")]  # the venv's CLI
REPO = "bench/small-cnn-mnist5k"
WIDTHS = "[32,64,128,256]"  # simclr-digits' backbone
METRICS = {"kNN": "knn/accuracy", "probe": "linear_probe/accuracy"}


def selfsup(*args: str, env: dict[str, str]) -> str:
    res = subprocess.run([*SELFSUP, *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"selfsup {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n"
                         f"{res.stderr[-3000:]}")
    return res.stdout


def train(recipe: str, out: Path, sets: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    args = ["train", recipe, "--no-progress", "--set", f'output_dir="{out}"', "--set", "train.tensorboard=false"]
    for item in sets:
        args += ["--set", item]
    selfsup(*args, env=env)
    return time.perf_counter() - start


def evaluate(run: Path, env: dict[str, str]) -> dict[str, float]:
    text = selfsup("eval", str(run), "--json", env=env)
    metrics = json.loads(text[text.index("{"):])
    flat = metrics.get("metrics", metrics)
    return {name: float(flat[key]) for name, key in METRICS.items()}


def steps(run: Path) -> int:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return max(int(r.get("step", 0)) for r in rows)


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="simclr-digits epochs (the recipe's: 20)")
    parser.add_argument("--pretrain-epochs", type=int, default=10, help="simclr-mnist5k epochs at 8x8 (150 steps)")
    args = parser.parse_args()
    from selfsup.testing.hub import hub_cache_repo

    print(f"machine: {machine()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "HF_HUB_CACHE": str(tmp / "hf"), "TORCH_HOME": str(tmp / "torch"), "SELFSUP_MLFLOW": "0"}
        env.pop("SELFSUP_ALLOW_DOWNLOADS", None)
        source = tmp / "mnist5k"
        seconds = train("simclr-mnist5k", source, [
            "seed=0", f"train.epochs={args.pretrain_epochs}", "data.train.options.size=8", "data.val.options.size=8",
            "augmentations.views.options.size=8", f"backbones.cnn.options.widths={WIDTHS}"], env)
        source_eval = evaluate(source, env)
        print(f"pre-training: simclr-mnist5k at 8x8, seed 0, {steps(source)} steps in {seconds / 60:.1f} min; "
              f"held-out MNIST kNN {source_eval['kNN']:.3f}, linear probe {source_eval['probe']:.3f}")
        export = tmp / "export"
        selfsup("export", str(source), "--format", "selfsup", "--out", str(export), env=env)
        files = {p.name: p for p in export.iterdir() if p.is_file() and p.name in ("selfsup.json",
                                                                                    "backbone.safetensors")}
        snapshot = hub_cache_repo(tmp / "hf", REPO, files)
        print(f"published hf:{REPO} (revision {snapshot.name}) with {', '.join(sorted(files))}\n")

        variants = {"pretrained (hf:)": [f'backbones.cnn.options.pretrained="hf:{REPO}"'], "random init": []}
        results: dict[str, dict[int, dict]] = {name: {} for name in variants}
        print("| start | seed | optimizer steps | train time | held-out kNN | held-out linear probe |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for seed in args.seeds:
            for name, sets in variants.items():
                run = tmp / f"{name.split()[0]}-{seed}"
                seconds = train("simclr-digits", run, [f"seed={seed}", f"train.epochs={args.epochs}", *sets], env)
                if sets:
                    record = json.loads((run / "pretrained.json").read_text())["backbones"]["cnn"]
                    assert record["spec"] == f"hf:{REPO}" and record["files"]["backbone.safetensors"]["sha256"]
                r = results[name][seed] = {"steps": steps(run), "seconds": seconds, **evaluate(run, env)}
                print(f"| {name} | {seed} | {r['steps']} | {seconds / 60:.1f} min | {r['kNN']:.3f} | "
                      f"{r['probe']:.3f} |", flush=True)

    print(f"\nmean ± sample std over seeds {args.seeds}:\n")
    print("| start | held-out kNN | held-out linear probe |")
    print("| --- | ---: | ---: |")
    for name in variants:
        runs = list(results[name].values())
        print(f"| {name} | {spread([r['kNN'] for r in runs])} | {spread([r['probe'] for r in runs])} |")
    names = list(variants)
    for metric in METRICS:
        diffs = [results[names[0]][s][metric] - results[names[1]][s][metric] for s in args.seeds]
        print(f"\n{metric}: pretrained - random, per seed: {', '.join(f'{d:+.3f}' for d in diffs)} "
              f"(mean {statistics.fmean(diffs):+.3f})")


if __name__ == "__main__":
    main()
