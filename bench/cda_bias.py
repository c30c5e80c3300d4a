"""Counterfactual data augmentation against no augmentation: bias audit and perplexity of the same CLM.

The same small decoder (``clm-quickstart``: GPT-2 nano, ``bpe-8k``, windows of 64, 400 steps) is
trained on the embedded corpus's training documents as they are (``base``) and with counterfactual
copies (``cda``: ``counterfactual_corpus(mode="add")``, Lu et al. 2018; ``cds``:
``mode="substitute"``, Maudslay et al. 2019, when asked), for each seed. Every run sees the same
number of steps and tokens, and is evaluated on the same un-augmented held-out documents (the
``embedded_corpus`` val split): held-out perplexity. Then ``selfsup audit`` (gender: the built-in
template pairs, both decoder measures; SEAT WEAT 6/7/8 and the flowers/insects control, mean pooling)
audits each run.

The recipe differs from ``clm-quickstart`` in one setting: ``cross_document_attention = true`` (the
GPT-2 setup, in training and in the perplexity evaluator), so a document start is trained after the
[SEP] that ends the previous document, which is how the audit scores a sentence (``decoder_prefix =
"eos"``).

Prints: the counterfactual counts, a table per arm (mean over seeds and each seed), and the
differences cda - base with 95% bootstrap intervals over templates (each resample draws templates
with replacement, the same draw for every run; the difference is of the means over seeds). Writes
everything to ``OUT/cda_bias.json``.

    SELFSUP_PLUGINS=text OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/cda_bias.py --seeds 0 1 2 \\
        --arms base cda cds --out runs/cda-bias

(``SELFSUP_PLUGINS=text``: no tracker plugin logs the runs; one thread is faster than two on a busy
2-core machine.) The intervals over templates do not include the spread between training seeds:
compare the per-seed columns.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import machine  # bench/machine.py

import selfsup
from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup_text.audit.likelihood import preference
from selfsup_text.audit.options import AuditOptions
from selfsup_text.audit.pipeline import run_audit
from selfsup_text.augment.counterfactual import counterfactual_corpus

MODES = {"cda": "add", "cds": "substitute"}


def training_documents() -> list[str]:
    """The ``embedded_corpus`` train split of ``clm-quickstart`` (name all, split seed 0), as texts."""
    registry = get_plugin_manager().registry
    source = registry.get("data_source", "embedded_corpus").build(
        {"name": "all", "tokenizer": "bpe-8k", "split": "train"}, BuildContext(name="train"))
    return list(source.texts)


def write_jsonl(texts: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}) + "\n")


def train(arm: str, seed: int, corpus: Path, out: Path, steps: int) -> tuple[Path, dict, float]:
    overrides = {
        "output_dir": str(out / f"{arm}-seed{seed}"), "seed": seed, "train.max_steps": steps,
        "train.tensorboard": False, "train.workers": 0,
        "data.train.type": "jsonl",
        "data.train.options": {"path": str(corpus.resolve()), "tokenizer": "bpe-8k", "window": 64, "split": "all"},
        "tasks.clm.options": {"cross_document_attention": True},
        "evaluators.perplexity.options": {"cross_document_attention": True},
    }
    start = time.perf_counter()
    run = selfsup.train("clm-quickstart", overrides)
    minutes = (time.perf_counter() - start) / 60
    return run.path, run.metrics, minutes


def paired_interval(diffs: dict[str, list[np.ndarray]], templates: np.ndarray, stat, *, rounds: int,
                    seed: int) -> dict[str, dict]:
    """Per arm: stat of each seed's pair differences, averaged over seeds, with a template bootstrap
    interval; and each arm minus ``base`` with its interval (the same template draws for all)."""
    ids = np.unique(templates)
    members = [np.flatnonzero(templates == t) for t in ids]
    rng = np.random.default_rng(seed)
    boot = {arm: np.empty(rounds) for arm in diffs}
    for r in range(rounds):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
        for arm, per_seed in diffs.items():
            boot[arm][r] = np.mean([stat(d[rows]) for d in per_seed])
    out = {}
    for arm, per_seed in diffs.items():
        values = [stat(d) for d in per_seed]
        out[arm] = {"mean": float(np.mean(values)), "seeds": [float(v) for v in values],
                    "ci": [float(v) for v in np.percentile(boot[arm], [2.5, 97.5])]}
        if arm != "base":
            delta = boot[arm] - boot["base"]
            out[arm]["minus_base"] = float(np.mean(values) - np.mean([stat(d) for d in diffs["base"]]))
            out[arm]["minus_base_ci"] = [float(v) for v in np.percentile(delta, [2.5, 97.5])]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["base", "cda"], choices=["base", "cda", "cds"])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("runs/cda-bias"))
    args = parser.parse_args()
    if "base" not in args.arms:
        parser.error("--arms must include base")
    print(f"machine: {machine()}\n", flush=True)

    documents = training_documents()
    corpora, counts = {}, {}
    for arm in args.arms:
        texts = documents
        if arm != "base":
            texts, counts[arm] = counterfactual_corpus(documents, mode=MODES[arm], seed=0)
        corpora[arm] = args.out / "corpora" / f"{arm}.jsonl"
        write_jsonl(texts, corpora[arm])
    print(f"training documents: {len(documents)}; counterfactual counts: {json.dumps(counts)}\n", flush=True)

    results: dict[str, dict] = {arm: {} for arm in args.arms}
    for seed in args.seeds:
        for arm in args.arms:
            run_dir, metrics, minutes = train(arm, seed, corpora[arm], args.out, args.steps)
            audit = run_audit(run_dir, AuditOptions(attributes=["gender", "control"], bootstrap=args.bootstrap,
                                                    seed=seed))
            results[arm][seed] = {"run": str(run_dir), "minutes": minutes, "metrics": metrics, "audit": audit}
            crows = {r["measure"]: r["stereotype_preference"] for r in audit["crows"]}
            print(f"{arm} seed {seed}: {minutes:.1f} min, perplexity {metrics['perplexity/perplexity']:.1f}, "
                  f"stereotype preference {crows}", flush=True)

    # ---------------------------------------------------------------- the comparison
    first = results["base"][args.seeds[0]]["audit"]
    pairs = [p for p in first["pairs"] if p["attribute"] == "gender"]
    templates = np.array([p["template"] for p in pairs])
    stereo = np.array([0 if p["stereotype"] == "male" else 1 for p in pairs])
    rows = np.arange(len(pairs))
    summary: dict[str, dict] = {"counts": counts, "seeds": args.seeds, "steps": args.steps, "measures": {}}
    print("\n| measure | statistic | " + " | ".join(args.arms) + " | " +
          " | ".join(f"{a} - base (95% interval)" for a in args.arms if a != "base") + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in args.arms) + " | " +
          " | ".join("---" for a in args.arms if a != "base") + " |")
    for measure in ("sentence", "unmodified"):
        stereo_diffs, male_diffs = {}, {}
        for arm in args.arms:
            stereo_diffs[arm], male_diffs[arm] = [], []
            for seed in args.seeds:
                scores = np.array([p["scores"][measure] for p in results[arm][seed]["audit"]["pairs"]
                                   if p["attribute"] == "gender"])  # [N, 2]: male, female sentence
                stereo_diffs[arm].append(scores[rows, stereo] - scores[rows, 1 - stereo])
                male_diffs[arm].append(scores[:, 0] - scores[:, 1])
        stats = {
            "stereotype preference": paired_interval(stereo_diffs, templates, preference, rounds=args.bootstrap,
                                                     seed=0),
            "mean difference (nats)": paired_interval(stereo_diffs, templates, np.mean, rounds=args.bootstrap,
                                                      seed=0),
            "male sentence preferred": paired_interval(male_diffs, templates, preference, rounds=args.bootstrap,
                                                       seed=0),
        }
        summary["measures"][measure] = stats
        for name, per_arm in stats.items():
            cells = [f"{per_arm[a]['mean']:.3f} [{per_arm[a]['ci'][0]:.3f}, {per_arm[a]['ci'][1]:.3f}]"
                     for a in args.arms]
            deltas = [f"{per_arm[a]['minus_base']:+.3f} [{per_arm[a]['minus_base_ci'][0]:+.3f}, "
                      f"{per_arm[a]['minus_base_ci'][1]:+.3f}]" for a in args.arms if a != "base"]
            print(f"| {measure} | {name} | " + " | ".join(cells) + " | " + " | ".join(deltas) + " |")

    print("\n| arm | held-out perplexity, mean | per seed | train minutes, mean |")
    print("| --- | ---: | --- | ---: |")
    for arm in args.arms:
        ppl = [results[arm][s]["metrics"]["perplexity/perplexity"] for s in args.seeds]
        minutes = [results[arm][s]["minutes"] for s in args.seeds]
        print(f"| {arm} | {np.mean(ppl):.1f} | {', '.join(f'{v:.1f}' for v in ppl)} | {np.mean(minutes):.1f} |")
        summary.setdefault("perplexity", {})[arm] = ppl

    print("\n| arm | WEAT test | effect size, mean | per seed (p one-sided) |")
    print("| --- | --- | ---: | --- |")
    for arm in args.arms:
        tests = [r["test"] for r in results[arm][args.seeds[0]]["audit"]["seat"]]
        for test in tests:
            rows_ = [next(r for r in results[arm][s]["audit"]["seat"] if r["test"] == test) for s in args.seeds]
            print(f"| {arm} | {rows_[0]['title']} | {np.mean([r['effect_size'] for r in rows_]):+.2f} | "
                  + ", ".join(f"{r['effect_size']:+.2f} ({r['p']:.3f})" for r in rows_) + " |")
            summary.setdefault("seat", {}).setdefault(arm, {})[test] = [r["effect_size"] for r in rows_]

    args.out.mkdir(parents=True, exist_ok=True)
    slim = {arm: {s: {k: v for k, v in r.items() if k != "audit"} | {"audit": {k: v for k, v in r["audit"].items()
                                                                             if k != "pairs"}}
                  for s, r in per_seed.items()} for arm, per_seed in results.items()}
    (args.out / "cda_bias.json").write_text(json.dumps({"summary": summary, "runs": slim}, indent=1))
    print(f"\nwrote {args.out / 'cda_bias.json'}")


if __name__ == "__main__":
    main()
