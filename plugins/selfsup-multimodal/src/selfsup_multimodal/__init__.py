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
from selfsup_multimodal.backbones import options as bo
from selfsup_multimodal.data import options as do
from selfsup_multimodal.evaluators import options as eo
from selfsup_multimodal.tasks import options as to

MODALITY = "multimodal"


def _lazy(path: str) -> Callable[[Any, Any], Any]:
    return lazy(f"selfsup_multimodal.{path}")


#: The text side of every paired sample (see selfsup.contract): token ids and the caption itself.
CAPTION = {"input_ids": "int64[T]", "text": "str"}


@selfsup.hookimpl
def register_data_sources(register):
    register("digit_captions", _lazy("data.digit_captions:build_digit_captions"), options=do.DigitCaptionsOptions,
             modality=MODALITY,
             summary="scikit-learn's digits, each with a caption naming it: image-text pairs.",
             produces={"image": "float32[1,{digits.size|8},{digits.size|8}]", "label": "int64[]", **CAPTION},
             decoder=_lazy("data.serving:digit_captions_decoder"))
    register("spoken_words", _lazy("data.spoken_words:build_spoken_words"), options=do.SpokenWordsOptions,
             modality=MODALITY,
             summary="Synthesized spoken keywords with their transcripts: speech-text pairs, held-out voices.",
             produces={"audio": "float32[S]", "label": "int64[]", "speaker": "int64[]", **CAPTION},
             decoder=_lazy("data.serving:spoken_words_decoder"))


@selfsup.hookimpl
def register_backbones(register):
    register("trunk_image", _lazy("backbones.image:build"), options=bo.TrunkImageOptions, modality=MODALITY,
             summary="Patch embedding + [CLS] into a shared BERT trunk's layers (or its own): images -> [N, D].",
             consumes={"image": "float32[{in_channels},{image_size},{image_size}]"})
    register("trunk_audio", _lazy("backbones.audio:build"), options=bo.TrunkAudioOptions, modality=MODALITY,
             summary="Log-mel frames into a shared BERT trunk's layers (or its own): speech backbone for HuBERT, "
                     "probes.",
             consumes={"audio": "float32[S]"})


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("clip", _lazy("tasks.clip:build"), options=to.CLIPOptions, modality=MODALITY,
             summary="CLIP-style InfoNCE both ways between two encoders, learnable temperature.",
             consumes={"input_ids?": "int64[T]"})


@selfsup.hookimpl
def register_evaluators(register):
    register("retrieval", _lazy("evaluators.retrieval:build"), options=eo.RetrievalOptions, modality=MODALITY,
             summary="Cross-modal recall@1/5 in both directions on held-out pairs, chance beside.",
             consumes={"input_ids": "int64[T]", "label?": "int64[]"})


# name -> summary; the TOML text is recipes/<name>.toml in this package.
RECIPES: dict[str, str] = {
    "clip-speech-text": "Spoken keywords <-> transcripts (CLIP); recall@1/5 on held-out voices.",
    "clip-digits-text": "Digit images <-> captions (CLIP); recall@1/5 on held-out digits.",
    "multimodal-quickstart":
        "SimCLR (digits), MLM (text), HuBERT (speech) on one shared BERT trunk; a metric per modality.",
    "multimodal-separate":
        "multimodal-quickstart's tasks on three separate backbones (adapters with their own layers).",
}


@selfsup.hookimpl
def register_recipes(register):
    package_recipes(register, "selfsup_multimodal", RECIPES, modality=MODALITY)
