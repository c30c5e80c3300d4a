"""Training in rounds against the same training without rounds, on held-out digits (8 x 8 or MNIST).

For each seed: train ``simclr-digits`` (SimCLR, small CNN, 100 optimizer steps) and
``simclr-digits-rounds`` (the same data, backbone, SimCLR task and 100 optimizer steps, split into 3
rounds; after rounds 1 and 2 the ``pseudo_labels`` feedback refines 30 k-means pseudo-classes of the
training digits, which a pseudo-label classification task learns from round 2 on, and sets a
confidence-weighted, class-balanced curriculum; docs/autonomous.md). Both are measured by the
recipes' own evaluators on the held-out split: weighted kNN (k = 200, t = 0.1) and a linear probe.
Equal optimizer steps, not equal compute: rounds 2 and 3 also run the pseudo-label task's forward
and backward on a second batch, which the time column shows.

Prints one row per run, mean ± sample std over the seeds, the per-round quality of the
pseudo-labels (NMI and purity against the true labels, which the feedback reads only to measure),
and the difference per seed (rounds - no rounds), for docs/autonomous.md.

    nice -n 10 .venv/bin/python bench/rounds_vision.py                 # seeds 0 1 2
    nice -n 10 .venv/bin/python bench/rounds_vision.py --seeds 0 1 2 3 4
    nice -n 10 .venv/bin/python bench/rounds_vision.py --data mnist5k  # simclr-mnist5k(-rounds), 375 steps
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/machine.py

from selfsup.engine.loop import train
from selfsup.engine.metrics import read_metrics
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe

PAIRS = {  # --data: (no rounds, rounds)
    "digits": ("simclr-digits", "simclr-digits-rounds"),
    "mnist5k": ("simclr-mnist5k", "simclr-mnist5k-rounds"),
}
METRICS = {"kNN": "knn/accuracy", "probe": "linear_probe/accuracy"}


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def run(recipe: str, seed: int, pm) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f'output_dir="{Path(tmp) / "run"}"', f"seed={seed}", "train.tensorboard=false"]
        loaded = load_recipe(recipe, pm.registry, overrides)
        start = time.perf_counter()
        result = train(loaded, pm, progress=False)
        seconds = time.perf_counter() - start
        rounds = [r for r in read_metrics(result.run_dir) if r["kind"] == "round"]
    return {"steps": result.step, "seconds": seconds, **{k: result.evaluation[v] for k, v in METRICS.items()},
            "rounds": [(r["step"], r.get("feedback/nmi_labels"), r.get("feedback/purity"), r.get("feedback/changed"),
                        r.get("round/weights_ess")) for r in rounds]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", choices=sorted(PAIRS), default="digits",
                        help="digits: simclr-digits(-rounds), 100 steps; mnist5k: simclr-mnist5k(-rounds), 375 "
                             "steps (extra 'mnist')")
    args = parser.parse_args()
    variants = dict(zip(["no rounds", "rounds"], PAIRS[args.data], strict=True))
    pm = get_plugin_manager()
    print(f"machine: {machine()}\n")
    results: dict[str, dict[int, dict]] = {name: {} for name in variants}
    print("| variant | seed | optimizer steps | train time | held-out kNN | held-out linear probe |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for seed in args.seeds:
        for name, recipe in variants.items():
            r = results[name][seed] = run(recipe, seed, pm)
            print(f"| {name} | {seed} | {r['steps']} | {r['seconds'] / 60:.1f} min | {r['kNN']:.3f} | "
                  f"{r['probe']:.3f} |", flush=True)

    print(f"\nmean ± sample std over seeds {args.seeds}:\n")
    print("| variant | held-out kNN | held-out linear probe | train time |")
    print("| --- | ---: | ---: | ---: |")
    for name in variants:
        runs = list(results[name].values())
        print(f"| {name} | {spread([r['kNN'] for r in runs])} | {spread([r['probe'] for r in runs])} | "
              f"{statistics.fmean(r['seconds'] for r in runs) / 60:.1f} min |")
    diffs = {k: [results["rounds"][s][k] - results["no rounds"][s][k] for s in args.seeds] for k in METRICS}
    print(f"| rounds - no rounds (paired) | {spread(diffs['kNN'])} | {spread(diffs['probe'])} | |")

    print("\npseudo-labels of the training digits after each round (rounds variant; NMI and purity against the "
          "true labels, read only to measure):\n")
    print("| seed | round | step | NMI | purity | changed since the round before | weights ESS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for seed in args.seeds:
        for i, (step, nmi, purity, changed, ess) in enumerate(results["rounds"][seed]["rounds"]):
            shown = "" if changed is None else f"{changed:.3f}"
            print(f"| {seed} | {i + 1} | {step} | {nmi:.3f} | {purity:.3f} | {shown} | {ess:.3f} |")


if __name__ == "__main__":
    main()
