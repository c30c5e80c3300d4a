"""``same_document``: nearest-neighbour retrieval of held-out windows by document. Windows that cross a
document boundary are dropped, documents are capped and split into bank (even) and queries (odd), features
that identify the document score 1, and the TF-IDF baseline is the same rule on token counts."""

from __future__ import annotations

import pytest
import torch

from selfsup.components import BuildContext, EvalContext
from selfsup.testing import EvaluatorConformance, registry_with
from selfsup_text.evaluators.same_document import bank_and_queries, document_windows, nearest_accuracy, tfidf

WINDOWS = ("embedded_corpus", {"tokenizer": "bytes", "name": "news", "window": 32, "split": "val", "limit": 6})
TINY_BERT = {"tokenizer": "bytes", "family": "bert", "layers": 2, "heads": 2, "dim": 32, "context": 96}


def _build(kind: str, name: str, options: dict, **context):
    return registry_with(None).get(kind, name).build(options, BuildContext(name=name, **context))


class TestSameDocumentConformance(EvaluatorConformance):
    evaluator = "same_document"
    evaluator_options = {"max_windows": 4}
    data = WINDOWS
    backbone = ("transformer", TINY_BERT)
    bad_options = [{"max_windows": 1}]


def test_windows_stay_inside_one_document_and_are_capped():
    source = _build("data_source", *WINDOWS)
    windows, labels = document_windows(source, max_windows=3)
    assert all(w.shape == (32,) for w in windows)
    assert labels.bincount().min() >= 2 and labels.bincount().max() <= 3
    stream = torch.cat([source[i]["input_ids"][:-1] for i in range(len(source))])  # the inputs tile the stream
    starts = {tuple(stream[i : i + 32].tolist()) for i in range(0, len(stream) - 31, 32)}
    assert all(tuple(w.tolist()) in starts for w in windows)
    sep = source.sep_id
    assert not any((w[:-1] == sep).any() for w in windows), "a separator inside a window: it crosses documents"
    uncapped, _ = document_windows(source, max_windows=1000)
    assert len(uncapped) > len(windows)


def test_bank_and_queries_alternate_within_each_document():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    bank, queries = bank_and_queries(labels)
    assert bank.tolist() == [0, 2, 3, 5, 7] and queries.tolist() == [1, 4, 6, 8]


def test_nearest_accuracy_and_tfidf():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    bank, queries = bank_and_queries(labels)
    assert nearest_accuracy(torch.nn.functional.one_hot(labels).float(), labels, bank, queries) == 1.0
    swapped = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 2, 0])).float()  # each query looks like the next
    assert nearest_accuracy(swapped, labels, bank, queries) == 0.0
    windows = [torch.tensor(x) for x in ([1, 2, 3], [1, 2, 4], [5, 6, 1], [5, 6, 6], [7, 1, 1], [7, 8, 1])]
    rows = tfidf(windows, bank, vocab_size=9)
    assert rows.shape == (6, 9) and rows[:, 0].eq(0).all()
    assert rows[3, 6] > rows[2, 6] > 0  # counted twice in window 3
    assert rows[0, 1] < rows[0, 2]  # token 1 is in every bank window: the lowest idf
    assert nearest_accuracy(rows, labels, bank, queries) == 1.0


def test_document_mode_data_is_refused_naming_the_evaluator():
    backbone = _build("backbone", "transformer", TINY_BERT)
    docs = _build("data_source", "embedded_corpus", {"tokenizer": "bytes", "name": "news", "limit": 4})
    with pytest.raises(ValueError, match="evaluator 'sd' .*window"):
        registry_with(None).get("evaluator", "same_document").build({}, BuildContext(name="sd", backbone=backbone,
                                                                                     data=docs))


def test_too_short_documents_are_reported(tmp_path):
    source = _build("data_source", "embedded_corpus", {"tokenizer": "bytes", "name": "news", "window": 4000,
                                                       "split": "val", "limit": 6})
    backbone = _build("backbone", "transformer", TINY_BERT)
    evaluator = registry_with(None).get("evaluator", "same_document").build({}, BuildContext(name="sd"))
    context = EvalContext(name="sd", step=0, seed=0, device=torch.device("cpu"), backbone=backbone, data=source,
                          fit_data=None, run_dir=tmp_path, batch_size=8, features=None)
    with pytest.raises(ValueError, match="no document .* two whole windows"):
        evaluator.evaluate(context)
