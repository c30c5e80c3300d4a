"""``selfsup prepare``: each step, and the command end to end on a folder with planted duplicates."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from selfsup_text.data.shards import TokenShards
from selfsup_text.prepare.clean import CleanOptions, clean_text
from selfsup_text.prepare.dedup import exact_duplicates, near_duplicates, shingles
from selfsup_text.prepare.split import parse_fractions, split_documents

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact").split()


def random_doc(rng: random.Random, n: int = 120) -> str:
    return " ".join(f"{rng.choice(WORDS)}{rng.randint(0, 99)}" for _ in range(n)) + "."


def run_prepare(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SELFSUP_PLUGINS": "text", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "selfsup", "prepare", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------- steps


def test_clean_text_steps():
    opts = CleanOptions()
    assert clean_text("ﬁne ＦＵＬＬ width", opts) == "fine FULL width"  # NFKC
    assert clean_text("ﬁne", CleanOptions(nfkc=False)) == "ﬁne"
    assert clean_text("see https://x.org/a?b=1 and www.y.com/z or me@mail.com now", opts) == "see and or now"
    assert "https" in clean_text("see https://x.org", CleanOptions(strip_urls=False))
    assert clean_text("a\x00b\u200bc\r\nd\te", opts) == "abc\nd e"
    assert clean_text("  a   b \n\n\n\n c  ", opts) == "a b\n\nc"
    assert clean_text("MiXeD", CleanOptions(lowercase=True)) == "mixed"
    assert clean_text(" \t\n https://only.url ", opts) == ""


def test_exact_and_near_duplicates():
    rng = random.Random(0)
    base = random_doc(rng)
    words = base.split()
    one_word = " ".join(words[:60] + ["CHANGED"] + words[61:])  # word 5-gram Jaccard 111/121 = 0.917
    half = " ".join(words[:60] + random_doc(rng, 60).split())  # Jaccard about 56/176 = 0.32
    texts = [base, random_doc(rng), base, one_word, half]
    assert exact_duplicates(texts) == [False, False, True, False, False]
    truth = len(shingles(base) & shingles(one_word)) / len(shingles(base) | shingles(one_word))
    assert truth == pytest.approx(111 / 121)
    assert near_duplicates(texts, threshold=0.8) == [False, False, True, True, False]
    assert near_duplicates(texts, threshold=0.95) == [False, False, True, False, False]
    assert near_duplicates(texts, threshold=0.8) == near_duplicates(texts, threshold=0.8)  # deterministic


def test_split_fractions_are_exact_seeded_and_disjoint():
    assert parse_fractions("0.9,0.05,0.05") == (0.9, 0.05, 0.05)
    assert parse_fractions("0.8,0.2") == (0.8, 0.2, 0.0)
    for bad in ("0.9,0.2,0.1", "a,b", "0,0.5,0.5", "1"):
        with pytest.raises(ValueError, match="--split"):
            parse_fractions(bad)
    parts = split_documents(101, (0.8, 0.1, 0.1), seed=3)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [81, 10, 10]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(101))
    again = split_documents(101, (0.8, 0.1, 0.1), seed=3)
    assert all((parts[k] == again[k]).all() for k in parts)
    assert not (split_documents(101, (0.8, 0.1, 0.1), seed=4)["val"] == parts["val"]).all()


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """12 distinct documents plus 3 exact duplicates (after cleaning), 1 near duplicate, 2 documents
    empty after cleaning, 1 undecodable file and 1 malformed JSON line."""
    root = tmp_path_factory.mktemp("prepare")
    rng = random.Random(1)
    docs = [random_doc(rng) for _ in range(10)]
    folder = root / "in"
    (folder / "nested").mkdir(parents=True)
    for i, doc in enumerate(docs):
        (folder / f"doc{i:02d}.txt").write_text(doc)
    (folder / "nested" / "copy.txt").write_text(docs[0])  # exact
    (folder / "nested" / "spaces.md").write_text("  " + docs[1].replace(" ", " \t ") + "\n\n\n")  # exact once cleaned
    (folder / "nested" / "ligature.txt").write_text(docs[2].replace("fi", "ﬁ").replace("e", "ｅ"))  # exact after NFKC
    words = docs[3].split()
    (folder / "nested" / "near.txt").write_text(" ".join(words[:50] + ["different"] + words[51:]))  # near
    (folder / "empty.txt").write_text(" \n\t\n ")
    (folder / "links.txt").write_text("https://example.com/a www.example.org/b\n")
    (folder / "with_url.txt").write_text("Kept text mentions https://example.com/secret in it " + random_doc(rng, 40))
    (folder / "latin1.txt").write_bytes("caf\xe9 na\xefve".encode("latin-1"))  # not UTF-8: skipped
    (folder / "more.jsonl").write_text(json.dumps({"text": random_doc(rng)}) + "\n{broken\n"
                                       + json.dumps({"body": "wrong field"}) + "\n")
    return root


def test_prepare_command_counts_and_shards(planted):
    out = planted / "out"
    result = run_prepare("in", "--out", "out", "--split", "0.6,0.2,0.2", "--seed", "7", "--tokenizer", "bytes",
                         cwd=planted)
    assert result.returncode == 0, result.stderr
    assert "exact duplicates" in result.stdout and "near duplicates" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    # 10 docs + copy + spaces + ligature + near + empty + links + with_url + 1 JSON line (latin1.txt skipped)
    assert manifest["documents_in"] == 18
    assert len(manifest["skipped_files"]) == 1 and manifest["skipped_files"][0].endswith("latin1.txt")
    assert manifest["skipped_lines"] == 2
    assert manifest["empty_after_cleaning"] == 2
    assert manifest["exact_duplicates"] == 3
    assert manifest["near_duplicates"] == 1
    assert manifest["documents_kept"] == 12
    # the optional steps are off by default: nothing filtered, scrubbed or added
    assert manifest["pii"] == manifest["language"] == manifest["quality"] == manifest["counterfactual"] == {}
    assert manifest["quality_removed"] == 0 and manifest["settings"]["quality"] is None
    splits = manifest["splits"]
    assert [splits[k]["documents"] for k in ("train", "val", "test")] == [8, 2, 2]

    meta = json.loads((out / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 261 and meta["sep_id"] == 3
    decoded = []
    for name in ("train", "val", "test"):
        tokens = np.fromfile(out / f"{name}.bin", dtype="<u2")
        assert len(tokens) == splits[name]["tokens"] == meta["tokens"][name]
        assert (tokens == 3).sum() == splits[name]["documents"] and tokens[-1] == 3
        text = bytes(int(t) - 5 if t != 3 else 10 for t in tokens).decode("utf-8")  # separators as newlines
        assert "https://" not in text and "example.com" not in text
        decoded.extend(text.splitlines())
    assert sum(line.startswith("Kept text mentions in it") for line in decoded) == 1

    source = TokenShards(out, "train", window=32, windows_per_epoch=10)
    assert source[0]["input_ids"].shape == (33,)
    assert source.tokenizer.decode(source[0]["input_ids"][source[0]["input_ids"] != 3])

    again = run_prepare("in", "--out", "out", "--split", "0.6,0.2,0.2", "--seed", "7", "--tokenizer", "bytes",
                        cwd=planted)
    assert again.returncode != 0 and "not empty" in again.stderr


def test_prepare_trains_a_bpe_on_the_train_split(planted):
    result = run_prepare("in", "--out", "bpe", "--train-bpe", "300", "--no-near-dup", "--split", "0.5,0.5",
                         cwd=planted)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((planted / "bpe" / "manifest.json").read_text())
    assert manifest["near_duplicates"] == 0 and manifest["documents_kept"] == 13
    assert manifest["vocab_size"] == 300 and manifest["splits"]["test"] == {"documents": 0, "tokens": 0}
    source = TokenShards(planted / "bpe", "val", window=8, windows_per_epoch=4)
    assert len(source.tokenizer) == 300 and int(source[0]["input_ids"].max()) < 300


def test_prepare_usage_errors(tmp_path):
    result = run_prepare("--out", "x", cwd=tmp_path)
    assert result.returncode != 0 and "INPUTS or --corpus" in result.stderr


# ----------------------------------------------------------------------------- counterfactual augmentation


def test_counterfactual_runs_on_the_train_split_only(tmp_path, monkeypatch):
    """``counterfactual=`` calls ``augment.counterfactual.counterfactual_corpus`` after the split, on the
    train documents only, with the run's seed; its counts go to the manifest (wiring checked with a stand-in)."""
    import types

    from selfsup_text.prepare.pipeline import run_pipeline

    calls = []

    def fake(texts, *, mode, seed):
        calls.append((list(texts), mode, seed))
        swapped = [t.replace("he ", "she ") for t in texts if "he " in t]
        return list(texts) + swapped, {"documents_in": len(texts), "documents_added": len(swapped)}

    module = types.ModuleType("selfsup_text.augment.counterfactual")
    module.counterfactual_corpus = fake
    monkeypatch.setitem(sys.modules, "selfsup_text.augment.counterfactual", module)
    rng = random.Random(5)
    (tmp_path / "in").mkdir()
    for i in range(10):
        (tmp_path / "in" / f"{i}.txt").write_text(("he said " if i % 2 else "") + random_doc(rng, 30))
    manifest = run_pipeline(["in"], tmp_path / "out", tokenizer="bytes", split="0.6,0.2,0.2", seed=3,
                            base_dir=tmp_path, counterfactual="add")
    (train, mode, seed), = calls
    assert mode == "add" and seed == 3 and len(train) == 6  # the train split, after the split
    added = sum("he " in t for t in train)
    assert manifest.counterfactual == {"documents_in": 6, "documents_added": added}
    assert manifest.splits["train"]["documents"] == 6 + added
    assert manifest.splits["val"]["documents"] == manifest.splits["test"]["documents"] == 2
    assert "counterfactual (train): documents_in 6" in manifest.summary()
    with pytest.raises(ValueError, match="'add' or 'substitute'"):
        run_pipeline(["in"], tmp_path / "x", tokenizer="bytes", base_dir=tmp_path, counterfactual="swap")


@pytest.mark.slow
def test_prepare_counterfactual_command(tmp_path):
    (tmp_path / "in").mkdir()
    rng = random.Random(6)
    for i in range(12):
        pronoun = "He said his work was done and she agreed with him. " if i % 3 else ""
        (tmp_path / "in" / f"{i}.txt").write_text(pronoun + random_doc(rng, 40))
    result = run_prepare("in", "--out", "out", "--tokenizer", "bytes", "--split", "0.5,0.25,0.25",
                         "--counterfactual", "add", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    counts, splits = manifest["counterfactual"], manifest["splits"]
    assert manifest["settings"]["counterfactual"] == "add" and counts["documents_added"] > 0
    assert splits["train"]["documents"] == 6 + counts["documents_added"]  # 12 kept: 6 train + 3 + 3
    assert splits["val"]["documents"] == splits["test"]["documents"] == 3
    assert "counterfactual (train):" in result.stdout
