"""Lee STS Spearman of several encoders, with a paired document bootstrap of their differences.

The Lee ratings cover every pair of only 50 documents, so the 1,225 pairs are far from independent
and a difference of a few hundredths between two encoders can be chance. This script embeds the
50 documents with each encoder (mean pooling, as the ``sts_spearman`` evaluator), then resamples
the documents with replacement (``--rounds`` times, seeded): a resample keeps every pair of two
drawn documents, as often as both were drawn. For each pair of encoders it prints the difference of
their Spearman correlations on the full set, its 95% bootstrap interval and the fraction of
resamples where it is not positive (a one-sided bootstrap p-value).

    .venv/bin/python bench/sts_significance.py random=random:nano mlm=runs/mlm-quickstart/export/encoder \\
        simcse=runs/simcse-quickstart/export/encoder

An encoder is ``NAME=PATH`` (an exported ``transformer`` folder), ``NAME=random:SIZE`` (a BERT of
that size preset with the shipped ``bpe-8k`` tokenizer at its seed-0 random initialisation) or
``NAME=tfidf`` (a reference without learning: scikit-learn's TF-IDF word vectors, English stop words
removed, the IDF fitted on the embedded training corpus, the documents in full).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from machine import machine  # bench/machine.py

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup_text.data.gensim_data import lee_similarity
from selfsup_text.evaluators.sts import pair_cosines


def encoder_options(spec: str) -> tuple[dict, str]:
    """``(transformer backbone options, tokenizer of the texts)`` of an encoder spec."""
    if spec.startswith("random:"):
        size = spec.split(":", 1)[1]
        return {"family": "bert", "size": size, "context": 128, "tokenizer": "bpe-8k", "pooling": "mean"}, "bpe-8k"
    return {"pretrained": spec, "pooling": "mean"}, spec


def tfidf_cosines(texts: list[str], pairs: np.ndarray) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from selfsup_text.data.gensim_data import corpus_documents

    vectorizer = TfidfVectorizer(stop_words="english").fit(corpus_documents("all"))
    z = torch.as_tensor(vectorizer.transform(texts).toarray(), dtype=torch.float32)  # [N, V]
    return pair_cosines(z, torch.as_tensor(pairs)).numpy()


@torch.no_grad()
def cosines(registry, spec: str, max_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cosines [P], pairs [P, 2], ratings [P])`` of one encoder on the Lee pairs."""
    if spec == "tfidf":
        texts, pairs, ratings = lee_similarity()
        pairs = np.asarray(pairs)
        return tfidf_cosines(texts, pairs), pairs, np.asarray(ratings)
    options, tokenizer = encoder_options(spec)
    torch.manual_seed(0)
    backbone = registry.get("backbone", "transformer").build(options, BuildContext(name="encoder")).eval()
    source = registry.get("data_source", "similarity_pairs").build(
        {"set": "lee", "tokenizer": tokenizer, "max_length": max_length},
        BuildContext(name="sts"),
    )
    rows = []
    for i in range(len(source)):
        ids = source[i]["input_ids"][None]  # [1, L]
        mask = torch.ones_like(ids)
        rows.append(backbone.pool(backbone.hidden_states(ids, mask), mask, "mean")[0])  # [D]
    return pair_cosines(torch.stack(rows), source.pairs).numpy(), source.pairs.numpy(), source.scores.numpy()


def spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Spearman's rho of pairs repeated ``weights`` times (average ranks for ties)."""
    from scipy.stats import spearmanr

    keep = np.repeat(np.arange(len(x)), weights)
    return float(spearmanr(x[keep], y[keep]).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("encoders", nargs="+", help="NAME=PATH or NAME=random:SIZE")
    parser.add_argument("--rounds", type=int, default=2000, help="Bootstrap resamples.")
    parser.add_argument("--max-length", type=int, default=128, help="Tokens per document (as the recipes).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    registry = get_plugin_manager().registry
    specs = dict(e.split("=", 1) for e in args.encoders)
    cos, pairs, ratings = {}, None, None
    for name, spec in specs.items():
        cos[name], pairs, ratings = cosines(registry, spec, args.max_length)
    docs = int(pairs.max()) + 1
    ones = np.ones(len(pairs), dtype=int)
    full = {name: spearman(c, ratings, ones) for name, c in cos.items()}
    rng = np.random.default_rng(args.seed)
    boot = {name: [] for name in cos}
    for _ in range(args.rounds):
        drawn = np.bincount(rng.integers(0, docs, docs), minlength=docs)  # [docs] times drawn
        weights = drawn[pairs[:, 0]] * drawn[pairs[:, 1]]  # [P]
        for name, c in cos.items():
            boot[name].append(spearman(c, ratings, weights))
    print(machine())
    print(f"\nLee STS, {len(pairs)} pairs of {docs} documents; {args.rounds} document resamples (seed {args.seed})\n")
    print("| encoder | Spearman | 95% interval |\n| --- | ---: | --- |")
    for name in cos:
        low, high = np.percentile(boot[name], [2.5, 97.5])
        print(f"| {name} | {full[name]:.3f} | [{low:.3f}, {high:.3f}] |")
    print("\n| difference | value | 95% interval | resamples <= 0 |\n| --- | ---: | --- | ---: |")
    for a, b in itertools.combinations(cos, 2):
        d = np.asarray(boot[b]) - np.asarray(boot[a])
        low, high = np.percentile(d, [2.5, 97.5])
        print(f"| {b} - {a} | {full[b] - full[a]:+.3f} | [{low:+.3f}, {high:+.3f}] | {np.mean(d <= 0):.3f} |")


if __name__ == "__main__":
    main()
