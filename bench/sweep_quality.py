"""What a sweep finds against a recipe's defaults, on data the sweep never saw.

    python bench/sweep_quality.py simclr-digits --space simclr-digits --trials 20 \
        --test-set 'data.val.options.complement=true'
    python bench/sweep_quality.py wav2vec2-quickstart --space wav2vec2-quickstart --trials 20 \
        --test-set 'data.val.options.split="test"'

1. ``selfsup sweep`` (the space's objective: its validation data);
2. the recipe's defaults and the sweep's best recipe (``best.toml``), each trained with ``--seeds``
   (the sweep itself used the recipe's seed), with the space's ``[fixed]`` fields in both;
3. both evaluated on the validation data (the sweep's objective) and on the test data (``--test-set``,
   overrides of the evaluator's data, never used by the sweep): mean and spread over the seeds.

The gap between the best trial's value and the best recipe's validation mean over fresh seeds is the
selection bias of picking the maximum of noisy trials; the test columns say what carries over.
Results go to ``--out`` (default ``runs/bench-sweep-<recipe>``) and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def selfsup(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfsup", *args], capture_output=True, text=True)


def check(proc: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if proc.returncode != 0:
        sys.exit(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def train_and_eval(recipe: str, run_dir: Path, seed: int, sets: list[str], metric: str,
                   test_sets: list[str]) -> dict[str, float]:
    args = ["train", recipe, "--no-progress", "--set", f"seed={seed}", "--set", f"output_dir={run_dir}"]
    for s in sets:
        args += ["--set", s]
    if not (run_dir / "checkpoints").is_dir():
        check(selfsup(*args), f"training {recipe} (seed {seed})")
    evaluator = metric.split("/", 1)[0]
    val = json.loads(check(selfsup("eval", str(run_dir), "--evaluator", evaluator, "--json"), "eval").stdout)
    test_args = ["eval", str(run_dir), "--evaluator", evaluator, "--json"]
    for s in test_sets:
        test_args += ["--set", s]
    test = json.loads(check(selfsup(*test_args), "test eval").stdout)
    return {"val": val[metric], "test": test[metric]}


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--space", required=True)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--test-set", action="append", default=[], help="Overrides that point the evaluator at "
                        "the test data (KEY=VALUE, repeatable).")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="Recipe overrides for every run.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path("runs") / f"bench-sweep-{args.recipe}"
    out.mkdir(parents=True, exist_ok=True)

    from selfsup.plugins import get_plugin_manager
    from selfsup.sweep.space import find_space, load_space

    space, _ = load_space(str(find_space(args.space, get_plugin_manager())))
    metric = space.objective.metric
    start = time.perf_counter()
    sweep_args = ["sweep", args.recipe, "--space", args.space, "--trials", str(args.trials),
                  "--out", str(out / "sweep")]
    for s in args.sets:
        sweep_args += ["--set", s]
    check(selfsup(*sweep_args), "the sweep")
    sweep_s = time.perf_counter() - start
    summary = json.loads(check(selfsup("sweep", "show", str(out / "sweep"), "--json"), "sweep show").stdout)
    best = summary["best"][0]

    # the defaults get the space's fixed fields too (the same evaluation data and schedule)
    fixed = [f"{k}={_inline(v)}" for k, v in space.fixed.items()]
    results: dict[str, list[dict[str, float]]] = {"defaults": [], "best": []}
    for seed in args.seeds:
        results["defaults"].append(train_and_eval(args.recipe, out / f"defaults-seed{seed}", seed,
                                                  [*args.sets, *fixed], metric, args.test_set))
        results["best"].append(train_and_eval(str(out / "sweep" / "best.toml"), out / f"best-seed{seed}", seed,
                                              [*args.sets], metric, args.test_set))
    record = {"recipe": args.recipe, "space": args.space, "trials": args.trials, "metric": metric,
              "counts": summary["counts"], "best_trial": best, "importances": summary["importances"],
              "seeds": args.seeds, "results": results, "sweep_seconds": round(sweep_s, 1)}
    (out / "bench.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"sweep: {args.trials} trials in {sweep_s / 60:.1f} min, {summary['counts']}; best trial "
          f"{best['number']}: {metric} = {best['value']:.4f} with {best['params']}")
    print(f"importances: {summary['importances']}")
    print(f"\n| {args.recipe} ({metric}, seeds {', '.join(map(str, args.seeds))}) | validation (sweep objective) "
          f"| test (unseen by the sweep) |\n| --- | ---: | ---: |")
    for name, rows in results.items():
        print(f"| {name} | {spread([r['val'] for r in rows])} | {spread([r['test'] for r in rows])} |")
    print(f"| best trial itself (seed of the recipe) | {best['value']:.3f} | |")


def _inline(value: object) -> str:
    """A TOML inline table (or value) for --set."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return json.dumps(value)


if __name__ == "__main__":
    main()
