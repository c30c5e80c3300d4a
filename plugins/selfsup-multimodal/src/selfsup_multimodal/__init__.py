"""selfsup-multimodal: cross-modal contrastive learning and multimodal recipes.

Registers paired data sources (digit images with captions, spoken keywords with transcripts), the
``clip`` task (symmetric InfoNCE between two encoders of different modalities, learnable
temperature), modality input adapters (``trunk_image``: patch embedding, ``trunk_audio``: log-mel
front end) that share the transformer layers of a text BERT backbone (the trunk), the
``retrieval`` evaluator (recall@k both ways on held-out pairs) and recipes that train several
modalities in one run, on one shared trunk or on separate backbones. Components of selfsup-vision, selfsup-text and
selfsup-speech are the encoders. Implementations are imported inside the factories.
"""

from __future__ import annotations

from typing import Any, Callable

import selfsup
from selfsup.registry import lazy, package_recipes
from selfsup_multimodal import options as o

MODALITY = "multimodal"


def _lazy(path: str) -> Callable[[Any, Any], Any]:
    return lazy(f"selfsup_multimodal.{path}")


@selfsup.hookimpl
def register_data_sources(register):
    register("digit_captions", _lazy("pairs:build_digit_captions"), options=o.DigitCaptionsOptions, modality=MODALITY,
             summary="scikit-learn's digits, each with a caption naming it: image-text pairs.")
    register("spoken_words", _lazy("pairs:build_spoken_words"), options=o.SpokenWordsOptions, modality=MODALITY,
             summary="Synthesized spoken keywords with their transcripts: speech-text pairs, held-out voices.")


@selfsup.hookimpl
def register_backbones(register):
    register("trunk_image", _lazy("adapters.image:build"), options=o.TrunkImageOptions, modality=MODALITY,
             summary="Patch embedding + [CLS] into a shared BERT trunk's layers (or its own): images -> [N, D].")
    register("trunk_audio", _lazy("adapters.audio:build"), options=o.TrunkAudioOptions, modality=MODALITY,
             summary="Log-mel frames into a shared BERT trunk's layers (or its own): speech backbone for HuBERT, probes.")


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("clip", _lazy("clip:build"), options=o.CLIPOptions, modality=MODALITY,
             summary="CLIP-style InfoNCE both ways between two encoders, learnable temperature.")


@selfsup.hookimpl
def register_evaluators(register):
    register("retrieval", _lazy("retrieval:build"), options=o.RetrievalOptions, modality=MODALITY,
             summary="Cross-modal recall@1/5 in both directions on held-out pairs, chance beside.")


# name -> summary; the TOML text is recipes/<name>.toml in this package.
RECIPES: dict[str, str] = {
    "clip-speech-text": "Spoken keywords <-> transcripts (CLIP); recall@1/5 on held-out voices.",
    "clip-digits-text": "Digit images <-> captions (CLIP); recall@1/5 on held-out digits.",
    "multimodal-quickstart": "SimCLR (digits), MLM (text), HuBERT (speech) on one shared BERT trunk; a metric per modality.",
    "multimodal-separate": "multimodal-quickstart's tasks on three separate backbones (adapters with their own layers).",
}


@selfsup.hookimpl
def register_recipes(register):
    package_recipes(register, "selfsup_multimodal", RECIPES, modality=MODALITY)
