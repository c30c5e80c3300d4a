"""selfsup-text: self-supervised learning on text.

Registers text data sources (text files, JSONL, Hugging Face datasets, memory-mapped token shards,
the embedded corpus, labelled and similarity-rated evaluation sets), token-level augmentations,
a transformers backbone (GPT-2/Llama-style decoders, BERT-style encoders, from a config or a local
pretrained directory), the CLM, MLM, NSP and SimCSE pretext tasks, text evaluators, the
``selfsup prepare`` command and a quickstart recipe per task. Implementations are imported inside
the factories, so loading this plugin imports no torch and no transformers.
"""

from __future__ import annotations

from typing import Any, Callable

import selfsup
from selfsup.registry import lazy, package_recipes
from selfsup_text.options import data as od
from selfsup_text.options import models as om

MODALITY = "text"


def _lazy(path: str) -> Callable[[Any, Any], Any]:
    return lazy(f"selfsup_text.{path}")


@selfsup.hookimpl
def register_data_sources(register):
    for name, path, options, summary in [
        ("text_files", "data.files:build", od.TextFilesOptions,
         "Text files and folders: one document per file, line or blank-line block."),
        ("jsonl", "data.jsonl:build", od.JsonlOptions, "JSON Lines with a text field (and optional label or pair fields)."),
        ("hf_dataset", "data.hf:build", od.HFDatasetOptions,
         "A Hugging Face dataset saved to disk, or local json/csv/parquet/text files (extra 'datasets')."),
        ("token_shards", "data.shards:build", od.TokenShardsOptions,
         "Memory-mapped uint16/uint32 token shards from `selfsup prepare`, read by random window."),
        ("embedded_corpus", "data.corpus:build", od.EmbeddedCorpusOptions,
         "Real English that ships with the install: Wikipedia articles and news (gensim's test data)."),
        ("labelled_text", "data.labelled:build", od.LabelledTextOptions,
         "Small labelled sets for probes: movie-review polarity sentences, newsgroup posts."),
        ("similarity_pairs", "data.similarity:build", od.SimilarityPairsOptions,
         "Human similarity ratings: Lee news-document pairs, SimLex-999, WordSim-353."),
    ]:
        register(name, _lazy(path), options=options, modality=MODALITY, summary=summary)


@selfsup.hookimpl
def register_augmentations(register):
    for name, options, summary in [
        ("span_crop", od.SpanCropOptions, "Keep one random contiguous span of the tokens."),
        ("token_deletion", od.TokenDeletionOptions, "Delete each token with probability rate."),
        ("token_substitution", od.TokenSubstitutionOptions, "Replace each token by a random one with probability rate."),
        ("token_swap", od.TokenSwapOptions, "Swap random pairs of neighbouring tokens."),
    ]:
        register(name, _lazy(f"augment:build_{name}"), options=options, modality=MODALITY, summary=summary)


@selfsup.hookimpl
def register_backbones(register):
    register("transformer", _lazy("backbones:build"), options=om.TransformerOptions, modality=MODALITY,
             summary="transformers decoder (GPT-2, Llama) or encoder (BERT) from a config or a local directory.")


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("clm", _lazy("clm:build"), options=om.CLMOptions, modality=MODALITY,
             summary="Next-token prediction on packed sequences with document separators.")
    register("mlm", _lazy("mlm:build"), options=om.MLMOptions, modality=MODALITY,
             summary="Masked language modelling: 15% selected, 80/10/10; whole-word and span options.")
    register("nsp", _lazy("nsp:build"), options=om.NSPOptions, modality=MODALITY,
             summary="Next-sentence prediction on BERT-style segment pairs (50% true next).")
    register("simcse", _lazy("simcse:build"), options=om.SimCSEOptions, modality=MODALITY,
             summary="SimCSE: dropout views (unsupervised) or labelled pairs with hard negatives.")


@selfsup.hookimpl
def register_evaluators(register):
    register("perplexity", _lazy("evaluators.perplexity:build"), options=om.PerplexityOptions, modality=MODALITY,
             summary="Held-out perplexity of a decoder, beside a unigram baseline.")
    register("mlm_accuracy", _lazy("evaluators.mlm_accuracy:build"), options=om.MLMAccuracyOptions,
             modality=MODALITY, summary="Accuracy of an encoder's masked-token predictions on held-out text.")
    register("nsp_accuracy", _lazy("evaluators.nsp_accuracy:build"), options=om.NSPAccuracyOptions,
             modality=MODALITY, summary="Accuracy of an encoder's next-sentence head on held-out pairs.")
    register("sts_spearman", _lazy("evaluators.sts:build"), options=om.STSOptions, modality=MODALITY,
             summary="Spearman correlation of embedding cosine with human similarity ratings.")


@selfsup.hookimpl
def register_commands(cli):
    from selfsup_text.prepare.command import add_command

    add_command(cli)


# name -> summary; the TOML text is recipes/<name>.toml in this package.
RECIPES: dict[str, str] = {
    "clm-quickstart": "A small GPT-2-style decoder on the embedded corpus; perplexity against unigram.",
    "clm-char": "nanoGPT's CPU character-level settings on the embedded corpus.",
    "mlm-quickstart": "A small BERT-style encoder with MLM on the embedded corpus.",
    "nsp-quickstart": "BERT-style MLM + NSP jointly on the embedded corpus.",
    "simcse-quickstart": "Unsupervised SimCSE; STS Spearman on the Lee document ratings.",
}


@selfsup.hookimpl
def register_recipes(register):
    package_recipes(register, "selfsup_text", RECIPES, modality=MODALITY)
