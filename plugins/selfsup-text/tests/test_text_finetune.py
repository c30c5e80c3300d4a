"""Text fine-tuning end to end: sentence-pair classification from JSONL through the transformer
backbone (token types read) and the classification evaluator."""

from __future__ import annotations

import json

import torch

import selfsup
from selfsup.components import BuildContext

PAIRS = [("a cat sat on the mat", "a cat sat", "entailment"), ("dogs bark", "the sky is green", "contradiction"),
         ("it rains", "the street is wet", "entailment"), ("he sleeps", "he runs a marathon", "contradiction")] * 8


def test_sentence_pair_classification_trains_and_reads_token_types(tmp_path):
    data = tmp_path / "nli.jsonl"
    data.write_text("".join(json.dumps({"p": p, "h": h, "y": y}) + "\n" for p, h, y in PAIRS))
    table = {"path": str(data), "text_field": "p", "text_pair_field": "h", "label_field": "y", "tokenizer": "bytes",
             "split": "all"}
    (tmp_path / "r.toml").write_text(f"""
output_dir = "{tmp_path / 'run'}"
[data.train]
type = "jsonl"
options = {json.dumps(table).replace('": ', '" = ')}
[backbones.enc]
type = "transformer"
options = {{ family = "bert", layers = 2, heads = 2, dim = 32, context = 64, tokenizer = "bytes" }}
[tasks.nli]
type = "finetune"
data = "train"
backbone = "enc"
[evaluators.val]
type = "classification"
data = "train"
options = {{ report = false }}
[train]
lr = 1e-3
batch_size = 8
max_steps = 6
tensorboard = false
""")
    run = selfsup.train(tmp_path / "r.toml")
    assert run.status == "completed" and 0.0 <= run.metrics["val/f1_macro"] <= 1.0
    model = selfsup.load(run)
    source = BuildContext(name="d").build("data", "jsonl", table)
    batch = source.collate([source[0], source[1]])
    flipped = {**batch, "token_type_ids": 1 - batch["token_type_ids"]}
    assert not torch.allclose(model.embed(batch), model.embed(flipped))  # the encoder reads the token types
    assert model.predict([source[0], source[1]]).shape == (2,)
