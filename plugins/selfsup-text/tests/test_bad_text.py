"""Bad text data (issue 12): long lines in bounded memory, cut and counted; invalid Unicode replaced and
counted, naming file and line; in the text sources and in ``selfsup prepare``.

Before: a 50 MB single-line file took 8 GB (the whole line was one document, tokenized at once), and
a lone surrogate (``"\\ud800"``) in JSONL aborted training and ``prepare`` with a TypeError naming no
file or line."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from selfsup.badfiles import BadFiles
from selfsup.components import BuildContext
from selfsup_text.data import options as od
from selfsup_text.data.files import split_units
from selfsup_text.data.reading import char_batches, cut_text, read_file_documents

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WORDS = ["alpha", "beta", "gamma", "delta", "the", "of", "sun", "moon", "running", "quickly", "under", "river"]


def _build(module, options_cls, base_dir: Path, **options):
    opts = options_cls.model_validate(options, context={"base_dir": base_dir})
    return module.build(opts, BuildContext(name="data", base_dir=base_dir))


@pytest.fixture(scope="module")
def huge_line(tmp_path_factory) -> Path:
    """50 MB of words on one line, no line break."""
    rng = random.Random(0)
    block = " ".join(rng.choice(WORDS) for _ in range(200_000))  # ~1.2 MB
    file = tmp_path_factory.mktemp("long") / "one-line.txt"
    with open(file, "w", encoding="utf-8") as f:
        size = 0
        while size < 50_000_000:
            f.write(block + " ")
            size += len(block) + 1
    return file


# ------------------------------------------------------------------------------ long lines

_MEASURE = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from selfsup.components import BuildContext
    from selfsup_text.data import files
    from selfsup_text.data import options as od

    def vm_kb():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize"))

    # a guard, so a regression cannot take the machine's memory: 3 GiB of address space beyond this point
    resource.setrlimit(resource.RLIMIT_AS, ((vm_kb() + 3 * 2**20) * 1024, resource.RLIM_INFINITY))
    file = Path(sys.argv[1])
    opts = od.TextFilesOptions.model_validate({"paths": [str(file)], "unit": "line", "tokenizer": "bpe-8k",
                                               "limit": 4}, context={"base_dir": file.parent})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    source = files.build(opts, BuildContext(name="data", base_dir=file.parent))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (after - before) / 1024, "counts": source.bad_files.counts(),
                      "docs": len(source), "longest": max(len(t) for t in source.texts),
                      "examples": source.bad_files.examples(3)}))
""")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_50mb_single_line_text_file_is_read_in_bounded_memory_and_cut(huge_line):
    env = {**os.environ, "RAYON_NUM_THREADS": "2", "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(huge_line)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["growth_mb"] < 500, result  # was about 8 GB: the whole line tokenized as one document
    assert result["counts"] == {"skipped": 0, "replaced": 0, "cut": 1, "invalid_unicode": 0}
    assert result["docs"] == 4 and result["longest"] <= od.DEFAULT_MAX_DOC_CHARS
    (where, reason), = result["examples"]
    assert where == f"{huge_line}:1"
    pieces = int(reason.rsplit(" ", 1)[1])  # "a document of N characters cut into K"
    assert huge_line.stat().st_size // 100_000 <= pieces <= huge_line.stat().st_size // 99_000
    assert "cut 1 over-long document(s) into pieces of at most 100000 characters" in run.stderr


def test_prepare_reads_the_50mb_line_in_bounded_memory_and_cuts_it(huge_line):
    from selfsup_text.prepare.inputs import read_inputs

    size = huge_line.stat().st_size
    tracemalloc.start()
    try:
        inputs = read_inputs([str(huge_line)], unit="line", max_doc_chars=100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the documents themselves (one copy of the text) and a few pieces: the old read held the file's
    # bytes and their decoded copy at once (>= 2x), and then one 50 MB document
    assert peak < 1.3 * size, (peak, size)
    assert size // 100_000 <= len(inputs.documents) <= size // 99_000 and inputs.count("cut") == 1
    assert max(map(len, inputs.documents)) <= 100_000
    joined = "".join(inputs.documents).replace(" ", "")
    assert joined == huge_line.read_text().replace(" ", "")  # nothing lost but the spaces at the cuts


def test_cut_document_reported_with_file_and_line(tmp_path):
    from selfsup_text.data import files

    (tmp_path / "a.txt").write_text("short line\n" + "word " * 100 + "\nlast line\n")
    with pytest.warns(UserWarning, match=r"cut 1 over-long document\(s\) into pieces of at most 120 characters, "
                                         r"e\.g\. .*a\.txt:2 \(a document of 501 characters cut into 5\)"):
        source = _build(files, od.TextFilesOptions, tmp_path, paths=["a.txt"], unit="line", tokenizer="bytes",
                        max_doc_chars=120)
    assert source.texts[0] == "short line" and source.texts[-1] == "last line"
    assert all(len(t) <= 120 for t in source.texts) and " ".join(source.texts[1:-1]) == ("word " * 100).strip()
    assert source.bad_files.counts()["cut"] == 1


# ------------------------------------------------------------------------------ invalid Unicode


@pytest.fixture
def dirty(tmp_path) -> Path:
    clean = "".join(f"line {i} of plain text that decodes.\n" for i in range(40))
    (tmp_path / "bytes.txt").write_bytes(clean.encode() + b"caf\xe9 au lait \xff\n" + clean.encode())
    (tmp_path / "data.jsonl").write_text(
        json.dumps({"text": "fine"}) + "\n"
        + '{"text": "lone \\ud800 surrogate", "label": "a"}\n'  # valid JSON, not valid Unicode
        + json.dumps({"text": "also fine", "label": "b"}) + "\n", encoding="utf-8")
    with open(tmp_path / "data.jsonl", "ab") as f:
        f.write(b'{"text": "bad byte \xff here", "label": "b"}\n')
    return tmp_path


def test_text_file_with_invalid_utf8_bytes_is_kept_with_replacements_counted(dirty):
    from selfsup_text.data import files

    for on_error in ("skip", "raise"):  # a few bad bytes do not make the file unreadable
        with pytest.warns(UserWarning, match=r"replaced invalid Unicode with U\+FFFD in 1 line\(s\), "
                                             r"e\.g\. .*bytes\.txt:41 \(2 undecodable byte"):
            source = _build(files, od.TextFilesOptions, dirty, paths=["bytes.txt"], unit="line", tokenizer="bpe-8k",
                            on_error=on_error)
        assert "caf\ufffd au lait \ufffd" in source.texts and len(source) == 81
        assert source.bad_files.counts() == {"skipped": 0, "replaced": 0, "cut": 0, "invalid_unicode": 1}


def test_mostly_undecodable_file_is_unreadable(tmp_path):
    from selfsup_text.data import files

    (tmp_path / "ok.txt").write_text("fine")
    (tmp_path / "blob.txt").write_bytes(bytes(range(128, 256)) * 4)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable utf-8 text file\(s\), e\.g\. .*blob\.txt"):
        source = _build(files, od.TextFilesOptions, tmp_path, paths=["."], tokenizer="bytes")
    assert source.texts == ["fine"] and source.bad_files.counts()["skipped"] == 1
    with pytest.raises(ValueError, match=r"unreadable utf-8 text file .*blob\.txt: ValueError: not utf-8 text"):
        _build(files, od.TextFilesOptions, tmp_path, paths=["."], tokenizer="bytes", on_error="raise")


def test_jsonl_lone_surrogate_and_bad_bytes_are_replaced_and_counted(dirty):
    from selfsup_text.data import jsonl

    with pytest.warns(UserWarning, match=r"jsonl \(1 files\): replaced invalid Unicode with U\+FFFD in 2 line\(s\), "
                                         r"e\.g\. .*data\.jsonl:2 \(1 undecodable byte\(s\) or lone surrogate"):
        source = _build(jsonl, od.JsonlOptions, dirty, path="data.jsonl", tokenizer="bpe-8k")
    assert source.texts == ["fine", "lone \ufffd surrogate", "also fine", "bad byte \ufffd here"]
    assert len(source[1]["input_ids"]) > 2  # tokenized (a lone surrogate raised a TypeError in the tokenizer)
    assert source.bad_files.counts() == {"skipped": 0, "replaced": 0, "cut": 0, "invalid_unicode": 2}
    assert [w for w, _ in source.bad_files.examples(5)] == [f"{dirty / 'data.jsonl'}:2", f"{dirty / 'data.jsonl'}:4"]


def test_jsonl_long_texts_cut_or_truncated_for_pairs(tmp_path):
    from selfsup_text.data import jsonl

    long = "word " * 60
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": long, "label": 1, "pos": long}) + "\n"
                                      + json.dumps({"text": "short", "label": 0, "pos": "short too"}) + "\n")
    with pytest.warns(UserWarning, match=r"cut 1 over-long .*d\.jsonl:1"):
        cut = _build(jsonl, od.JsonlOptions, tmp_path, path="d.jsonl", label_field="label", tokenizer="bytes",
                     max_doc_chars=100)
    assert len(cut) == 4 and cut.labels.tolist() == [1, 1, 1, 0] and all(len(t) <= 100 for t in cut.texts)
    with pytest.warns(UserWarning, match=r"d\.jsonl:1 \(text, pos truncated to 100 characters"):
        pairs = _build(jsonl, od.JsonlOptions, tmp_path, path="d.jsonl", positive_field="pos", tokenizer="bytes",
                       max_doc_chars=100)
    assert len(pairs) == 2 and len(pairs.texts[0]) <= 100 and pairs.bad_files.counts()["cut"] == 1


def test_prepare_replaces_and_counts_invalid_unicode_naming_file_and_line(dirty):
    out = dirty / "out"
    run = subprocess.run([sys.executable, "-m", "selfsup", "prepare", "bytes.txt", "data.jsonl", "--out", "out",
                          "--unit", "line", "--tokenizer", "bytes", "--no-near-dup", "--split", "0.5,0.5"],
                         cwd=dirty, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]  # was: TypeError / UnicodeEncodeError, no file named
    assert f"warning: prepare inputs: replaced invalid Unicode with U+FFFD in 1 line(s), e.g. {dirty}/bytes.txt:41" \
        in run.stderr
    assert f"warning: prepare JSONL inputs: replaced invalid Unicode with U+FFFD in 2 line(s), " \
           f"e.g. {dirty}/data.jsonl:2" in run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["invalid_unicode_lines"] == 3 and manifest["skipped_files"] == [] and manifest["skipped_lines"] == 0
    assert "3 lines with invalid Unicode replaced" in run.stdout
    assert len(manifest["warnings"]) == 2


def test_prepare_cuts_long_lines_and_counts_them(tmp_path):
    line = " ".join(["quick brown fox"] * 2000)
    (tmp_path / "long.txt").write_text("first\n" + line + "\n")
    run = subprocess.run([sys.executable, "-m", "selfsup", "prepare", "long.txt", "--out", "out", "--unit", "line",
                          "--tokenizer", "bytes", "--no-near-dup", "--split", "1,0", "--max-doc-chars", "1000"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"cut 1 over-long document(s) into pieces of at most 1000 characters, e.g. {tmp_path}/long.txt:2" \
        in run.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["cut_documents"] == 1 and manifest["documents_in"] == 1 + len(cut_text(line, 1000)) == 1 + 33
    assert manifest["settings"]["max_doc_chars"] == 1000


# ------------------------------------------------------------------------------ the reader itself


def test_streamed_documents_equal_the_whole_file_split_unless_cut(tmp_path):
    """Seeded fuzz: documents within the limit are exactly the old in-memory split; longer ones are cut
    into pieces within the limit, losing only whitespace."""
    rng = random.Random(12)
    alphabet = ["a", "b", " ", "\n", "\r", "\r\n", "\t", "\x0b", "\u2028", "\n\n", " \n \n", "é", "word ",
                "longerword"]
    file = tmp_path / "x.txt"
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 120)))
        file.write_bytes(text.encode("utf-8"))
        for unit in ("file", "line", "paragraph"):
            limit = rng.choice([4, 9, 30, 1000])
            bad = BadFiles("t", "skip")
            got, want = read_file_documents(file, unit, "utf-8", limit, bad), split_units(text, unit)
            assert all(len(doc) <= limit for doc in got)
            assert "".join("".join(got).split()) == "".join("".join(want).split())
            if all(len(doc) <= limit for doc in want):
                assert got == want and bad.counts()["cut"] == 0
            else:
                assert bad.counts()["cut"] >= 1


def test_cut_text_and_char_batches():
    assert cut_text("aaaa bbbb cccc", 9) == ["aaaa bbbb", "cccc"]  # at the last space in the second half
    assert cut_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]  # no space: a hard cut
    assert char_batches(["a" * 6, "b" * 6, "c", "d" * 20, "e"], max_chars=10) == [(0, 1), (1, 3), (3, 4), (4, 5)]


def test_hf_dataset_cuts_long_texts_and_counts_missing_ones(tmp_path):
    pytest.importorskip("datasets")
    from selfsup_text.data import hf

    rows = [{"text": "word " * 50, "y": 1}, {"text": None, "y": 0}, {"text": "short", "y": 0}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(UserWarning, match=r"hf_dataset .*skipped 1 unreadable row\(s\).*cut 1 over-long"):
        source = _build(hf, od.HFDatasetOptions, tmp_path, builder="json", data_files=["d.jsonl"], label_field="y",
                        tokenizer="bytes", max_doc_chars=100)
    assert source.labels.tolist() == [1, 1, 1, 0] and all(len(t) <= 100 for t in source.texts)
    assert source.bad_files.counts() == {"skipped": 1, "replaced": 0, "cut": 1, "invalid_unicode": 0}
