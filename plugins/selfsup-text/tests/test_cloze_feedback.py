"""The ``salient_cloze`` feedback: salient spans of real corpus sentences, BM25 recall of the source
passage, the cloze scorers against log-probabilities computed by hand, the gap / self-training /
curriculum rules, and a run in rounds that writes them."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from selfsup.components import BuildContext, FeedbackContext
from selfsup_text.backbones.options import TransformerOptions
from selfsup_text.backbones.transformer import build as build_backbone
from selfsup_text.data.corpus import build as build_corpus
from selfsup_text.data.gensim_data import news_documents
from selfsup_text.data.options import EmbeddedCorpusOptions
from selfsup_text.feedback.cloze import SalientCloze, clm_greedy, clm_logprob, focus, mlm_fill, replace_run
from selfsup_text.feedback.options import SalientClozeOptions
from selfsup_text.feedback.salient_spans import find_spans

TINY = {"layers": 1, "heads": 2, "dim": 32, "context": 64, "dropout": 0.0}


def _backbone(family: str, tokenizer: str = "bytes"):
    torch.manual_seed(0)
    return build_backbone(TransformerOptions(family=family, tokenizer=tokenizer, **TINY), BuildContext(name="b")).eval()


def _news(window: int, limit: int | None = None):
    options = EmbeddedCorpusOptions(name="news", tokenizer="bpe-8k", window=window, split="train", limit=limit)
    return build_corpus(options, BuildContext(name="d"))


def _context(backbone, data, out: Path | None = None, seed: int = 0) -> FeedbackContext:
    return FeedbackContext(name="rounds.feedback", round=0, rounds=2, step=0, seed=seed, device=torch.device("cpu"),
                           backbone=backbone, tasks={}, data=data, batch_size=16,
                           generator=torch.Generator().manual_seed(seed), run_dir=out or Path("."), out_dir=out,
                           features=None, batches=None)


# ------------------------------------------------------------------------------------------ spans


def test_spans_of_real_news_sentences():
    doc = news_documents()[0]  # the Hill Top bushfire report of the Lee corpus
    spans = {(s.kind, s.text) for s in find_spans(doc)}
    for expected in [("name", "Hill Top"), ("name", "Goulburn"), ("name", "Sydney"), ("name", "Hume Highway"),
                     ("name", "Blue Mountains"), ("number", "500"), ("name", "Mittagong")]:
        assert expected in spans, expected
    texts = {s.text for s in find_spans(doc)}
    # sentence-initial capitals are not names: "Hundreds of people ...", "A new blaze ...", "An estimated 500 ..."
    assert not any(t.startswith(("Hundreds", "A new", "An estimated", "At about")) for t in texts), texts
    assert "4" not in texts and "00" not in texts  # "4:00pm" is a time, not a number
    second = {(s.kind, s.text) for s in find_spans(news_documents()[1])}
    assert ("date", "December 13") in second and ("number", "50") in second
    assert not any(t == "Indian" for _, t in second)  # "Indian security forces ..." opens the document
    made_up = find_spans("In 1998 the University of Sydney paid 2,500 dollars on 12 March 2001. Then Howard left.")
    assert [(s.kind, s.text) for s in made_up] == [("date", "1998"), ("name", "University of Sydney"),
                                                   ("number", "2,500"), ("date", "12 March 2001")]


# ------------------------------------------------------------------------------------------ retrieval


def test_bm25_finds_the_source_passage_of_100_questions():
    data = _news(window=64)
    cloze = SalientCloze(SalientClozeOptions(questions=100))
    backbone = _backbone("gpt2", "bpe-8k")
    index, texts = cloze.index(data, backbone.tokenizer)
    questions, _ = cloze.ask(data, backbone.tokenizer, torch.Generator().manual_seed(0), decoder=True)
    assert len(questions) == 100 and len({q.passage for q in questions}) == 100
    found, _ = index.search([q.query for q in questions], 5)
    recall = sum(q.passage in row.tolist() for q, row in zip(questions, found)) / len(questions)
    chance = 5 / len(data)  # about 0.004 for the 1,161 windows
    assert recall >= 0.8, recall  # measured 0.97
    top1 = sum(q.passage == int(row[0]) for q, row in zip(questions, found)) / len(questions)
    assert top1 >= 0.6 and top1 > 50 * chance, top1


def test_focus_keeps_the_window_sharing_most_question_tokens():
    passage = [1, 2, 3, 9, 9, 8, 4, 5]
    assert focus(passage, [9, 8], 3) == [9, 9, 8]  # 3 hits beats 2
    assert focus(passage, [7], 20) == passage and focus(passage, [7], 0) == []


def test_focus_with_a_tail_keeps_what_follows_a_decoder_question():
    # the question [3, 4, 5, 6] is followed by its answer [70, 71] in the passage
    passage = [1, 2, 3, 4, 5, 6, 70, 71, 8, 9, 10, 11]
    assert focus(passage, [3, 4, 5, 6], 4) == [3, 4, 5, 6]  # without a tail the answer is cut off
    kept = focus(passage, [3, 4, 5, 6], 5, tail=2)
    assert kept == [4, 5, 6, 70, 71]  # the last best 3-token window [4, 5, 6], then 2 more
    assert focus(passage, [3, 4, 5, 6], 12, tail=2) == passage
    assert focus(passage, [10, 11], 4, tail=3) == [8, 9, 10, 11]  # clipped at the passage's end


# ------------------------------------------------------------------------------------------ scorers


def _manual_clm_logprob(backbone, context, answer):
    ids = torch.tensor([list(context) + list(answer)])
    logits = backbone.model(input_ids=ids).logits[0].double().log_softmax(-1)  # [T, V]
    return sum(float(logits[len(context) - 1 + j, a]) for j, a in enumerate(answer))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_clm_scores_match_hand_computed_logprobs(family):
    backbone = _backbone(family)
    g = torch.Generator().manual_seed(1)
    contexts = [torch.randint(5, 261, (n,), generator=g).tolist() for n in (5, 11, 3)]
    with torch.no_grad():
        greedy, logp = clm_greedy(backbone, contexts, [3, 1, 4], batch_size=2)
        assert [len(a) for a in greedy] == [3, 1, 4]
        for c, a, lp in zip(contexts, greedy, logp):
            assert float(lp) == pytest.approx(_manual_clm_logprob(backbone, c, a), abs=1e-4)
            # greedy: each token is the argmax after the context and the answer so far
            full = backbone.model(input_ids=torch.tensor([c + a])).logits[0]
            assert full[len(c) - 1:len(c) + len(a) - 1].argmax(-1).tolist() == a
        other = [[(t + 1) % 250 + 5 for t in a] for a in greedy]
        teacher, is_greedy = clm_logprob(backbone, contexts, greedy, batch_size=2)
        assert torch.allclose(teacher, logp, atol=1e-4) and bool(is_greedy.all())
        teacher, is_greedy = clm_logprob(backbone, contexts, other)
        for c, a, lp in zip(contexts, other, teacher):
            assert float(lp) == pytest.approx(_manual_clm_logprob(backbone, c, a), abs=1e-4)
        assert not bool(is_greedy.any())


def test_mlm_scores_match_hand_computed_logprobs():
    backbone = _backbone("bert")
    mask = backbone.tokenizer.mask_token_id
    inputs = [[2, 40, 41, mask, mask, 42, 3], [2, 50, mask, 3, 60, 61, 3, 3]]
    types = [[0] * 7, [0, 0, 0, 0, 1, 1, 1, 1]]
    masks = [[3, 4], [2]]
    with torch.no_grad():
        answers, logp = mlm_fill(backbone, inputs, types, masks, batch_size=1)
        for ids, tt, pos, ans, lp in zip(inputs, types, masks, answers, logp):
            out = backbone.model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([tt]))
            rows = out.prediction_logits[0, pos].double().log_softmax(-1)  # [A, V]
            assert rows.argmax(-1).tolist() == ans
            assert float(lp) == pytest.approx(float(rows.max(-1).values.sum()), abs=1e-4)


# ------------------------------------------------------------------------------------------ rules


class Scripted(SalientCloze):
    """Answers by a script instead of a model: question i is right closed-book when i % 2 == 0, right
    open-book when i % 3 != 1, with confidence 0.9 when i % 5 != 0 else 0.2; wrong answers are the
    gold answer's tokens shifted by one (the same wrong answer in both books)."""

    def answer(self, backbone, questions, passages, batch_size):
        closed = passages[0] is None
        out, conf = [], []
        for i, q in enumerate(questions):
            right = i % 2 == 0 if closed else i % 3 != 1
            out.append(list(q.answer) if right else [t + 1 for t in q.answer])
            conf.append(0.9 if i % 5 else 0.2)
        return out, torch.tensor(conf, dtype=torch.float64)


@pytest.mark.parametrize("form", ["closed", "open", "both"])
def test_gaps_weights_and_self_training_follow_the_rules(tmp_path, form):
    data = _news(window=32, limit=30)
    backbone = _backbone("gpt2", "bpe-8k")
    options = SalientClozeOptions(questions=40, gap_weight=3.0, appended_weight=0.5, confidence_threshold=0.5,
                                  appended_form=form)
    result = Scripted(options).run(_context(backbone, data, tmp_path))
    rows = [json.loads(line) for line in (tmp_path / "cloze.jsonl").read_text().splitlines()]
    q = len(rows)
    assert q == result.metrics["questions"] and q >= 20
    idx = range(q)
    closed_ok = [i % 2 == 0 for i in idx]
    open_ok = [i % 3 != 1 for i in idx]
    gaps = [not c and o for c, o in zip(closed_ok, open_ok)]
    assert [r["gap"] for r in rows] == gaps  # exactly closed-book wrong and open-book right
    assert [r["gap"] for r in rows] == [r["closed_ids"] != r["answer_ids"] and r["open_ids"] == r["answer_ids"]
                                        for r in rows]
    agree = [c == o for c, o in zip(closed_ok, open_ok)]  # both right, or the same wrong answer
    accepted = [a and i % 5 != 0 for i, a in enumerate(agree)]
    assert [r["accepted"] for r in rows] == accepted
    m = result.metrics
    assert m["gaps"] == sum(gaps) and m["accepted"] == sum(accepted)
    assert m["closed_accuracy"] == pytest.approx(sum(closed_ok) / q)
    assert m["open_accuracy"] == pytest.approx(sum(open_ok) / q)
    wrong_accepted = [a and not c for a, c in zip(accepted, closed_ok)]
    assert m["accepted_correct"] == pytest.approx(1 - sum(wrong_accepted) / sum(accepted))
    assert m["wrong_but_confident"] == sum(not c and i % 5 != 0 for i, c in enumerate(closed_ok))
    per = {"closed": 1, "open": 1, "both": 2}[form]
    assert len(result.samples) == per * sum(accepted) and m["appended"] == len(result.samples)
    for sample in result.samples:  # the data's keys; one document
        assert set(sample) == {"input_ids", "document_ids"} and not sample["document_ids"].any()
        assert len(sample["input_ids"]) <= backbone.max_positions + 1
    # the model's own (possibly wrong) answer is what is filled in, never the truth
    own = [r for r in rows if r["accepted"]]
    first = result.samples[0]["input_ids"].tolist()
    closed_ids = own[0]["closed_ids"]
    assert any(first[j:j + len(closed_ids)] == closed_ids for j in range(len(first)))
    # the curriculum: 1 + gap_weight per gap asked from the passage, appended at appended_weight, mean 1
    n = len(data)
    expected = torch.ones(n + len(result.samples), dtype=torch.float64)
    for r in rows:
        if r["gap"]:
            expected[r["passage"]] += 3.0
    expected[n:] = 0.5
    expected *= expected.numel() / expected.sum()
    assert torch.allclose(result.weights, expected)


def test_reading_appends_retrieved_passages_before_the_corpus_own_sentences(tmp_path):
    """Open-book training samples: ``passage [SEP] sentence [SEP]``, the sentence as the corpus has it
    (span included, whatever the model answered), at most ``reading`` of them, weighted as appended."""
    data = _news(window=32, limit=30)
    backbone = _backbone("gpt2", "bpe-8k")
    sep = backbone.tokenizer.sep_token_id
    options = SalientClozeOptions(questions=20, reading=12, self_training=False, appended_weight=0.5,
                                  curriculum=False)
    result = Scripted(options).run(_context(backbone, data, tmp_path))
    assert 6 <= len(result.samples) <= 12 and result.metrics["reading"] == len(result.samples)
    windows = [data[i]["input_ids"].tolist() for i in range(len(data))]
    for sample in result.samples:
        ids = sample["input_ids"].tolist()
        assert ids[-1] == sep and ids.count(sep) == 2 and len(ids) <= backbone.max_positions + 1
        cut = ids.index(sep)
        passage, sentence = ids[:cut], ids[cut + 1:-1]
        assert len(passage) > 0 and len(sentence) >= options.min_question_tokens
        assert any(w[j:j + len(sentence)] == sentence for w in windows for j in range(len(w)))  # the corpus's text
        assert any(passage[0] in w for w in windows)
    n = len(data)
    expected = torch.ones(n + len(result.samples), dtype=torch.float64)
    expected[n:] = 0.5
    assert torch.allclose(result.weights, expected * expected.numel() / expected.sum())
    none = Scripted(SalientClozeOptions(questions=20, self_training=False)).run(_context(backbone, data, tmp_path))
    assert none.samples == [] and none.metrics["reading"] == 0


def test_replace_run_swaps_every_occurrence():
    assert replace_run([1, 2, 3, 1, 2, 1], [1, 2], [9]) == [9, 3, 9, 1]
    assert replace_run([1, 1, 1], [1, 1], [7, 7, 7]) == [7, 7, 7, 1]
    assert replace_run([4, 5], [6], [1]) == [4, 5]


def test_counterfactual_reading_swaps_the_span_in_passage_and_sentence(tmp_path):
    """reading_counterfactual = 1: every sample's span is another reading question's span of the same
    kind, in the sentence and wherever the original stood in the passage, so the sentence is in no
    training window while the passage still shows the (swapped) answer for the model to copy."""
    data = _news(window=32, limit=30)
    backbone = _backbone("gpt2", "bpe-8k")
    sep = backbone.tokenizer.sep_token_id
    options = SalientClozeOptions(questions=20, reading=12, self_training=False, reading_counterfactual=1.0)
    result = Scripted(options).run(_context(backbone, data, tmp_path))
    windows = [data[i]["input_ids"].tolist() for i in range(len(data))]
    swapped = copied = 0
    for sample in result.samples:
        ids = sample["input_ids"].tolist()
        cut = ids.index(sep)
        passage, sentence = ids[:cut], ids[cut + 1:-1]
        in_corpus = any(w[j:j + len(sentence)] == sentence for w in windows for j in range(len(w)))
        swapped += not in_corpus
        # the passage repeats the sentence up to the span: what follows it there is the swapped answer
        copied += any(passage[j:j + len(sentence)] == sentence for j in range(len(passage)))
    assert swapped >= len(result.samples) - 2 and copied >= len(result.samples) // 2, (swapped, copied)


# ------------------------------------------------------------------------------------------ in rounds

PLUGIN = """
import selfsup
from selfsup.registry import lazy
from selfsup_text.feedback.options import SalientClozeOptions


@selfsup.hookimpl
def register_feedback(register):
    register("salient_cloze_test", lazy("selfsup_text.feedback.cloze:build"), options=SalientClozeOptions,
             consumes={"input_ids": "int64[T]"}, summary="salient_cloze, registered by the test")
"""

RECIPE = """
seed = 0
output_dir = "{out}"

[data.train]
type = "embedded_corpus"
options = {{ name = "news", tokenizer = "bpe-8k", window = 32, split = "train", limit = 40 }}

[backbones.decoder]
type = "transformer"
options = {{ family = "gpt2", tokenizer = "bpe-8k", layers = 1, heads = 2, dim = 32, context = 64, dropout = 0.0 }}

[tasks.clm]
type = "clm"
data = "train"
backbone = "decoder"

[rounds]
count = 2

[rounds.feedback]
type = "salient_cloze_test"
data = "train"
options = {{ questions = 24, confidence_threshold = 0.0, gap_weight = 4.0 }}

[train]
lr = 3e-3
batch_size = 8
max_steps = 6
log_every = 2
tensorboard = false
"""


def test_a_run_in_rounds_writes_the_feedback(tmp_path):
    import selfsup

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "cloze_test_plugin.py").write_text(textwrap.dedent(PLUGIN))
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(out=tmp_path / "run"))
    run = selfsup.train(recipe, plugins_dir=plugins)
    assert run.status == "completed", run.status
    folder = Path(run.path) / "rounds" / "0"
    meta = json.loads((folder / "feedback.json").read_text())
    metrics = meta["metrics"]
    for key in ("questions", "recall_at_k", "closed_accuracy", "open_accuracy", "gaps", "accepted",
                "wrong_but_confident", "closed_ece"):
        assert key in metrics, key
    assert metrics["questions"] == 24 and metrics["recall_at_k"] >= 0.5
    payload = torch.load(folder / "feedback.pt", weights_only=True)
    rows = [json.loads(line) for line in (folder / "cloze.jsonl").read_text().splitlines()]
    # with threshold 0, accepted = the closed-book and open-book answers agree; two samples each
    assert [r["accepted"] for r in rows] == [r["closed_ids"] == r["open_ids"] for r in rows]
    assert len(payload["samples"]) == 2 * sum(r["accepted"] for r in rows) == meta["appended"]
    expected = torch.ones(meta["samples"], dtype=torch.float64)
    for r in rows:
        expected[r["passage"]] += 4.0 * r["gap"]
    expected *= expected.numel() / expected.sum()
    assert torch.allclose(payload["weights"], expected)
    records = [json.loads(line) for line in (Path(run.path) / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in records if r.get("kind") == "round"]
    assert len(rounds) == 1 and rounds[0]["feedback/questions"] == 24


def test_an_encoder_answers_at_the_masks_and_appends_wrapped_samples(tmp_path):
    data = _news(window=31, limit=20)
    backbone = _backbone("bert", "bpe-8k")
    tok = backbone.tokenizer
    options = SalientClozeOptions(questions=12, confidence_threshold=0.0, appended_form="both")
    with torch.no_grad():
        result = SalientCloze(options).run(_context(backbone, data, tmp_path))
    rows = [json.loads(line) for line in (tmp_path / "cloze.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(len(r["closed_ids"]) == len(r["answer_ids"]) for r in rows)
    assert [r["accepted"] for r in rows] == [r["closed_ids"] == r["open_ids"] for r in rows]
    assert len(result.samples) == 2 * sum(r["accepted"] for r in rows)
    for sample in result.samples:
        ids = sample["input_ids"].tolist()
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and len(ids) <= backbone.max_positions
        assert tok.mask_token_id not in ids  # the model's answer is filled in


def test_data_whose_samples_it_cannot_extend_is_refused_before_answering(tmp_path):
    class Labelled:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"input_ids": torch.tensor([2, 40, 41, 3]), "label": 1}

    with pytest.raises(ValueError, match=r"carry \['label'\]; set self_training = false"):
        SalientCloze(SalientClozeOptions()).run(_context(_backbone("gpt2"), Labelled(), tmp_path))
