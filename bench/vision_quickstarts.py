"""Every selfsup-vision quickstart, trained in full, with its baselines beside it.

For each shipped recipe: train it as shipped (``selfsup train NAME``), then evaluate the final
checkpoint and the same backbone at random initialisation (``selfsup eval RUN --baseline``) with
the recipe's evaluators on its held-out split. Raw-input kNN (``knn/raw_accuracy``, same k and
temperature) is the third column. Prints a Markdown table for ``docs/vision.md``.

    .venv/bin/python bench/vision_quickstarts.py                       # all five
    .venv/bin/python bench/vision_quickstarts.py simclr-digits swav-digits
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/machine.py

from selfsup.engine.loop import train
from selfsup.evaluation import evaluate_run
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe

RECIPES = ["simclr-digits", "swav-digits", "mae-digits", "deepcluster-digits", "simclr-mnist5k"]


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", default=RECIPES)
    args = parser.parse_args()
    pm = get_plugin_manager()
    print(f"machine: {machine()}\n")
    print("| recipe | steps | train time | kNN trained | kNN random init | kNN raw input | probe trained | probe "
          "random init |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.recipes:
        with tempfile.TemporaryDirectory() as tmp:
            loaded = load_recipe(name, pm.registry, [f'output_dir="{Path(tmp) / "run"}"', "train.tensorboard=false"])
            start = time.perf_counter()
            result = train(loaded, pm, progress=False)
            seconds = time.perf_counter() - start
            trained, _ = evaluate_run(result.run_dir, pm)
            untrained, _ = evaluate_run(result.run_dir, pm, random_init=True)
        print(
            f"| {name} | {result.step} | {seconds / 60:.1f} min | {fmt(trained.get('knn/accuracy'))} "
            f"| {fmt(untrained.get('knn/accuracy'))} | {fmt(trained.get('knn/raw_accuracy'))} "
            f"| {fmt(trained.get('linear_probe/accuracy'))} | {fmt(untrained.get('linear_probe/accuracy'))} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
