"""Shipped quickstart recipes, trained in full, each metric beside the same model before training.

For each recipe: train it as shipped (``selfsup train NAME``, output in ``RUNS/<name>``), then
evaluate the final checkpoint and the model as the recipe's seed initialises it (``selfsup eval RUN
--baseline``: random init, or the pretrained weights a recipe starts from) with the recipe's
evaluators on its held-out data. Metrics that are baselines themselves (raw-input kNN, unigram or
MFCC figures) appear in both columns. Prints one Markdown table for the docs.

    .venv/bin/python bench/quickstarts.py simclr-digits swav-digits mae-digits deepcluster-digits simclr-mnist5k
    .venv/bin/python bench/quickstarts.py mlm-quickstart simcse-quickstart clm-quickstart nsp-quickstart clm-char

Recipes run in the order given (simcse-quickstart starts from mlm-quickstart's exported encoder).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from machine import machine  # bench/machine.py

from selfsup.engine.loop import train
from selfsup.evaluation import evaluate_run
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="Where the runs are written (RUNS/<name>).")
    args = parser.parse_args()
    pm = get_plugin_manager()
    print(f"machine: {machine()}\n")
    print("| recipe | steps | train time | metric | trained | before training |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for name in args.recipes:
        run_dir = args.runs / name
        loaded = load_recipe(name, pm.registry, [f'output_dir="{run_dir}"', "train.tensorboard=false"])
        start = time.perf_counter()
        result = train(loaded, pm, progress=False)
        minutes = (time.perf_counter() - start) / 60
        trained, _ = evaluate_run(result.run_dir, pm)
        before, _ = evaluate_run(result.run_dir, pm, random_init=True)
        for i, metric in enumerate(trained):
            lead = f"| {name} | {result.step} | {minutes:.1f} min" if i == 0 else "| | |"
            print(f"{lead} | {metric} | {trained[metric]:.4g} | {before.get(metric, float('nan')):.4g} |", flush=True)


if __name__ == "__main__":
    main()
