"""The whole audit: load the model, run the methods that fit it, return one JSON-ready dict.

``run_audit(path, options)`` -> ``{"model", "options", "crows", "seat", "skipped", "pairs"}``:

* ``crows``: one row per attribute and measure (:mod:`.likelihood`): stereotype preference (share
  of pairs whose stereotypical sentence scores higher; 0.5 = none) and mean difference (nats), each
  with its bootstrap interval over templates, and ``group_preference``: the share of pairs where the
  first group's sentence (e.g. male) scores higher, whatever the template's stereotype;
* ``seat``: one row per WEAT test (:mod:`.weat`): effect size with its bootstrap interval, one- and
  two-sided permutation p-values;
* ``skipped``: each method or attribute that could not be measured and why (an encoder without an
  LM head has no likelihood test; an attribute without templates or tests);
* ``pairs``: every sentence pair with its scores, for later analysis (bench/cda_bias.py pairs two
  models' differences on the same templates).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from selfsup_text.audit.options import AuditOptions


def run_audit(path: str | Path, options: AuditOptions, *, model: Any = None) -> dict[str, Any]:
    """Audit the model at ``path`` (a run, a ``selfsup`` export or a transformers folder; or ``model``,
    an already loaded :class:`~selfsup_text.audit.models.AuditModel`)."""
    from selfsup_text.audit.models import load_audit_model
    from selfsup_text.audit.templates import load_sets

    sets = load_sets(options.extra)
    unknown = sorted(set(options.attributes) - set(sets.known_attributes()))
    if unknown:
        raise ValueError(f"unknown attributes {unknown} (known: {', '.join(sets.known_attributes())}; an --extra file "
                         "can define more)")
    started = time.perf_counter()
    if model is None:
        model = load_audit_model(path, device=options.device)
    result: dict[str, Any] = {
        "model": {"source": model.source, "kind": model.kind, "family": model.family,
                  "parameters": int(sum(p.numel() for p in model.model.parameters()))},
        "options": options.model_dump(mode="json"), "crows": [], "seat": [], "skipped": [], "pairs": [],
    }
    methods = ("crows", "seat") if options.method == "all" else (options.method,)
    if "crows" in methods:
        if model.kind == "encoder":
            if options.method == "crows":
                raise ValueError(f"{model.source}: the likelihood test needs an LM head, and this encoder has none "
                                 "(use --method seat)")
            result["skipped"].append({"method": "crows", "reason": "the model has no LM head (an encoder)"})
        else:
            _crows(model, sets, options, result)
    if "seat" in methods:
        _seat(model, sets, options, result)
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _crows(model: Any, sets: Any, options: AuditOptions, result: dict[str, Any]) -> None:
    from selfsup_text.audit.likelihood import differences, preference, score_pairs, summarize
    from selfsup_text.audit.templates import sentence_pairs

    for attribute in options.attributes:
        pairs = sentence_pairs(sets, [attribute])
        if not pairs:
            result["skipped"].append({"method": "crows", "attribute": attribute,
                                      "reason": "no templates for this attribute"})
            continue
        scores = score_pairs(model, pairs, decoder_prefix=options.decoder_prefix, batch_size=options.batch_size)
        templates = np.array([p.template for p in pairs])
        groups = sets.attributes[attribute].groups
        for measure, values in scores.items():
            diffs = differences(values, pairs)
            row = {"attribute": attribute, "measure": measure, "groups": list(groups),
                   **summarize(diffs, templates, bootstrap=options.bootstrap, seed=options.seed,
                               confidence=options.confidence),
                   "group_preference": preference(values[:, 0] - values[:, 1])}
            for side in (0, 1):  # the templates that lean towards each group
                picked = np.array([p.stereotype == side for p in pairs])
                row[f"stereotype_preference_{groups[side]}_templates"] = preference(diffs[picked]) \
                    if picked.any() else None
            result["crows"].append(row)
        for n, p in enumerate(pairs):
            result["pairs"].append({"attribute": attribute, "template": p.template, "words": list(p.words),
                                    "sentences": list(p.sentences), "stereotype": groups[p.stereotype],
                                    "scores": {m: [float(v) for v in s[n]] for m, s in scores.items()}})


def _seat(model: Any, sets: Any, options: AuditOptions, result: dict[str, Any]) -> None:
    from selfsup_text.audit.templates import seat_sentences
    from selfsup_text.audit.weat import weat

    pooling = model.pooling if options.pooling == "auto" else options.pooling
    tests = [t for t in sets.tests.values() if t.attribute in options.attributes]
    for attribute in options.attributes:
        if not any(t.attribute == attribute for t in tests):
            result["skipped"].append({"method": "seat", "attribute": attribute,
                                      "reason": "no WEAT tests for this attribute"})
    for test in tests:
        embeddings, owners, examples = {}, {}, {}
        for key in "XYAB":
            kind = test.kinds["targets"] if key in "XY" else test.kinds["attributes"]
            sentences, owner = seat_sentences(sets, test.sets[key], kind)
            embeddings[key] = model.embed(sentences, pooling=pooling, batch_size=options.batch_size).numpy()
            owners[key], examples[key] = owner, sentences[:2]
        row = weat(embeddings["X"], embeddings["Y"], embeddings["A"], embeddings["B"], owners=owners,
                   bootstrap=options.bootstrap, seed=options.seed, confidence=options.confidence,
                   permutations=options.permutations, exact_limit=options.exact_limit)
        result["seat"].append({"test": test.name, "title": test.title, "attribute": test.attribute,
                               "sets": test.set_names, "pooling": pooling, "examples": examples, **row})
