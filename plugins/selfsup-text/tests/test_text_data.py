"""Text sources from user files (text_files, jsonl, hf_dataset), the shared windowing/split logic, collate."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

import selfsup_text
from selfsup.components import BuildContext
from selfsup.testing import DataSourceConformance
from selfsup_text.data import options as od
from selfsup_text.data.collate import pad_collate

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DOCS = [
    "The first document. It has two sentences.",
    "Second document here! With an exclamation.\n\nAnd a second paragraph.",
    "Third: short.",
    "Fourth document, the longest of them all, goes on for a while to fill a window or two of bytes.",
]


def _make_corpus() -> Path:
    root = Path(tempfile.mkdtemp(prefix="selfsup_text_data_"))
    (root / "docs" / "sub").mkdir(parents=True)
    for i, doc in enumerate(DOCS):
        (root / "docs" / ("sub" if i % 2 else "") / f"d{i}.txt").write_text(doc, encoding="utf-8")
    (root / "docs" / "ignored.bin").write_bytes(b"\x00\x01")
    with open(root / "data.jsonl", "w") as f:
        for i, doc in enumerate(DOCS * 5):
            f.write(json.dumps({"text": doc, "label": ["neg", "pos"][i % 2], "pos": doc.upper(), "neg": "x"}) + "\n")
    with open(root / "other.jsonl", "w") as f:  # the options check's `path` variant
        for i, doc in enumerate(reversed(DOCS * 5)):
            f.write(json.dumps({"text": doc, "label": ["neg", "pos"][i % 2], "pos": doc.lower()}) + "\n")
    return root


ROOT = _make_corpus()


def _build(options_cls, module, **options):
    opts = options_cls.model_validate(options, context={"base_dir": ROOT})
    return module.build(opts, BuildContext(name="data", base_dir=ROOT))


#: The options check (selfsup.testing): variants that show an option's effect on the suites' small data,
#: and the options that cannot change it.
TEXT_VARIANTS = {"limit": 1, "min_tokens": 30}
TEXT_INERT = {
    "on_error": "every file of the suite is readable",
    "max_doc_chars": "the suite's documents are shorter than its smallest allowed value (100 characters)",
}


class TestTextFilesConformance(DataSourceConformance):
    plugins = [selfsup_text]
    data = ("text_files", {"paths": [str(ROOT / "docs")], "tokenizer": "bytes", "split": "train", "val_fraction": 0.5})
    bad_options = [{"paths": []}, {"paths": ["x"], "unit": "sentence"}, {"paths": ["x"], "window": 0},
                   {"paths": ["x"], "window": 8, "sentences": True}, {"paths": ["x"], "val_fraction": 1.0}]
    option_variants = TEXT_VARIANTS
    inert_options = TEXT_INERT


class TestJsonlConformance(DataSourceConformance):
    plugins = [selfsup_text]
    data = ("jsonl", {"path": str(ROOT / "data.jsonl"), "label_field": "label", "positive_field": "pos",
                      "split": "train", "val_fraction": 0.5})
    bad_options = [{"path": str(ROOT / "data.jsonl"), "negative_field": "neg"}]
    option_variants = {**TEXT_VARIANTS, "path": str(ROOT / "other.jsonl"), "negative_field": "neg",
                       "text_pair_field": "pos"}
    inert_options = {**TEXT_INERT, "window": "cannot be combined with the suite's positive_field (a validation error)"}


class TestHFConformance(DataSourceConformance):
    plugins = [selfsup_text]
    data = ("hf_dataset", {"builder": "json", "data_files": [str(ROOT / "data.jsonl")], "label_field": "label",
                           "split": "train", "val_fraction": 0.5})
    bad_options = [{}, {"builder": "json"}, {"builder": "json", "data_files": ["a"], "path": str(ROOT)}]
    option_variants = {**TEXT_VARIANTS, "data_files": [str(ROOT / "other.jsonl")]}
    inert_options = {
        "max_doc_chars": TEXT_INERT["max_doc_chars"],
        "path": "a saved dataset folder; the suite reads data_files with a builder, which path excludes",
        "hf_split": "with a builder, the data_files form one split, which hf_split only names",
    }


# ----------------------------------------------------------------------------- text_files


def test_units_file_line_paragraph():
    from selfsup_text.data import files

    by_file = _build(od.TextFilesOptions, files, paths=["docs"], tokenizer="bytes")
    assert len(by_file) == 4 and sorted(by_file.texts) == sorted(d.strip() for d in DOCS)
    by_para = _build(od.TextFilesOptions, files, paths=["docs/**/*.txt"], unit="paragraph", tokenizer="bytes")
    assert len(by_para) == 5 and "And a second paragraph." in by_para.texts
    by_line = _build(od.TextFilesOptions, files, paths=["docs/sub/d1.txt"], unit="line", tokenizer="bytes")
    assert by_line.texts == ["Second document here! With an exclamation.", "And a second paragraph."]


def test_undecodable_file_is_skipped_and_counted_or_raises(tmp_path):
    from selfsup_text.data import files

    (tmp_path / "good.txt").write_text("fine text")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x80 not utf-8")
    opts = dict(paths=[str(tmp_path)], tokenizer="bytes")
    with pytest.warns(UserWarning, match="skipped 1 unreadable utf-8 text file"):
        source = _build(od.TextFilesOptions, files, **opts)
    assert source.texts == ["fine text"]
    assert len(source.skipped_files) == 1 and source.skipped_files[0][0].endswith("bad.txt")
    assert "not utf-8 text: 3 of 13 characters cannot be decoded" in source.skipped_files[0][1]  # mostly not text
    with pytest.raises(ValueError, match="bad.txt"):
        _build(od.TextFilesOptions, files, on_error="raise", **opts)
    latin = _build(od.TextFilesOptions, files, encoding="latin-1", **opts)
    assert len(latin) == 2 and not latin.skipped_files


def test_missing_inputs_are_clear_errors():
    from selfsup_text.data import files

    with pytest.raises(FileNotFoundError, match="matches no file"):
        _build(od.TextFilesOptions, files, paths=["docs/*.nothing"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _build(od.TextFilesOptions, files, paths=["nowhere.txt"])


def test_documents_have_specials_and_truncate_to_max_length():
    from selfsup_text.data import files

    source = _build(od.TextFilesOptions, files, paths=["docs"], tokenizer="bytes", max_length=10)
    tok = source.tokenizer
    for i in range(len(source)):
        ids = source[i]["input_ids"]
        assert ids.dtype == torch.long and len(ids) <= 10
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert tok.decode(ids[1:-1]) == source.texts[i].encode()[:8].decode("utf-8", "ignore")
    plain = _build(od.TextFilesOptions, files, paths=["docs"], tokenizer="bytes", add_special_tokens=False)
    assert tok.decode(plain[0]["input_ids"]) == plain.texts[0]


def test_windows_tile_the_separated_stream_with_document_ids():
    from selfsup_text.data import files

    source = _build(od.TextFilesOptions, files, paths=["docs"], tokenizer="bytes", window=16)
    tok = source.tokenizer
    stream, docs = [], []
    for d, text in enumerate(source.texts):
        ids = list(text.encode("utf-8"))
        stream += [b + 5 for b in ids] + [tok.sep_token_id]
        docs += [d] * (len(ids) + 1)
    assert len(source) == (len(stream) - 1) // 16
    for i in range(len(source)):
        sample = source[i]
        assert sample["input_ids"].tolist() == stream[16 * i : 16 * i + 17]
        assert sample["document_ids"].tolist() == docs[16 * i : 16 * i + 17]
    with pytest.raises(ValueError, match="too few"):
        _build(od.TextFilesOptions, files, paths=["docs"], tokenizer="bytes", window=100000)


def test_sentence_starts_point_at_sentence_beginnings():
    from selfsup_text.data import files

    source = _build(od.TextFilesOptions, files, paths=["docs/d0.txt"], tokenizer="bpe-8k", sentences=True)
    sample, tok = source[0], source.tokenizer
    starts = sample["sentence_starts"].tolist()
    assert starts[0] == 1 and len(starts) == 2
    assert tok.decode(sample["input_ids"][starts[1]:]).strip().startswith("It has two sentences.")


def test_split_is_deterministic_disjoint_and_complete():
    from selfsup_text.data import jsonl

    common = dict(path="data.jsonl", tokenizer="bytes", val_fraction=0.3)

    def texts(split, seed=0):
        src = _build(od.JsonlOptions, jsonl, split=split, split_seed=seed, **common)
        return [src[i]["input_ids"].tolist() for i in range(len(src))]

    train, val, everything = texts("train"), texts("val"), texts("all")
    assert len(train) + len(val) == len(everything) == 20 and len(val) == 6
    assert sorted(train + val) == sorted(everything)
    assert texts("val") == val
    seeds = {tuple(map(tuple, texts("val", seed))) for seed in range(5)}
    assert len(seeds) > 1


# ----------------------------------------------------------------------------- jsonl / hf


def test_jsonl_labels_pairs_and_bad_lines(tmp_path):
    from selfsup_text.data import jsonl

    source = _build(od.JsonlOptions, jsonl, path="data.jsonl", label_field="label", positive_field="pos",
                    negative_field="neg", tokenizer="bytes")
    assert source.label_names == ["neg", "pos"] and source.num_classes == 2
    sample = source[1]
    assert sample["label"] == 1
    assert source.tokenizer.decode(sample["positive_ids"][1:-1]) == source.texts[1].upper()
    assert source.tokenizer.decode(sample["negative_ids"][1:-1]) == "x"
    file = tmp_path / "bad.jsonl"
    file.write_text('{"text": "ok"}\nnot json\n{"other": 1}\n\n{"text": "also ok"}\n')
    src = _build(od.JsonlOptions, jsonl, path=str(file), tokenizer="bytes")
    assert src.texts == ["ok", "also ok"] and src.skipped_lines == 2
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        _build(od.JsonlOptions, jsonl, path=str(file), on_error="raise")


def test_hf_load_from_disk_with_classlabel(tmp_path):
    datasets = pytest.importorskip("datasets")
    from selfsup_text.data import hf

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "y": datasets.ClassLabel(names=["a", "b", "c"])})
    data = datasets.Dataset.from_dict({"sentence": DOCS * 3, "y": [0, 1, 2, 1] * 3}, features=features)
    datasets.DatasetDict({"train": data}).save_to_disk(str(tmp_path / "saved"))
    source = _build(od.HFDatasetOptions, hf, path=str(tmp_path / "saved"), text_field="sentence",
                    label_field="y", tokenizer="bytes")
    assert len(source) == 12 and source.label_names == ["a", "b", "c"]
    assert [source[i]["label"] for i in range(4)] == [0, 1, 2, 1]
    with pytest.raises(KeyError, match="no column"):
        _build(od.HFDatasetOptions, hf, path=str(tmp_path / "saved"), text_field="nope")


# ----------------------------------------------------------------------------- collate


def test_pad_collate_pads_and_masks():
    samples = [
        {"input_ids": torch.tensor([2, 7, 8, 3]), "document_ids": torch.tensor([0, 0, 0, 0]), "label": 1,
         "positive_ids": torch.tensor([2, 9, 3]), "sentence_starts": torch.tensor([1])},
        {"input_ids": torch.tensor([2, 5, 3]), "document_ids": torch.tensor([4, 4, 5]), "label": 0,
         "positive_ids": torch.tensor([2, 3]), "sentence_starts": torch.tensor([1, 2])},
    ]
    batch = pad_collate(samples, pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 7, 8, 3], [2, 5, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["positive_ids"].tolist() == [[2, 9, 3], [2, 3, 0]]
    assert batch["positive_attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["document_ids"].tolist() == [[0, 0, 0, 0], [4, 4, 5, -1]]
    assert batch["sentence_starts"].tolist() == [[1, -1], [1, 2]]
    assert batch["label"].tolist() == [1, 0] and batch["label"].dtype == torch.long
    with pytest.raises(ValueError, match="different fields"):
        pad_collate([samples[0], {"input_ids": torch.tensor([1])}], 0)


def test_source_collate_uses_the_tokenizer_pad_id():
    from selfsup_text.data import files

    source = _build(od.TextFilesOptions, files, paths=["docs"], tokenizer="bytes")
    batch = source.collate([source[i] for i in range(len(source))])
    lengths = [len(source[i]["input_ids"]) for i in range(len(source))]
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert (batch["input_ids"][batch["attention_mask"] == 0] == source.tokenizer.pad_token_id).all()


def test_hf_without_datasets_names_the_extra(monkeypatch):
    import sys

    from selfsup_text.data import hf

    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"selfsup-text\[datasets\]"):
        _build(od.HFDatasetOptions, hf, builder="json", data_files=["data.jsonl"])


def test_jsonl_sentence_pairs_join_two_texts_with_token_types(tmp_path):
    """text_pair_field: [CLS] a [SEP] b [SEP], types 0 then 1, longest-first truncation; the encoder reads
    the types (another type sequence gives other features)."""
    from selfsup_text.data import jsonl

    file = tmp_path / "nli.jsonl"
    rows = [{"premise": "a cat sat on the mat", "hypothesis": "a cat sat", "label": "entailment"},
            {"premise": "dogs bark", "hypothesis": "the sky is green today", "label": "contradiction"}]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = _build(od.JsonlOptions, jsonl, path=str(file), text_field="premise", text_pair_field="hypothesis",
                    label_field="label", tokenizer="bytes", split="all")
    sample = source[0]
    tok = source.tokenizer
    ids, types = sample["input_ids"].tolist(), sample["token_type_ids"].tolist()
    assert ids[0] == source.cls_id and ids.count(source.sep_id) == 2 and ids[-1] == source.sep_id
    first = ids.index(source.sep_id)
    assert tok.decode(ids[1:first]) == "a cat sat on the mat" and tok.decode(ids[first + 1:-1]) == "a cat sat"
    assert types == [0] * (first + 1) + [1] * (len(ids) - first - 1)
    assert source.label_names == ["contradiction", "entailment"] and sample["label"] == 1
    short = _build(od.JsonlOptions, jsonl, path=str(file), text_field="premise", text_pair_field="hypothesis",
                   tokenizer="bytes", split="all", max_length=12)
    cut = short[1]["input_ids"].tolist()  # 9 + 22 bytes into 12 - 3: the longer text is cut first, to 5 + 4
    first = cut.index(short.sep_id)
    assert len(cut) == 12 and tok.decode(cut[1:first]) == "dogs " and tok.decode(cut[first + 1:-1]) == "the "
    batch = source.collate([source[0], source[1]])
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    with pytest.raises(ValueError, match="pair fields cannot be combined with 'window'"):
        od.JsonlOptions.model_validate({"path": str(file), "text_pair_field": "hypothesis", "window": 8},
                                       context={"base_dir": ROOT})
