"""The text variant of training in rounds: salient-span cloze feedback against plain CLM training.

For each seed: train ``clm-quickstart`` (GPT-2-style nano decoder, causal LM on the embedded corpus,
``--steps`` optimizer steps of 32 windows of 64 tokens) as is ("plain"), and the same recipe split
into ``--rounds`` rounds with the ``salient_cloze`` feedback after each round but the last
(docs/autonomous.md, "The text variant"): closed-book and open-book salient-span cloze on the
training windows, the gap curriculum, and confidence-filtered self-training samples appended to the
data. Ablations (``--variants``): ``no-curriculum`` (curriculum = false), ``no-filter`` (confidence
threshold 0: every agreeing answer is added), ``no-open-book`` (appended_form = "closed": no open-book
samples), ``no-self-training`` (the curriculum alone); and ``reading``: the rounds with open-book
training (``reading = 128``: REALM-style samples of a retrieved passage before a sentence holding its
salient span, from the data alone), and ``reading-swap``: the same with half of those samples'
span swapped for another of its kind in passage and sentence, so that only reading answers them;
``reading-no-curriculum``: ``reading`` without the gap curriculum.

Measured for every run after training, with the same fixed question set (``--questions`` salient
spans of the training windows drawn with seed 1234, the same for every run and seed):

* closed-book cloze accuracy (exact match of the span's tokens, greedy answer to the sentence prefix);
* open-book cloze accuracy (the BM25 top-1 passage before the question);
* held-out perplexity (the recipe's ``perplexity`` evaluator on the validation windows);

and, from the rounds, the feedback's metrics per round: gaps, accepted self-training answers and
the share of them that were right (measured against the true spans, never used for training), and
wrong-but-confident answers. Optimizer steps and batch size are equal; the appended samples are
shorter than the 65-token windows, so a round-trained run sees at most as many tokens.

    nice -n 10 .venv/bin/python bench/autonomous.py                            # 3 seeds, plain + rounds
    nice -n 10 .venv/bin/python bench/autonomous.py --variants plain rounds no-curriculum no-filter
    nice -n 10 .venv/bin/python bench/autonomous.py --steps 60 --questions 50 --seeds 0   # a smoke run

A regime where the nano model can learn facts: the training data is the first 10 Lee news documents
of the training split (43 windows, 37 of them with an askable span), seen about 37 times in 100
steps of 16 windows, so facts can be memorised (closed book) or copied from the context (open book);
the held-out perplexity is then that of the news validation documents. ``--corpus`` changes
``data.train`` and ``data.val``, ``--documents`` ``data.train``, of every variant alike::

    nice -n 10 .venv/bin/python bench/autonomous.py --corpus news --documents 10 --batch-size 16 \\
        --steps 100 --questions 100 --feedback-questions 128 --seeds 0 1 2 --variants plain rounds

Also measured on the final model: ``gaps`` (closed wrong, open right) and ``open_has_answer``, the
share of open-book contexts that contain the answer's tokens at all (retrieval and the cut to the
context together: the ceiling of open-book accuracy).

The feedback is registered from a plugin file this script writes (``salient_cloze_bench``), so the
bench runs whether or not ``selfsup_text`` registers ``salient_cloze`` itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import textwrap
import time
from importlib import resources
from pathlib import Path

import torch

from selfsup.engine.loop import train
from selfsup.engine.metrics import read_metrics
from selfsup.plugins import PluginManager
from selfsup.recipe import load_recipe

PLUGIN = """
import selfsup
from selfsup.registry import lazy
from selfsup_text.feedback.options import SalientClozeOptions


@selfsup.hookimpl
def register_feedback(register):
    register("salient_cloze_bench", lazy("selfsup_text.feedback.cloze:build"), options=SalientClozeOptions,
             consumes={"input_ids": "int64[T]"}, summary="salient_cloze, registered by bench/autonomous.py")
"""

FEEDBACK = {
    "rounds": {},
    "no-curriculum": {"curriculum": False},
    "no-filter": {"confidence_threshold": 0.0},
    "no-open-book": {"appended_form": "closed"},
    "no-self-training": {"self_training": False},
    "reading": {"reading": 128},
    "reading-swap": {"reading": 128, "reading_counterfactual": 0.5},
    "reading-no-curriculum": {"reading": 128, "curriculum": False},
}


def toml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def recipe_text(variant: str, rounds: int, questions: int) -> str:
    text = resources.files("selfsup_text").joinpath("recipes/clm-quickstart.toml").read_text()
    if variant == "plain":
        return text
    options = {"questions": questions, **FEEDBACK[variant]}
    inline = ", ".join(f"{k} = {toml_value(v)}" for k, v in options.items())
    return text + textwrap.dedent(f"""
        [rounds]
        count = {rounds}

        [rounds.feedback]
        type = "salient_cloze_bench"
        data = "train"
        options = {{ {inline} }}
        """)


def cloze_eval(run_dir: Path, questions: int, plugins: Path) -> dict[str, float]:
    """Closed-book and open-book accuracy of the trained decoder on the fixed question set."""
    import selfsup
    from selfsup_text.feedback.cloze import SalientCloze, focus
    from selfsup_text.feedback.options import SalientClozeOptions

    model = selfsup.load(run_dir, plugins_dir=plugins)
    backbone, data = model.backbone.eval(), model.data
    cloze = SalientCloze(SalientClozeOptions(questions=questions))
    tok = backbone.tokenizer
    asked, _ = cloze.ask(data, tok, torch.Generator().manual_seed(1234), decoder=True)
    index, _ = cloze.index(data, tok)
    found, _ = index.search([q.query for q in asked], 1)
    special = set(tok.all_special_ids)
    top = [[t for t in data[int(r[0])]["input_ids"].tolist() if t not in special] for r in found]
    with torch.no_grad():
        closed, closed_conf = cloze.answer(backbone, asked, [None] * len(asked), 64)
        opened, _ = cloze.answer(backbone, asked, top, 64)
    gold = [q.answer for q in asked]
    closed_ok = [a == g for a, g in zip(closed, gold)]
    open_ok = [a == g for a, g in zip(opened, gold)]
    shown = [focus(p, q.left, backbone.max_positions - len(q.left) - len(q.answer) - 1,
                   tail=cloze.options.max_answer_tokens) for q, p in zip(asked, top)]
    has = [any(c[i:i + len(q.answer)] == q.answer for i in range(len(c) - len(q.answer) + 1))
           for q, c in zip(asked, shown)]
    confident = [not ok and float(c) >= cloze.options.confidence_threshold for ok, c in zip(closed_ok, closed_conf)]
    return {"closed": statistics.fmean(closed_ok), "open": statistics.fmean(open_ok), "asked": len(asked),
            "gaps": sum(not c and o for c, o in zip(closed_ok, open_ok)), "open_has_answer": statistics.fmean(has),
            "wrong_but_confident": sum(confident)}


def run(variant: str, seed: int, args, plugins: Path) -> dict:
    pm = PluginManager(plugins_dirs=[plugins])
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / f"{variant}.toml"
        recipe.write_text(recipe_text(variant, args.rounds, args.feedback_questions))
        overrides = [f'output_dir="{Path(tmp) / "run"}"', f"seed={seed}", "train.tensorboard=false",
                     f"train.max_steps={args.steps}", f"train.warmup_steps={max(1, args.steps * 3 // 40)}"]
        for split in ("train", "val"):
            overrides.append(f'data.{split}.options.name="{args.corpus}"')
        if args.documents:
            overrides.append(f"data.train.options.limit={args.documents}")
        if args.batch_size:
            overrides.append(f"train.batch_size={args.batch_size}")
        loaded = load_recipe(str(recipe), pm.registry, overrides)
        start = time.perf_counter()
        result = train(loaded, pm, progress=False)
        seconds = time.perf_counter() - start
        rounds = [{k: v for k, v in r.items() if k.startswith(("feedback/", "round/")) or k == "step"}
                  for r in read_metrics(result.run_dir) if r["kind"] == "round"]
        start = time.perf_counter()
        cloze = cloze_eval(Path(result.run_dir), args.questions, plugins)
        cloze["seconds"] = round(time.perf_counter() - start, 1)
    return {"variant": variant, "seed": seed, "corpus": args.corpus, "documents": args.documents,
            "steps": result.step, "seconds": round(seconds, 1),
            "perplexity": result.evaluation["perplexity/perplexity"], "cloze": cloze, "rounds": rounds}


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["plain", "rounds"], choices=["plain", *FEEDBACK])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=500, help="fixed evaluation questions")
    parser.add_argument("--feedback-questions", type=int, default=512, help="questions the feedback asks per round")
    parser.add_argument("--corpus", choices=["all", "wiki", "news"], default="all", help="embedded corpus")
    parser.add_argument("--documents", type=int, default=None, help="train on the first N documents of the split")
    parser.add_argument("--batch-size", type=int, default=None, help="windows per step (default: the recipe's 32)")
    parser.add_argument("--out", type=Path, default=None, help="write every run's numbers to this JSON file")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as plugins:
        (Path(plugins) / "cloze_bench_plugin.py").write_text(textwrap.dedent(PLUGIN))
        for seed in args.seeds:
            for variant in args.variants:
                r = run(variant, seed, args, Path(plugins))
                results.append(r)
                print(json.dumps(r), flush=True)
                if args.out:
                    args.out.write_text(json.dumps(results, indent=1))

    print("\n| variant | closed-book cloze | open-book cloze | gaps | wrong but confident | held-out perplexity |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for variant in args.variants:
        rows = [r for r in results if r["variant"] == variant]
        print(f"| {variant} | {spread([r['cloze']['closed'] for r in rows])} | "
              f"{spread([r['cloze']['open'] for r in rows])} | {spread([r['cloze']['gaps'] for r in rows])} | "
              f"{spread([r['cloze']['wrong_but_confident'] for r in rows])} | "
              f"{spread([r['perplexity'] for r in rows])} |")
    if "plain" in args.variants:
        for variant in [v for v in args.variants if v != "plain"]:
            diff = [r["cloze"]["closed"] - p["cloze"]["closed"] for r in results for p in results
                    if r["variant"] == variant and p["variant"] == "plain" and r["seed"] == p["seed"]]
            print(f"{variant} - plain, closed-book, paired by seed: {spread(diff)}")
    print("\n| variant | seed | round | step | gaps | closed acc | open acc | accepted | accepted correct | "
          "wrong but confident | recall@5 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        for i, f in enumerate(r["rounds"]):
            print(f"| {r['variant']} | {r['seed']} | {i} | {f['step']} | {f['feedback/gaps']:.0f} | "
                  f"{f['feedback/closed_accuracy']:.3f} | {f['feedback/open_accuracy']:.3f} | "
                  f"{f['feedback/accepted']:.0f} | {f.get('feedback/accepted_correct', float('nan')):.3f} | "
                  f"{f['feedback/wrong_but_confident']:.0f} | {f['feedback/recall_at_k']:.3f} |")


if __name__ == "__main__":
    main()
