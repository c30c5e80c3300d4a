"""The ``salient_cloze`` feedback: closed-book and open-book salient-span cloze, knowledge gaps, the
gap curriculum and confidence-filtered self-training (docs/autonomous.md, "The text variant").

After each round, on the feedback's data (the training passages: packed windows or documents):

1. **Questions.** ``questions`` passages are drawn at random (the context's generator); in each, one
   salient span (:mod:`selfsup_text.feedback.salient_spans`: a number, a date or year, a name) is
   drawn among those whose characters are whole tokens. The question is the span's sentence with the
   span taken out: for a decoder (CLM) the tokens before it (the model continues the text), for an
   encoder (MLM) the sentence with the span's tokens replaced by ``[MASK]``. The answer is the
   span's tokens (salient span masking: Guu et al., REALM, ICML 2020).
2. **Closed book** (Roberts, Raffel and Shazeer, How Much Knowledge Can You Pack Into the Parameters
   of a Language Model?, EMNLP 2020): the model answers the question alone. A decoder answers by
   greedy decoding of as many tokens as the answer has; an encoder by the argmax at each mask.
   Correct = exact match of the answer's tokens.
3. **Open book** (Lewis et al., Retrieval-Augmented Generation, NeurIPS 2020): a BM25 index over the
   training passages (:mod:`selfsup_text.feedback.retrieval`) retrieves ``top_k`` passages for the
   question's words; the first is put before the question (``passage [SEP] question``; for an encoder
   ``[CLS] passage [SEP] question [SEP]``, token types 0 then 1). When passage and question do not fit
   the backbone's context, the passage is cut to the window of tokens that shares the most tokens with
   the question (no use of the answer). The retrieved passage is whatever BM25 ranks first: often the
   question's own source, which holds the answer, but never handed over (``recall_at_k`` measures how
   often the source is among the ``top_k``).
4. **Knowledge gaps**: the questions answered wrongly closed-book and rightly open-book: the model can
   read the fact in its sources but has not stored it.
5. **Curriculum** (the next round's sampling weights): passage ``i`` gets ``1 + gap_weight * g_i``, with
   ``g_i`` the number of gap questions taken from it (the passages that hold the answers the model
   could not recall); appended samples get ``appended_weight``; all are scaled to mean 1.
   ``curriculum = false`` keeps the data's weights at 1.
6. **Self-training** (Lee, Pseudo-Label, ICML 2013 workshop; Xie, Luong, Hovy and Le, Self-training
   with Noisy Student improves ImageNet classification, CVPR 2020): the model's confidence in an
   answer is its sequence probability at ``temperature`` (the product over the answer's tokens of
   the softmax probability of the token chosen). A question's own answer is accepted when the
   closed-book and open-book answers agree and both confidences reach ``confidence_threshold``; it
   is never checked against the true span. Each accepted question becomes a training sample: the
   question with the model's answer filled in (``appended_form = "closed"``), the retrieved passage
   followed by it (``"open"``, the open-book phase), or both.
7. **Open-book training** (``reading``; REALM's pretraining objective, Guu et al. 2020, with BM25 as the
   retriever): up to ``reading`` further questions are drawn each round, and each becomes a sample
   made of the data alone: the passage BM25 retrieves for it, then the question's sentence with the
   span the corpus holds (the ``"open"`` form with the true span instead of the model's answer). No
   label is involved: the span is part of the training text. With ``reading_counterfactual``, that
   share of them has its span swapped, in the passage and in the sentence alike, for the span of
   another reading question of the same kind (Longpre et al., Entity-Based Knowledge Conflicts in
   Question Answering, EMNLP 2021, swap entities to make a reader rely on its context): a fact the
   model may have memorised then gives the wrong answer, and copying from the passage the right
   one. Without ``reading`` the model is asked open-book questions but never trained to read a
   passage before a question, and a decoder trained on isolated documents does not
   (docs/autonomous.md).
8. **Metrics** (``feedback/<name>``): ``questions``, ``recall_at_k``, ``closed_accuracy``,
   ``open_accuracy``, ``gaps`` and ``gap_share``, ``agreement``, ``accepted``, ``appended``,
   ``accepted_correct`` (the share of accepted answers that equal the true span: measured with the
   truth, never used for training; absent when nothing was accepted), ``wrong_but_confident`` (the
   closed-book answers that are wrong with a confidence at or above the threshold: where self-training
   without verification goes wrong) and its share, ``closed_confidence``, ``closed_ece`` (expected
   calibration error of the closed-book confidences, 10 bins), ``reading`` (open-book training samples
   appended, counted in ``appended`` too), ``spans_unaligned`` (salient spans skipped because their
   characters are not whole tokens) and ``segments_unaligned``.

Every question, the answers, confidences and retrieved passages go to ``<run>/rounds/<r>/cloze.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from selfsup.components import BuildContext, FeedbackContext, FeedbackResult
from selfsup_text.data.base import encode, sentence_char_starts
from selfsup_text.feedback.options import SalientClozeOptions
from selfsup_text.feedback.retrieval import BM25Index
from selfsup_text.feedback.salient_spans import find_spans
from selfsup_text.tokenizers import plain_backend

# ------------------------------------------------------------------------------------------ passages


@dataclass
class Segment:
    """A run of non-special tokens of a sample: its ``ids``, their decoded ``text`` and each token's
    character end in it (``ends``; None when re-encoding the text does not give the ids back)."""

    ids: list[int]
    text: str
    ends: np.ndarray | None


def segments(ids: Sequence[int], tokenizer: Any) -> list[Segment]:
    """The sample's token ids split at special tokens, each run decoded and aligned to characters."""
    special = set(tokenizer.all_special_ids)
    runs: list[list[int]] = [[]]
    for token in ids:
        if int(token) in special:
            runs.append([])
        else:
            runs[-1].append(int(token))
    backend = plain_backend(tokenizer)
    out = []
    for run in runs:
        if not run:
            continue
        text = backend.decode(run, skip_special_tokens=False)
        again, ends = encode(tokenizer, [text], offsets=True)
        out.append(Segment(run, text, ends[0] if list(again[0]) == run else None))
    return out


def passage_text(ids: Sequence[int], tokenizer: Any) -> str:
    """A sample's text for the index: its non-special tokens decoded, runs joined by a space."""
    special = set(tokenizer.all_special_ids)
    keep = [int(t) for t in ids if int(t) not in special]
    return plain_backend(tokenizer).decode(keep, skip_special_tokens=False)


def replace_run(ids: list[int], old: list[int], new: list[int]) -> list[int]:
    """``ids`` with every occurrence of the run ``old`` replaced by ``new`` (left to right, no overlaps)."""
    out, i, n = [], 0, len(old)
    while i < len(ids):
        if n and ids[i:i + n] == old:
            out += new
            i += n
        else:
            out.append(ids[i])
            i += 1
    return out


# ------------------------------------------------------------------------------------------ questions


@dataclass
class Question:
    """A cloze question from passage ``passage``: ``left`` + ``answer`` + ``right`` is the span's
    sentence (cut to ``max_question_tokens`` around the span); ``query`` the text BM25 searches."""

    passage: int
    kind: str
    left: list[int]
    answer: list[int]
    right: list[int]
    query: str
    span: str
    results: dict[str, Any] = field(default_factory=dict)


def questions_of(sample: int, parts: list[Segment], tokenizer: Any, o: SalientClozeOptions,
                 decoder: bool) -> tuple[list[Question], int]:
    """Every question passage ``sample`` can give, and the number of salient spans skipped because
    their characters are not whole tokens."""
    backend = plain_backend(tokenizer)
    found, unaligned = [], 0
    for part in parts:
        if part.ends is None:
            continue
        ends = part.ends
        starts = np.concatenate([[0], ends[:-1]])
        sentences = np.asarray(sentence_char_starts(part.text), dtype=np.int64)
        for span in find_spans(part.text, o.kinds):
            inside = np.nonzero((starts < span.end) & (ends > span.start))[0]
            first, last = int(inside[0]), int(inside[-1])
            if part.text[starts[first]:span.start].strip() or int(ends[last]) != span.end:
                unaligned += 1
                continue
            answer = part.ids[first:last + 1]
            if len(answer) > o.max_answer_tokens:
                continue
            s0 = int(sentences[sentences <= span.start].max())
            later = sentences[sentences > span.start]
            s1 = int(later.min()) if later.size else len(part.text)
            lo = int(np.searchsorted(ends, s0, side="right"))  # first token ending after the sentence start
            hi = int(np.searchsorted(starts, s1, side="left"))  # tokens starting before the sentence end
            left, right = part.ids[lo:first][-o.max_question_tokens:], part.ids[last + 1:hi]
            if not decoder:
                right = right[:max(0, o.max_question_tokens - len(left))]
            if len(left) + (0 if decoder else len(right)) < o.min_question_tokens:
                continue
            words = left if decoder else left + right
            query = backend.decode(left, skip_special_tokens=False)
            if not decoder:
                query += " " + backend.decode(right, skip_special_tokens=False)
            if not words:
                continue
            found.append(Question(sample, span.kind, left, answer, right, query, span.text))
    return found, unaligned


def focus(passage: list[int], question: list[int], budget: int, tail: int = 0) -> list[int]:
    """The ``budget`` consecutive tokens of ``passage`` holding the most tokens of ``question`` (the
    first such window), or the passage when it fits.

    ``tail`` > 0 is for a decoder's question, whose answer comes right after its last token: the
    window of ``budget - tail`` tokens holding the most question tokens (the last such window) is kept
    with the ``tail`` tokens that follow it. Without it, the best window is the question's own text in
    the passage, which ends just before the answer, so the open book would hide the answer."""
    if budget <= 0:
        return []
    if len(passage) <= budget:
        return list(passage)
    tail = max(0, min(tail, budget - 1))
    width = budget - tail
    words = set(question)
    hits = np.cumsum([0] + [int(t in words) for t in passage])
    counts = hits[width:] - hits[:-width]  # [len - width + 1]
    start = len(counts) - 1 - int(np.argmax(counts[::-1])) if tail else int(np.argmax(counts))
    start = min(start, len(passage) - budget)
    return list(passage[start:start + budget])


# ------------------------------------------------------------------------------------------ scoring


def _device(backbone: Any) -> torch.device:
    return next(backbone.parameters()).device


def clm_greedy(backbone: Any, contexts: Sequence[Sequence[int]], lengths: Sequence[int], *,
               temperature: float = 1.0, batch_size: int = 64) -> tuple[list[list[int]], torch.Tensor]:
    """A decoder's greedy answers: ``lengths[i]`` tokens after ``contexts[i]``, and each answer's
    log-probability ``[B]`` (float64, the sum over its tokens of log softmax(logits / temperature) at
    the chosen token). Batched with right padding: a causal model never attends to the padding
    after a position, so the padding changes nothing."""
    device, pad = _device(backbone), int(backbone.tokenizer.pad_token_id)
    answers: list[list[int]] = []
    logps = []
    for start in range(0, len(contexts), batch_size):
        ctx, want = contexts[start:start + batch_size], list(lengths[start:start + batch_size])
        b, lens = len(ctx), torch.tensor([len(c) for c in ctx])
        if int(lens.min()) < 1:
            raise ValueError("a decoder's question needs at least one token")
        width = int((lens + torch.tensor(want)).max())
        buf = torch.full((b, width), pad, dtype=torch.long)
        for i, c in enumerate(ctx):
            buf[i, :len(c)] = torch.as_tensor(list(c), dtype=torch.long)
        buf = buf.to(device)
        logp = torch.zeros(b, dtype=torch.float64)
        out = [[] for _ in range(b)]
        rows = torch.arange(b, device=device)
        for s in range(max(want)):
            upto = min(int((lens + s).max()), width)
            part = buf[:, :upto]
            hidden = backbone.hidden_states(part, torch.ones_like(part))  # [b, upto, D]
            pos = (lens + s - 1).clamp(max=upto - 1).to(device)  # rows already answered: any position
            logits = backbone.lm_logits(hidden[rows, pos]).float() / temperature  # [b, V]
            lp = logits.log_softmax(-1)
            token = lp.argmax(-1)  # [b]
            for i in range(b):
                if s < want[i]:
                    buf[i, int(lens[i]) + s] = token[i]
                    out[i].append(int(token[i]))
                    logp[i] += float(lp[i, token[i]])
        answers += out
        logps.append(logp)
    return answers, torch.cat(logps) if logps else torch.zeros(0, dtype=torch.float64)


def clm_logprob(backbone: Any, contexts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], *,
                temperature: float = 1.0, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced ``(log p(answer | context) [B] float64, greedy [B] bool)``: ``greedy`` is whether
    every answer token is the argmax given the context and the answer's earlier tokens, which is
    exactly when greedy decoding produces the answer."""
    device, pad = _device(backbone), int(backbone.tokenizer.pad_token_id)
    logps, greedy = [], []
    for start in range(0, len(contexts), batch_size):
        ctx, ans = contexts[start:start + batch_size], answers[start:start + batch_size]
        full = [list(c) + list(a) for c, a in zip(ctx, ans)]
        width = max(len(f) for f in full)
        buf = torch.full((len(full), width), pad, dtype=torch.long)
        for i, f in enumerate(full):
            buf[i, :len(f)] = torch.as_tensor(f, dtype=torch.long)
        buf = buf.to(device)
        lp = (backbone.lm_logits(backbone.hidden_states(buf, torch.ones_like(buf))).float()
              / temperature).log_softmax(-1)  # [b, T, V]
        for i, (c, a) in enumerate(zip(ctx, ans)):
            pos = torch.arange(len(c) - 1, len(c) + len(a) - 1, device=device)
            gold = torch.as_tensor(list(a), dtype=torch.long, device=device)
            rows = lp[i, pos]  # [A, V]
            logps.append(float(rows.gather(1, gold[:, None]).sum()))
            greedy.append(bool((rows.argmax(-1) == gold).all()))
    return torch.tensor(logps, dtype=torch.float64), torch.tensor(greedy, dtype=torch.bool)


def mlm_fill(backbone: Any, inputs: Sequence[Sequence[int]], types: Sequence[Sequence[int]] | None,
             masks: Sequence[Sequence[int]], *, temperature: float = 1.0,
             batch_size: int = 64) -> tuple[list[list[int]], torch.Tensor]:
    """An encoder's answers at the ``masks`` positions of ``inputs`` (the argmax at each mask) and each
    answer's log-probability ``[B]`` (float64: the sum over the masks of log softmax(logits /
    temperature) at the argmax). ``types``: token type ids per input (None: all 0)."""
    device, pad = _device(backbone), int(backbone.tokenizer.pad_token_id)
    answers, logps = [], []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        width = max(len(x) for x in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        real = torch.zeros((len(chunk), width), dtype=torch.long)
        tt = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, x in enumerate(chunk):
            ids[i, :len(x)] = torch.as_tensor(list(x), dtype=torch.long)
            real[i, :len(x)] = 1
            if types is not None:
                tt[i, :len(x)] = torch.as_tensor(list(types[start + i]), dtype=torch.long)
        hidden = backbone.hidden_states(ids.to(device), real.to(device), tt.to(device))  # [b, T, D]
        for i in range(len(chunk)):
            pos = torch.as_tensor(list(masks[start + i]), dtype=torch.long, device=device)
            lp = (backbone.lm_logits(hidden[i, pos]).float() / temperature).log_softmax(-1)  # [A, V]
            best = lp.argmax(-1)
            answers.append([int(t) for t in best])
            logps.append(float(lp.gather(1, best[:, None]).sum()))
    return answers, torch.tensor(logps, dtype=torch.float64)


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 10) -> float:
    """ECE: the mean over equal-width confidence bins of |accuracy - mean confidence|, weighted by
    the bins' shares (Guo, Pleiss, Sun and Weinberger, On Calibration of Modern Neural Networks, ICML 2017)."""
    if confidence.numel() == 0:
        return 0.0
    which = (confidence.double() * bins).long().clamp(0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if bool(inside.any()):
            total += float(inside.double().mean()) * abs(float(correct[inside].double().mean())
                                                         - float(confidence[inside].double().mean()))
    return total


# ------------------------------------------------------------------------------------------ the feedback


class SalientCloze:
    """The ``salient_cloze`` feedback component (see the module docstring)."""

    def __init__(self, options: SalientClozeOptions):
        self.options = options
        self._index: tuple[int, int, BM25Index, list[str]] | None = None  # (id(data), len(data), index, texts)

    # ------------------------------------------------------------------ pieces

    def index(self, data: Any, tokenizer: Any) -> tuple[BM25Index, list[str]]:
        """The BM25 index over the data's samples (built once per data source)."""
        if self._index is None or self._index[0] != id(data) or self._index[1] != len(data):
            texts = [passage_text(data[i]["input_ids"].tolist(), tokenizer) for i in range(len(data))]
            self._index = (id(data), len(data), BM25Index(texts, k1=self.options.k1, b=self.options.b), texts)
        return self._index[2], self._index[3]

    def ask(self, data: Any, tokenizer: Any, generator: torch.Generator, decoder: bool,
            count: int | None = None) -> tuple[list[Question], dict[str, float]]:
        """``count`` (default ``questions``) questions from passages drawn at random, one span each."""
        o = self.options
        count = o.questions if count is None else count
        chosen: list[Question] = []
        unaligned = unaligned_segments = 0
        for sample in torch.randperm(len(data), generator=generator).tolist():
            if len(chosen) >= count:
                break
            parts = segments(data[sample]["input_ids"].tolist(), tokenizer)
            unaligned_segments += sum(p.ends is None for p in parts)
            found, skipped = questions_of(sample, parts, tokenizer, o, decoder)
            unaligned += skipped
            if found:
                chosen.append(found[int(torch.randint(len(found), (1,), generator=generator))])
        return chosen, {"spans_unaligned": float(unaligned), "segments_unaligned": float(unaligned_segments)}

    def answer(self, backbone: Any, questions: list[Question], passages: list[list[int] | None],
               batch_size: int) -> tuple[list[list[int]], torch.Tensor]:
        """The model's answers to ``questions`` and their confidences ``[Q]``; ``passages[i]`` (token
        ids) is put before question ``i`` (open book) or None (closed book)."""
        tok, t = backbone.tokenizer, self.options.temperature
        limit = backbone.max_positions
        if backbone.is_decoder:
            contexts = []
            for q, p in zip(questions, passages):
                if p is None:
                    contexts.append(q.left)
                else:
                    budget = limit - len(q.left) - len(q.answer) - 1
                    contexts.append(focus(p, q.left, budget, tail=self.options.max_answer_tokens)
                                    + [int(tok.sep_token_id)] + q.left)
            answers, logp = clm_greedy(backbone, contexts, [len(q.answer) for q in questions], temperature=t,
                                       batch_size=batch_size)
            return answers, logp.exp()
        cls, sep, mask = int(tok.cls_token_id), int(tok.sep_token_id), int(tok.mask_token_id)
        inputs, types, masks = [], [], []
        for q, p in zip(questions, passages):
            question = q.left + [mask] * len(q.answer) + q.right
            if p is None:
                ids, first = [cls, *question, sep], 1
            else:
                kept = focus(p, q.left + q.right, limit - len(question) - 3)
                ids, first = [cls, *kept, sep, *question, sep], len(kept) + 2
            inputs.append(ids)
            types.append([0] * first + [1] * (len(ids) - first) if p is not None else [0] * len(ids))
            masks.append(list(range(first + len(q.left), first + len(q.left) + len(q.answer))))
        answers, logp = mlm_fill(backbone, inputs, types, masks, temperature=t, batch_size=batch_size)
        return answers, logp.exp()

    @staticmethod
    def sample_like(data: Any, ids: list[int]) -> dict[str, Any]:
        """An appended sample holding ``ids``, with the data's sample keys."""
        reference = data[0]
        keys = set(reference) - {"index"}
        extra = keys - {"input_ids", "document_ids"}
        if extra:
            raise ValueError(f"self-training samples cannot be made for data whose samples carry {sorted(extra)}; "
                             f"set self_training = false (and reading = 0) or use a source without them")
        sample: dict[str, Any] = {"input_ids": torch.tensor(ids, dtype=torch.long)}
        if "document_ids" in keys:
            sample["document_ids"] = torch.zeros(len(ids), dtype=torch.long)  # one document
        return sample

    def forms(self, backbone: Any, q: Question, own: list[int], passage: list[int]) -> list[list[int]]:
        """The token ids of the samples an accepted question becomes (``appended_form``)."""
        tok = backbone.tokenizer
        decoder, limit = backbone.is_decoder, backbone.max_positions + (1 if backbone.is_decoder else 0)
        sep = int(tok.sep_token_id)
        filled = q.left + own + q.right
        wrap = (lambda x: x) if decoder else (lambda x: [int(tok.cls_token_id), *x, sep])
        out = []
        if self.options.appended_form in ("closed", "both"):
            out.append(wrap(filled + ([sep] if decoder else []))[:limit])
        if self.options.appended_form in ("open", "both"):
            out.append(self.open_form(backbone, q, own, passage))
        return [ids for ids in out if len(ids) >= 2]

    def open_form(self, backbone: Any, q: Question, answer: list[int], passage: list[int]) -> list[int]:
        """``passage [SEP] sentence [SEP]`` (``[CLS]`` first for an encoder), the sentence being the
        question with ``answer`` filled in, the passage cut to what fits (:func:`focus`)."""
        tok, decoder = backbone.tokenizer, backbone.is_decoder
        limit = backbone.max_positions + (1 if decoder else 0)
        sep = int(tok.sep_token_id)
        filled = q.left + answer + q.right
        budget = limit - len(filled) - (2 if decoder else 3)
        kept = (focus(passage, q.left, budget, tail=self.options.max_answer_tokens) if decoder
                else focus(passage, q.left + q.right, budget))
        ids = [*kept, sep, *filled, sep] if decoder else [int(tok.cls_token_id), *kept, sep, *filled, sep]
        return ids[:limit]

    # ------------------------------------------------------------------ run

    def run(self, context: FeedbackContext) -> FeedbackResult:
        o, backbone, data = self.options, context.backbone, context.data
        tok, decoder = backbone.tokenizer, bool(getattr(backbone, "is_decoder", False))
        if getattr(backbone, "family", None) not in ("gpt2", "llama", "bert"):
            raise ValueError("salient_cloze needs a transformer backbone (a decoder for CLM, bert for MLM)")
        if not decoder and tok.mask_token_id is None:
            raise ValueError("salient_cloze: the encoder's tokenizer has no mask token")
        if o.self_training or o.reading:
            self.sample_like(data, [0, 0])  # fails now, not after the answers, on data it cannot extend
        index, _ = self.index(data, tok)
        questions, metrics = self.ask(data, tok, context.generator, decoder)
        if not questions:
            raise ValueError(f"no salient span of the kinds {o.kinds} could be asked in the {len(data)} passages "
                             f"(with min_question_tokens = {o.min_question_tokens}, max_answer_tokens = "
                             f"{o.max_answer_tokens})")
        found, _ = index.search([q.query for q in questions], o.top_k)  # [Q, k]
        top = [data[int(row[0])]["input_ids"].tolist() for row in found]
        special = set(tok.all_special_ids)
        top = [[t for t in ids if t not in special] for ids in top]
        batch = max(1, int(context.batch_size))
        closed, closed_conf = self.answer(backbone, questions, [None] * len(questions), batch)
        opened, open_conf = self.answer(backbone, questions, top, batch)

        gold = [q.answer for q in questions]
        closed_ok = torch.tensor([a == g for a, g in zip(closed, gold)])
        open_ok = torch.tensor([a == g for a, g in zip(opened, gold)])
        agree = torch.tensor([a == b for a, b in zip(closed, opened)])
        t = o.confidence_threshold
        accepted = agree & (closed_conf >= t) & (open_conf >= t)
        gaps = ~closed_ok & open_ok
        wrong_confident = ~closed_ok & (closed_conf >= t)

        samples: list[dict[str, Any]] = []
        if o.self_training:
            for i in torch.nonzero(accepted).flatten().tolist():
                for ids in self.forms(backbone, questions[i], closed[i], top[i]):
                    samples.append(self.sample_like(data, ids))
        reading = self.reading_samples(data, index, context.generator, backbone) if o.reading else []
        samples += reading
        n = len(data)
        weights = torch.ones(n + len(samples), dtype=torch.float64)
        if o.curriculum:
            for i in torch.nonzero(gaps).flatten().tolist():
                weights[questions[i].passage] += o.gap_weight
        weights[n:] = o.appended_weight
        weights = weights * weights.numel() / weights.sum()

        q = float(len(questions))
        metrics.update(
            questions=q,
            recall_at_k=float(np.mean([q_.passage in row.tolist() for q_, row in zip(questions, found)])),
            closed_accuracy=float(closed_ok.double().mean()), open_accuracy=float(open_ok.double().mean()),
            gaps=float(gaps.sum()), gap_share=float(gaps.double().mean()), agreement=float(agree.double().mean()),
            accepted=float(accepted.sum()), appended=float(len(samples)), reading=float(len(reading)),
            wrong_but_confident=float(wrong_confident.sum()),
            wrong_but_confident_share=float(wrong_confident.double().mean()),
            closed_confidence=float(closed_conf.mean()), open_confidence=float(open_conf.mean()),
            closed_ece=expected_calibration_error(closed_conf, closed_ok),
        )
        if int(accepted.sum()):
            metrics["accepted_correct"] = float(closed_ok[accepted].double().mean())
        self._write(context, questions, found, closed, opened, closed_conf, open_conf, gaps, accepted, tok)
        return FeedbackResult(weights=weights, samples=samples, metrics=metrics)

    def reading_samples(self, data: Any, index: BM25Index, generator: torch.Generator,
                        backbone: Any) -> list[dict[str, Any]]:
        """Open-book training samples (``reading``): fresh questions, each after its BM25 top-1 passage
        with the corpus's own span filled in."""
        tok = backbone.tokenizer
        practice, _ = self.ask(data, tok, generator, bool(backbone.is_decoder), count=self.options.reading)
        if not practice:
            return []
        found, _ = index.search([q.query for q in practice], 1)  # [R, 1]
        special = set(tok.all_special_ids)
        swap = torch.rand(len(practice), generator=generator) < self.options.reading_counterfactual  # [R]
        out = []
        for i, (q, row) in enumerate(zip(practice, found)):
            passage = [t for t in data[int(row[0])]["input_ids"].tolist() if t not in special]
            answer = q.answer
            if swap[i]:
                others = [p.answer for p in practice if p.kind == q.kind and p.answer != q.answer]
                if others:
                    answer = others[int(torch.randint(len(others), (1,), generator=generator))]
                    passage = replace_run(passage, q.answer, answer)
            out.append(self.sample_like(data, self.open_form(backbone, q, answer, passage)))
        return out

    @staticmethod
    def _write(context: FeedbackContext, questions: list[Question], found: np.ndarray, closed: list[list[int]],
               opened: list[list[int]], closed_conf: torch.Tensor, open_conf: torch.Tensor, gaps: torch.Tensor,
               accepted: torch.Tensor, tok: Any) -> None:
        """Every question and what the model answered to ``<out_dir>/cloze.jsonl``."""
        if context.out_dir is None:
            return
        backend = plain_backend(tok)
        with open(context.out_dir / "cloze.jsonl", "w", encoding="utf-8") as fh:
            for i, q in enumerate(questions):
                fh.write(json.dumps({
                    "passage": q.passage, "kind": q.kind, "query": q.query, "answer": q.span,
                    "answer_ids": q.answer, "closed_ids": closed[i], "open_ids": opened[i],
                    "closed": backend.decode(closed[i], skip_special_tokens=False),
                    "open": backend.decode(opened[i], skip_special_tokens=False),
                    "closed_confidence": round(float(closed_conf[i]), 6),
                    "open_confidence": round(float(open_conf[i]), 6), "retrieved": found[i].tolist(),
                    "gap": bool(gaps[i]), "accepted": bool(accepted[i]),
                }) + "\n")


def build(options: SalientClozeOptions, context: BuildContext) -> SalientCloze:
    return SalientCloze(options)
