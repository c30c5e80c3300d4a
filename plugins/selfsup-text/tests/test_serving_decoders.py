"""Serving decoders of the text sources: a served text becomes exactly the sample its data source yields
for that document (tokenizer, specials, max_length, pairs, sentence starts, windows); long texts are cut
or refused (413); bad inputs are refused with BadInput naming the field; building a decoder reads no data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import selfsup_text
from selfsup.components import BadInput, BuildContext, Decoder
from selfsup.plugins import get_plugin_manager
from selfsup_text.data import serving
from selfsup_text.tokenizers import load_tokenizer, save_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TARGETS = {"label", "index", "positive_ids", "negative_ids"}  # training targets: never in a decoded sample
DOCS = [
    "The quick brown fox jumps over the lazy dog. It was not amused! Was it? Yes.",
    "  Leading and trailing spaces stay in JSONL texts.  ",
    "Ünïcödé wörds, émojis \U0001f600 and CJK 漢字 too.",
    "short",
    "A much longer document that goes on and on, " * 12 + "until it ends.",
    "Line one.\nLine two.\n\nA second paragraph.",
]
LABELS = ["pos", "neg", "pos", "neg", "pos", "neg"]


def _context(tmp_path: Path) -> BuildContext:
    return BuildContext(name="x", base_dir=tmp_path)


def _same(sample: dict, expected: dict) -> None:
    """``sample`` is ``expected`` without its training targets, tensor for tensor."""
    assert set(sample) == set(expected) - TARGETS
    for key, value in sample.items():
        assert value.dtype == expected[key].dtype == torch.long, key
        assert torch.equal(value, expected[key]), (key, value, expected[key])


def _jsonl(tmp_path: Path, records: list[dict], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _build(tmp_path: Path, type: str, options: dict):
    context = _context(tmp_path)
    source = context.build("data", type, options)
    decoder = context.decoder(type, options)
    assert isinstance(decoder, Decoder)
    return source, decoder


# ------------------------------------------------------------------ registration


@pytest.mark.parametrize("name", sorted(selfsup_text.DECODERS))
def test_every_text_source_registers_a_lazy_decoder(name):
    component = get_plugin_manager().registry.get("data_source", name)
    assert component.decoder is not None
    assert component.decoder.lazy_target == f"selfsup_text.data.serving:{selfsup_text.DECODERS[name]}"
    assert callable(getattr(serving, selfsup_text.DECODERS[name]))


# ------------------------------------------------------------------ document mode: the source's own samples


@pytest.mark.parametrize("tokenizer", ["bpe-8k", "bytes"])
@pytest.mark.parametrize("settings", [{}, {"max_length": 12}, {"add_special_tokens": False, "max_length": 9}])
def test_jsonl_document_is_the_sources_sample(tmp_path, tokenizer, settings):
    _jsonl(tmp_path, [{"text": t, "label": y} for t, y in zip(DOCS, LABELS)])
    options = {"path": "data.jsonl", "tokenizer": tokenizer, "label_field": "label", **settings}
    source, decoder = _build(tmp_path, "jsonl", options)
    assert decoder.fields == {"text": "text"}
    assert len(source) == len(DOCS)
    decoded = []
    for i, text in enumerate(DOCS):
        sample, stats = decoder({"text": text})
        _same(sample, source[i])
        decoded.append(sample)
        tokens = len(source.tokenizer(text, add_special_tokens=False)["input_ids"])
        assert stats == {"chars": float(len(text)), "tokens": float(tokens),
                         "truncated": float(len(sample["input_ids"]) < tokens + 2 * source.add_special_tokens),
                         "replaced_chars": 0.0}
    # the source's collate batches decoded samples as it batches its own (padding, attention mask)
    mine, theirs = source.collate(decoded), source.collate([source[i] for i in range(len(DOCS))])
    assert set(theirs) - set(mine) == {"label"}
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key


def test_jsonl_sentence_starts_are_the_sources(tmp_path):
    _jsonl(tmp_path, [{"text": t} for t in DOCS])
    options = {"path": "data.jsonl", "tokenizer": "bpe-8k", "sentences": True, "add_special_tokens": False,
               "max_length": 20}
    source, decoder = _build(tmp_path, "jsonl", options)
    for i, text in enumerate(DOCS):
        sample, _ = decoder({"text": text})
        assert "sentence_starts" in sample
        _same(sample, source[i])


def test_supervised_simcse_jsonl_serves_the_anchor_text_only(tmp_path):
    _jsonl(tmp_path, [{"text": t, "pos": t.upper(), "neg": "no"} for t in DOCS])
    options = {"path": "data.jsonl", "tokenizer": "bpe-8k", "positive_field": "pos", "negative_field": "neg",
               "max_length": 16}
    source, decoder = _build(tmp_path, "jsonl", options)
    assert decoder.fields == {"text": "text"}
    for i, text in enumerate(DOCS):
        sample, _ = decoder({"text": text})
        assert set(source[i]) == {"input_ids", "positive_ids", "negative_ids"}
        _same(sample, source[i])


@pytest.mark.parametrize("max_length", [None, 24, 7])
def test_sentence_pairs_are_the_sources(tmp_path, max_length):
    pairs = [(a, b) for a, b in zip(DOCS, reversed(DOCS))] + [("premise", ""), ("x", "a long hypothesis " * 9)]
    _jsonl(tmp_path, [{"text": a, "hypothesis": b, "label": i % 3} for i, (a, b) in enumerate(pairs)])
    options = {"path": "data.jsonl", "tokenizer": "bpe-8k", "text_pair_field": "hypothesis", "label_field": "label",
               "max_length": max_length}
    source, decoder = _build(tmp_path, "jsonl", options)
    assert decoder.fields == {"text": "text", "text_pair": "text"}
    assert len(source) == len(pairs)
    decoded = []
    for i, (a, b) in enumerate(pairs):
        sample, stats = decoder({"text": a, "text_pair": b})
        assert set(sample) == {"input_ids", "token_type_ids"}
        _same(sample, source[i])
        decoded.append(sample)
        assert stats["chars"] == len(a) + len(b)
        cut = max_length is not None and stats["tokens"] + 3 > max_length
        assert stats["truncated"] == float(cut)
        assert len(sample["input_ids"]) == (max_length if cut else stats["tokens"] + 3)
    batch = source.collate(decoded)
    assert batch["token_type_ids"].shape == batch["input_ids"].shape == batch["attention_mask"].shape


def test_embedded_corpus_document_is_the_sources_sample(tmp_path):
    options = {"name": "news", "tokenizer": "bpe-8k", "max_length": 64, "limit": 8}
    source, decoder = _build(tmp_path, "embedded_corpus", options)
    for i, text in enumerate(source.texts):
        sample, stats = decoder({"text": text})
        _same(sample, source[i])
        # the corpus' documents are stripped text: so is a served one
        padded, _ = decoder({"text": "\n  " + text + " \n"})
        _same(padded, source[i])
        assert stats["truncated"] == float(stats["tokens"] + 2 > 64)


def test_embedded_corpus_sentences_for_nsp(tmp_path):
    options = {"name": "news", "tokenizer": "bpe-8k", "sentences": True, "add_special_tokens": False, "limit": 5,
               "max_length": 96}
    source, decoder = _build(tmp_path, "embedded_corpus", options)
    for i, text in enumerate(source.texts):
        sample, _ = decoder({"text": text})
        assert len(sample["sentence_starts"]) >= 1
        _same(sample, source[i])


@pytest.mark.parametrize("which", ["polarity", "newsgroups"])
def test_labelled_text_document_is_the_sources_sample(tmp_path, which):
    options = {"set": which, "tokenizer": "bpe-8k", "split": "val"}  # max_length: 256 by default
    source, decoder = _build(tmp_path, "labelled_text", options)
    assert decoder.max_tokens == 256
    for i, text in enumerate(source.texts[:12]):
        sample, _ = decoder({"text": text})
        assert "label" in source[i]
        _same(sample, source[i])


def test_similarity_pairs_and_texts_samples(tmp_path):
    source, decoder = _build(tmp_path, "similarity_pairs", {"set": "lee", "tokenizer": "bpe-8k", "max_length": 48})
    for i in range(0, len(source), 7):
        sample, _ = decoder({"text": source.texts[i]})
        _same(sample, source[i])
    texts = ["first caption", " second, with spaces ", "third one is longer than the limit by far"]
    source, decoder = _build(tmp_path, "texts", {"texts": texts, "labels": [0, 1, 0], "tokenizer": "bytes",
                                                 "max_length": 16})
    for i, text in enumerate(texts):
        _same(decoder({"text": text})[0], source[i])


def test_text_files_documents_are_stripped_like_the_files(tmp_path):
    (tmp_path / "docs").mkdir()
    lines = ["  first line with spaces  ", "second\tline", "\u00e9t\u00e9 and more words here"]
    (tmp_path / "docs" / "a.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = {"paths": ["docs"], "unit": "line", "tokenizer": "bpe-8k", "max_length": 10}
    source, decoder = _build(tmp_path, "text_files", options)
    for i, line in enumerate(lines):
        _same(decoder({"text": line})[0], source[i])


def test_hf_dataset_document_is_the_sources_sample(tmp_path):
    pytest.importorskip("datasets")
    _jsonl(tmp_path, [{"text": t, "label": y} for t, y in zip(DOCS, LABELS)], "rows.jsonl")
    options = {"builder": "json", "data_files": ["rows.jsonl"], "tokenizer": "bpe-8k", "label_field": "label",
               "max_length": 16}
    source, decoder = _build(tmp_path, "hf_dataset", options)
    for i, text in enumerate(DOCS):
        _same(decoder({"text": text})[0], source[i])


# ------------------------------------------------------------------ window mode and token shards


@pytest.mark.parametrize("window", [8, 64, 400])
def test_window_mode_serves_the_document_as_its_first_window(tmp_path, window):
    filler = ["filler text " * 300]
    for text in DOCS:
        source, decoder = _build(tmp_path, "texts", {"texts": [text, *filler], "tokenizer": "bpe-8k",
                                                    "window": window})
        sample, stats = decoder({"text": text})
        assert set(sample) == {"input_ids", "document_ids"}
        n = int(stats["tokens"])
        assert len(sample["input_ids"]) == min(n + 1, window + 1)
        expected = source[0]  # the stream starts with this document: its tokens, then the separator
        length = len(sample["input_ids"])
        assert torch.equal(sample["input_ids"], expected["input_ids"][:length])
        assert torch.equal(sample["document_ids"], expected["document_ids"][:length])
        assert (sample["document_ids"] == 0).all()
        if n + 1 <= window + 1:
            assert sample["input_ids"][-1] == source.sep_id and stats["truncated"] == 0.0
        else:
            assert stats["truncated"] == 1.0
            with pytest.raises(BadInput) as info:
                decoder({"text": text}, truncate=False)
            assert info.value.status == 413 and info.value.field == "text"
            assert f"{n + 1} tokens, the model takes at most {window + 1}" in info.value.message


def test_window_mode_embedded_corpus_and_collate(tmp_path):
    options = {"name": "news", "tokenizer": "bpe-8k", "window": 32, "limit": 4}
    source, decoder = _build(tmp_path, "embedded_corpus", options)
    sample, stats = decoder({"text": source.texts[0]})
    _same(sample, source[0])  # the first document is longer than a window: exactly the first window
    assert stats["truncated"] == 1.0
    batch = source.collate([sample, decoder({"text": "a short one"})[0]])
    assert batch["input_ids"].shape == (2, 33) and batch["attention_mask"][1].sum() < 33
    assert (batch["document_ids"][1][batch["attention_mask"][1] == 0] == -1).all()


def _write_shards(root: Path, docs: list[str], *, with_data: bool = True) -> np.ndarray:
    tok = load_tokenizer("bytes")
    root.mkdir(parents=True, exist_ok=True)
    ids = [tok(d, add_special_tokens=False)["input_ids"] for d in docs]
    stream = np.concatenate([np.asarray([*x, tok.sep_token_id]) for x in ids]).astype("<u2")
    if with_data:
        stream.tofile(root / "train.bin")
    save_tokenizer(tok, root / "tokenizer")
    (root / "meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": len(tok), "sep_id": tok.sep_token_id,
                                                "tokens": {"train": len(stream)}}))
    return stream


@pytest.mark.parametrize("window", [16, 256])
def test_token_shards_serves_the_documents_stream_tokens(tmp_path, window):
    stream = _write_shards(tmp_path / "shards", DOCS)
    options = {"root": "shards", "window": window, "windows_per_epoch": 4}
    source, decoder = _build(tmp_path, "token_shards", options)
    start = 0
    for text in DOCS:
        sample, stats = decoder({"text": text})
        n = int(stats["tokens"])
        expected = torch.from_numpy(stream[start : start + min(n + 1, window + 1)].astype(np.int64))
        assert torch.equal(sample["input_ids"], expected)
        assert torch.equal(sample["document_ids"], torch.zeros(len(expected), dtype=torch.long))
        start += n + 1
    assert start == len(stream)
    batch = source.collate([decoder({"text": t})[0] for t in DOCS] + [source[0]])
    assert batch["input_ids"].shape[0] == len(DOCS) + 1


def test_token_shards_from_prepare_apply_its_cleaning(tmp_path):
    from selfsup_text.prepare.pipeline import run_pipeline

    (tmp_path / "in").mkdir()
    docs = ["Visit https://example.com for the \ufb01ne PRINT.", "Second   document,\twith   spaces.",
            "Third one: nothing to clean."]
    for i, doc in enumerate(docs):
        (tmp_path / "in" / f"{i}.txt").write_text(doc, encoding="utf-8")
    run_pipeline(["in"], tmp_path / "out", tokenizer="bytes", split="1,0", near_dup_threshold=None,
                 lowercase=True, base_dir=tmp_path)
    tokens = np.fromfile(tmp_path / "out" / "train.bin", dtype="<u2").astype(np.int64).tolist()
    decoder = _context(tmp_path).decoder("token_shards", {"root": "out", "window": 64})
    for doc in docs:
        ids = decoder({"text": doc})[0]["input_ids"].tolist()
        assert ids[-1] == 3 and any(tokens[i : i + len(ids)] == ids for i in range(len(tokens))), doc
    cleaned = bytes(t - 5 for t in decoder({"text": docs[0]})[0]["input_ids"].tolist()[:-1]).decode()
    assert cleaned == "visit for the fine print."
    with pytest.raises(BadInput) as info:
        decoder({"text": "https://only.a/link"})  # nothing left after prepare's cleaning
    assert info.value.status == 422 and info.value.field == "text"


def test_token_shards_from_prepare_with_pii_serve_the_placeholders_training_saw(tmp_path):
    from selfsup_text.prepare.pipeline import run_pipeline

    (tmp_path / "in").mkdir()
    doc = "Write to jane.doe@example.org or call +1 415 555 0134 from 192.168.10.20 today."
    (tmp_path / "in" / "0.txt").write_text(doc, encoding="utf-8")
    run_pipeline(["in"], tmp_path / "out", tokenizer="bytes", split="1,0", near_dup_threshold=None, pii=True,
                 base_dir=tmp_path)
    tokens = np.fromfile(tmp_path / "out" / "train.bin", dtype="<u2").astype(np.int64).tolist()
    trained = bytes(t - 5 for t in tokens[:-1]).decode()
    assert "<EMAIL>" in trained and "<IP>" in trained and "jane.doe" not in trained
    decoder = _context(tmp_path).decoder("token_shards", {"root": "out", "window": 64})
    served = bytes(t - 5 for t in decoder({"text": doc})[0]["input_ids"].tolist()[:-1]).decode()
    assert served == trained


# ------------------------------------------------------------------ limits: cut or refused


def test_truncation_on_and_off(tmp_path):
    long = "word " * 40
    _jsonl(tmp_path, [{"text": long}, {"text": "tiny"}])
    options = {"path": "data.jsonl", "tokenizer": "bytes", "max_length": 8}
    source, decoder = _build(tmp_path, "jsonl", options)
    sample, stats = decoder({"text": long})
    _same(sample, source[0])
    assert len(sample["input_ids"]) == 8 and stats["truncated"] == 1.0 and stats["tokens"] == len(long)
    with pytest.raises(BadInput) as info:
        decoder({"text": long}, truncate=False)
    assert info.value.status == 413 and info.value.field == "text"
    assert info.value.message == (f"{len(long) + 2} tokens, the model takes at most 8; send a shorter text or serve "
                                  "with truncation on")
    sample, stats = decoder({"text": "tiny"}, truncate=False)  # fits: served either way
    _same(sample, source[1])
    assert stats["truncated"] == 0.0
    exact = "abcdef"  # 6 tokens + [CLS] [SEP] = max_length: not cut
    assert decoder({"text": exact}, truncate=False)[1]["truncated"] == 0.0


def test_pair_truncation_refused(tmp_path):
    _jsonl(tmp_path, [{"text": "a b c", "p": "d e f"}])
    decoder = _context(tmp_path).decoder("jsonl", {"path": "data.jsonl", "tokenizer": "bytes",
                                                   "text_pair_field": "p", "max_length": 10})
    with pytest.raises(BadInput) as info:
        decoder({"text": "a b c", "text_pair": "d e f"}, truncate=False)
    assert info.value.status == 413 and "13 tokens, the model takes at most 10" in info.value.message
    assert len(decoder({"text": "ab", "text_pair": "cd"}, truncate=False)[0]["input_ids"]) == 7


@pytest.mark.filterwarnings("ignore:(jsonl|text_files) \\(1 files\\)")
def test_over_long_text_is_the_sources_first_document(tmp_path):
    words = " ".join(f"w{i}" for i in range(200))  # 889 characters
    _jsonl(tmp_path, [{"text": words}])
    options = {"path": "data.jsonl", "tokenizer": "bytes", "max_doc_chars": 300}
    source, decoder = _build(tmp_path, "jsonl", options)
    assert len(source) > 2  # the source cut the text into several documents
    sample, stats = decoder({"text": words})
    _same(sample, source[0])
    assert stats["truncated"] == 1.0 and stats["chars"] == len(words)
    with pytest.raises(BadInput) as info:
        decoder({"text": words}, truncate=False)
    assert info.value.status == 413 and info.value.field == "text" and "max_doc_chars" in info.value.message

    # with pair fields the source truncates each text instead
    _jsonl(tmp_path, [{"text": words, "p": words[::-1]}], "pairs.jsonl")
    options = {"path": "pairs.jsonl", "tokenizer": "bytes", "max_doc_chars": 300, "text_pair_field": "p"}
    source, decoder = _build(tmp_path, "jsonl", options)
    assert len(source) == 1
    _same(decoder({"text": words, "text_pair": words[::-1]})[0], source[0])
    with pytest.raises(BadInput) as info:
        decoder({"text": "short", "text_pair": words}, truncate=False)
    assert info.value.status == 413 and info.value.field == "text_pair"

    # text_files: stripped first, then cut
    (tmp_path / "long.txt").write_text("\n\n  " + words + "  \n", encoding="utf-8")
    options = {"paths": ["long.txt"], "tokenizer": "bytes", "max_doc_chars": 300}
    source, decoder = _build(tmp_path, "text_files", options)
    _same(decoder({"text": "\n\n  " + words + "  \n"})[0], source[0])


def test_limit_from_a_pretrained_tokenizer_when_the_source_has_none(tmp_path):
    folder = save_tokenizer(load_tokenizer("bytes"), tmp_path / "tok")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 16}))
    text = "a fairly long text that will not fit"
    decoder = _context(tmp_path).decoder("texts", {"texts": ["x"], "tokenizer": "tok"})
    assert decoder.max_tokens == 16
    sample, stats = decoder({"text": text})
    assert len(sample["input_ids"]) == 16 and stats["truncated"] == 1.0
    with pytest.raises(BadInput) as info:
        decoder({"text": text}, truncate=False)
    assert info.value.status == 413 and "the model takes at most 16" in info.value.message
    source = _context(tmp_path).build("data", "texts", {"texts": [text], "tokenizer": "tok", "max_length": 16})
    _same(sample, source[0])  # cut as the source cuts at max_length
    # the shipped tokenizers name no limit: none is taken
    unlimited = _context(tmp_path).decoder("texts", {"texts": ["x"], "tokenizer": "bytes"})
    assert unlimited.max_tokens is None
    assert unlimited({"text": "z" * 5000}, truncate=False)[1]["truncated"] == 0.0


# ------------------------------------------------------------------ bad inputs


@pytest.fixture
def pair_decoder(tmp_path):
    return _context(tmp_path).decoder("jsonl", {"path": "missing.jsonl", "tokenizer": "bpe-8k",
                                                "text_pair_field": "p", "max_length": 32})


@pytest.mark.parametrize("raw,field", [
    ({}, "text"),
    ({"text": None}, "text"),
    ({"text": 42}, "text"),
    ({"text": b"bytes"}, "text"),
    ({"text": ["a", "list"]}, "text"),
    ({"text": ""}, "text"),
    ({"text": " \n\t\u3000 "}, "text"),
    ({"other": "field"}, "text"),
    ("a bare string", "text"),
])
@pytest.mark.parametrize("type,options", [
    ("jsonl", {"path": "missing.jsonl"}),
    ("embedded_corpus", {"window": 16}),
    ("labelled_text", {}),
    ("token_shards", {"root": "shards"}),
])
def test_bad_inputs_are_refused_naming_the_field(tmp_path, raw, field, type, options):
    _write_shards(tmp_path / "shards", ["x"], with_data=False)
    decoder = _context(tmp_path).decoder(type, options)
    for truncate in (True, False):
        with pytest.raises(BadInput) as info:
            decoder(raw, truncate=truncate)
        assert info.value.status == 422 and info.value.field == field, info.value


@pytest.mark.parametrize("raw,field", [
    ({"text": "premise"}, "text_pair"),
    ({"text": "premise", "text_pair": None}, "text_pair"),
    ({"text": "premise", "text_pair": 3.5}, "text_pair"),
    ({"text": "", "text_pair": "hypothesis"}, "text"),
    ({"text_pair": "hypothesis"}, "text"),
])
def test_bad_pairs_are_refused_naming_the_field(pair_decoder, raw, field):
    with pytest.raises(BadInput) as info:
        pair_decoder(raw)
    assert info.value.status == 422 and info.value.field == field


def test_empty_second_text_is_served_as_the_source_does(tmp_path, pair_decoder):
    sample, _ = pair_decoder({"text": "premise", "text_pair": ""})
    assert sample["input_ids"][-2:].tolist() == [3, 3] and sample["token_type_ids"][-1] == 1


@pytest.mark.filterwarnings("ignore:(jsonl|text_files) \\(1 files\\)")
def test_lone_surrogates_are_replaced_and_counted_as_the_source_does(tmp_path):
    texts = ["broken \ud800 text", "two \udfff and \ud83d here", "fine"]
    _jsonl(tmp_path, [{"text": t} for t in texts])  # json.dumps writes the lone surrogates as \ud800 escapes
    assert "\\ud800" in (tmp_path / "data.jsonl").read_text()
    source, decoder = _build(tmp_path, "jsonl", {"path": "data.jsonl", "tokenizer": "bpe-8k"})
    for i, (text, replaced) in enumerate(zip(texts, [1, 2, 0])):
        sample, stats = decoder({"text": text})
        _same(sample, source[i])
        assert stats["replaced_chars"] == replaced and stats["chars"] == len(text)
    assert source.bad_files.counts()["invalid_unicode"] == 2
    pair = _context(tmp_path).decoder("jsonl", {"path": "data.jsonl", "text_pair_field": "p", "tokenizer": "bytes"})
    assert pair({"text": "\ud800", "text_pair": "\udc00\udc00"})[1]["replaced_chars"] == 3.0


def test_tokenizer_failures_are_bad_inputs(tmp_path, monkeypatch):
    decoder = _context(tmp_path).decoder("texts", {"texts": ["x"], "tokenizer": "bytes"})

    def boom(texts, *, offsets=False):
        raise RuntimeError("the tokenizer fell over")

    monkeypatch.setattr(decoder.tokenization, "encode", boom)
    with pytest.raises(BadInput) as info:
        decoder({"text": "hello"})
    assert info.value.status == 422 and info.value.field == "text" and "fell over" in info.value.message

    monkeypatch.setattr(decoder.tokenization, "encode", lambda texts, *, offsets=False: ([np.zeros(0, np.int64)],
                                                                                         None))
    with pytest.raises(BadInput) as info:
        decoder({"text": "\u200b"})
    assert info.value.status == 422 and "no token" in info.value.message


# ------------------------------------------------------------------ building reads no data


def test_decoders_are_built_without_the_data(tmp_path, monkeypatch):
    from selfsup_text.data import gensim_data

    def no_data(*args, **kwargs):
        raise AssertionError("a decoder must not read the data set")

    for name in ("corpus_documents", "polarity", "newsgroups", "lee_similarity", "word_pairs", "wiki_articles",
                 "news_documents"):
        monkeypatch.setattr(gensim_data, name, no_data)
    context = _context(tmp_path)
    decoders = {
        "jsonl": context.decoder("jsonl", {"path": "nowhere/data.jsonl", "tokenizer": "bytes"}),
        "text_files": context.decoder("text_files", {"paths": ["nowhere/*.txt", "gone"], "tokenizer": "bytes"}),
        "hf_dataset": context.decoder("hf_dataset", {"path": "no_such_dataset", "tokenizer": "bytes"}),
        "hf_builder": context.decoder("hf_dataset", {"builder": "csv", "data_files": ["none.csv"],
                                                     "tokenizer": "bytes"}),
        "embedded_corpus": context.decoder("embedded_corpus", {"tokenizer": "bytes"}),
        "labelled_text": context.decoder("labelled_text", {"set": "newsgroups", "tokenizer": "bytes"}),
        "similarity_pairs": context.decoder("similarity_pairs", {"set": "simlex999", "tokenizer": "bytes"}),
    }
    _write_shards(tmp_path / "shards", ["only the tokenizer and meta"], with_data=False)
    assert not (tmp_path / "shards" / "train.bin").exists()
    decoders["token_shards"] = context.decoder("token_shards", {"root": "shards", "window": 8})
    for name, decoder in decoders.items():
        sample, stats = decoder({"text": "served text"})
        assert sample["input_ids"].dtype == torch.long and stats["tokens"] == 11.0, name
    # the tokenizer a decoder needs must be there, though
    with pytest.raises((FileNotFoundError, ValueError), match="tokenizer"):
        context.decoder("token_shards", {"root": "no_shards"})
    with pytest.raises((FileNotFoundError, ValueError), match="tokenizer"):
        context.decoder("jsonl", {"path": "x.jsonl", "tokenizer": "no_tokenizer_folder"})
