"""Next-sentence prediction (the ``nsp`` task), optionally jointly with MLM as in BERT.

Devlin, Chang, Lee and Toutanova, BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding, NAACL 2019 (https://arxiv.org/abs/1810.04805), section 3.1 "Task #2" and appendix A.2.

Pairs are built in ``collate`` from whole documents (samples with ``sentence_starts``, from a source
with ``sentences = true`` and ``add_special_tokens = false``). For a document with sentences
s_0 .. s_{n-1} and a token budget of ``max_length - 3``:

* segment A = the sentences s_f .. s_{a-1} from a uniformly drawn first sentence f (0 <= f <= n - 2, so
  that a next sentence exists; BERT's data generation likewise takes segments from anywhere in a
  document, not only its start), as many as fit in half the budget (at least one, at most up to
  s_{n-2}). Fixed leading segments would give each document the same pair in every epoch, which a
  small model memorises instead of learning coherence;
* with probability ``next_probability`` (and when n >= 2), B = the following sentences s_a, ...
  (label 0 = IsNext); otherwise B = the sentences of another document of the task's data source,
  drawn uniformly, from a uniformly drawn sentence on (label 1 = NotNext). Single-sentence documents
  always give NotNext (as in BERT's data generation);
* if A + B exceed the budget, the longer segment is shortened one token at a time (A from its
  front, B from its end, so an IsNext B still starts right after A's last token);
* encoding ``[CLS] A [SEP] B [SEP]`` with ``token_type_ids`` 0 for ``[CLS] A [SEP]`` and 1 for
  ``B [SEP]``, then padding to the longest pair of the batch.

With ``mlm = true`` the pairs are also masked (:func:`selfsup_text.tasks.mlm.mask_tokens`; special tokens
and padding are never selected) and the loss is ``nsp + mlm_weight * mlm``, BERT's joint objective.

Randomness: every draw comes from one ``torch.Generator`` per batch seeded from the run seed, the
task's name and the batch's sample ``index`` values (:func:`selfsup_text.tasks.common.batch_generator`), so a
resumed run rebuilds the same pairs and masks for the same batch.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup_text.tasks.common import batch_generator, check_data, require_encoder
from selfsup_text.tasks.mlm import mask_batch, mlm_loss, word_start_table

IS_NEXT, NOT_NEXT = 0, 1


def sentences_of(input_ids: torch.Tensor, sentence_starts: torch.Tensor | None) -> list[torch.Tensor]:
    """Split a document ``[L]`` at its sentence starts into non-empty sentences."""
    n = int(input_ids.shape[0])
    given = sentence_starts.tolist() if sentence_starts is not None else []
    starts = sorted({int(s) for s in given if 0 < int(s) < n})
    bounds = [0, *starts, n]
    return [input_ids[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _fit(la: int, lb: int, budget: int) -> tuple[int, int]:
    """BERT's truncation of a pair (the longer segment loses a token until the pair fits; ties
    shorten B), in closed form."""
    if la + lb <= budget:
        return la, lb
    half_up, half_down = (budget + 1) // 2, budget // 2
    if la <= half_up:
        return la, budget - la
    if lb <= half_down:
        return budget - lb, lb
    return half_up, half_down


def make_pair(
    document: dict[str, Any],
    other: Callable[[torch.Generator], dict[str, Any]],
    generator: torch.Generator,
    *,
    max_length: int,
    next_probability: float,
    cls_id: int,
    sep_id: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(input_ids [L], token_type_ids [L], label)`` for one document; ``other(generator)`` returns
    a random other document (a sample with ``input_ids`` and ``sentence_starts``)."""
    budget = max_length - 3
    sentences = sentences_of(torch.as_tensor(document["input_ids"]), document.get("sentence_starts"))
    if not sentences:
        raise ValueError("nsp: a document has no tokens")
    first = int(torch.randint(max(len(sentences) - 1, 1), (), generator=generator))
    a, len_a = first + 1, len(sentences[first])
    while a < len(sentences) - 1 and len_a + len(sentences[a]) <= budget // 2:
        len_a += len(sentences[a])
        a += 1
    seg_a = torch.cat(sentences[first:a])
    draw = float(torch.rand((), generator=generator))
    if len(sentences) >= 2 and draw < next_probability:
        label, seg_b = IS_NEXT, torch.cat(sentences[a:])
    else:
        picked = other(generator)
        other_sentences = sentences_of(torch.as_tensor(picked["input_ids"]), picked.get("sentence_starts"))
        start = int(torch.randint(len(other_sentences), (), generator=generator))
        label, seg_b = NOT_NEXT, torch.cat(other_sentences[start:])
    la, lb = _fit(len(seg_a), len(seg_b), budget)
    seg_a, seg_b = seg_a[len(seg_a) - la :], seg_b[:lb]
    cls, sep = torch.tensor([cls_id]), torch.tensor([sep_id])
    ids = torch.cat([cls, seg_a.long(), sep, seg_b.long(), sep])  # [la + lb + 3]
    types = torch.cat([torch.zeros(la + 2, dtype=torch.long), torch.ones(lb + 1, dtype=torch.long)])
    return ids, types, label


def pad_pairs(pairs: list[tuple[torch.Tensor, torch.Tensor, int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad pairs to the longest: ``input_ids, token_type_ids, attention_mask [B, T]``, ``nsp_label [B]``."""
    t = max(len(ids) for ids, _, _ in pairs)
    b = len(pairs)
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((b, t), dtype=torch.long)
    attention_mask = torch.zeros((b, t), dtype=torch.long)
    for row, (ids, types, _) in enumerate(pairs):
        input_ids[row, : len(ids)] = ids
        token_type_ids[row, : len(ids)] = types
        attention_mask[row, : len(ids)] = 1
    label = torch.tensor([lab for _, _, lab in pairs], dtype=torch.long)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
            "nsp_label": label}


def other_document_picker(data: Any, index: int | None) -> Callable[[torch.Generator], dict[str, Any]]:
    """Draw a document of ``data`` uniformly among those other than ``index``."""
    n = len(data)

    def pick(generator: torch.Generator) -> dict[str, Any]:
        if index is None or not 0 <= index < n:
            return data[int(torch.randint(n, (), generator=generator))]
        j = int(torch.randint(n - 1, (), generator=generator))
        return data[j + (j >= index)]

    return pick


def make_pairs(samples: list[dict[str, Any]], data: Any, generator: torch.Generator, *, max_length: int,
               next_probability: float, tokenizer: Any) -> dict[str, torch.Tensor]:
    """A padded batch of NSP pairs, one per sample (document)."""
    pairs = [
        make_pair(
            s, other_document_picker(data, int(s["index"]) if "index" in s else None), generator,
            max_length=max_length, next_probability=next_probability,
            cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id,
        )
        for s in samples
    ]
    return pad_pairs(pairs, tokenizer.pad_token_id)


def nsp_loss(backbone: Any, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, correct [B] bool)`` of BERT's NSP head; hidden [B, T, D], labels [B]."""
    logits = backbone.nsp_logits(hidden)  # [B, 2]
    with torch.autocast(logits.device.type, enabled=False):
        loss = F.cross_entropy(logits.float(), labels)
    return loss, logits.argmax(dim=-1) == labels


class NSP(nn.Module):
    """The NSP task (and, with ``mlm``, BERT's joint MLM + NSP objective)."""

    def __init__(self, options: Any, backbone: Any, data: Any, seed: int, name: str):
        super().__init__()
        self.options, self.data, self.seed, self.name = options, data, seed, name
        self.tokenizer = backbone.tokenizer
        self.vocab_size = len(backbone.tokenizer)  # random replacements: real token ids only

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        generator = batch_generator(self.seed, self.name, samples)
        o = self.options
        batch = make_pairs(samples, self.data, generator, max_length=o.max_length, next_probability=o.next_probability,
                           tokenizer=self.tokenizer)
        if o.mlm:
            batch = mask_batch(batch, self.tokenizer, o, generator, self.vocab_size)
        return batch

    def forward(self, batch: dict[str, Any], backbone: Any) -> TaskOutput:
        hidden = backbone.hidden_states(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        loss, correct = nsp_loss(backbone, hidden, batch["nsp_label"])
        metrics: dict[str, Any] = {"nsp_loss": loss.detach(), "nsp_accuracy": correct.float().mean().detach()}
        if self.options.mlm:
            m_loss, m_correct, m_count = mlm_loss(backbone, hidden, batch["mlm_labels"])
            metrics.update(mlm_loss=m_loss.detach(), mlm_accuracy=(m_correct.float() / m_count.clamp(min=1)).detach())
            loss = loss + self.options.mlm_weight * m_loss
        return TaskOutput(loss=loss, metrics=metrics)


def check_sentence_source(backbone: Any, data: Any, who: str, max_length: int) -> None:
    """The source must be map-style with >= 2 documents carrying ``sentence_starts`` and no specials."""
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ValueError(f"{who} needs a map-style data source (NotNext segments are drawn from other documents)")
    if len(data) < 2:
        raise ValueError(f"{who} needs at least 2 documents, the data source has {len(data)}")
    sample = data[0]
    if "sentence_starts" not in sample:
        raise ValueError(f"{who} needs samples with 'sentence_starts': set `sentences = true` on the data source")
    ids = torch.as_tensor(sample["input_ids"])
    tok = backbone.tokenizer
    if len(ids) and (int(ids[0]) == tok.cls_token_id or int(ids[-1]) == tok.sep_token_id):
        raise ValueError(f"{who} builds its own [CLS] A [SEP] B [SEP]: set `add_special_tokens = false` on the data "
                         f"source")
    if max_length > backbone.max_positions:
        raise ValueError(f"{who}: max_length {max_length} exceeds the backbone's context {backbone.max_positions}")


def build(options: Any, context: BuildContext) -> NSP:
    who = f"nsp task {context.name!r}"
    require_encoder(context.backbone, who)
    check_data(context.backbone, context.data, who)
    check_sentence_source(context.backbone, context.data, who, options.max_length)
    if options.mlm and options.masking != "token":
        word_start_table(context.backbone.tokenizer)
    return NSP(options, context.backbone, context.data, context.seed, context.name)
