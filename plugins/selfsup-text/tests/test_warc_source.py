"""The `warc` data source: the main text of a `selfsup collect` crawl's WARC and of WET conversion records
(written here with warcio), kept by language, length and duplicates; unreadable records and files counted
or fatal by on_error; built through the registry as recipes build it, with its serving decoder."""

from __future__ import annotations

import json
import os
from io import BytesIO
from pathlib import Path

import pytest
from warcio.warcwriter import WARCWriter
from web_site import Site, page, text_for

import selfsup_text
from selfsup.components import BuildContext
from selfsup.testing import DataSourceConformance
from selfsup_text.collect.crawl import run_crawl
from selfsup_text.collect.options import CrawlOptions
from selfsup_text.data import options as od
from selfsup_text.data import warc

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MIXED = "Le chat est sur la table. Der Hund ist im Garten. The bird sits on the tree. " * 3  # 'en', p < 0.9
WET_TEXTS = [
    ("http://cc.example/en", text_for("common crawl", "en")),
    ("http://cc.example/de", text_for("gemeinsam", "de")),
    ("http://cc.example/short", "Too short to keep."),
    ("http://cc.example/en-again", text_for("common crawl", "en")),  # the same text as the first one
    ("http://cc.example/mixed", MIXED),
]


def _write_wet(path: Path) -> None:
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=path.suffix == ".gz")
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "test", "format": "WET"}))
        for url, text in WET_TEXTS:
            body = text.encode("utf-8")
            writer.write_record(writer.create_warc_record(
                url, "conversion", payload=BytesIO(body), length=len(body), warc_content_type="text/plain",
                warc_headers_dict={"WARC-Identified-Content-Language": "eng"}))


def _make_data() -> Path:
    """A crawl of a small site (English, German and French pages, a duplicate page, a 404) and a WET file."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="selfsup_warc_source_"))
    routes = {"/": page("Home", links=["/en2", "/de", "/fr", "/copy", "/missing"]), "/en2": page("English two"),
              "/de": page("Deutsch", "de"), "/fr": page("Français", "fr"), "/copy": page("Home"),
              "/about": page("About"), "/contact": page("Contact")}
    routes["/copy"] = routes["/"]
    with Site(routes) as site:
        run_crawl(CrawlOptions(seeds=[site.base + "/"], delay=0, timeout=5, sitemaps=False), root / "crawl")
    _write_wet(root / "segment.warc.wet.gz")
    return root


ROOT = _make_data()
BASE = {"paths": ["crawl/warc", "segment.warc.wet.gz"], "tokenizer": "bytes", "min_chars": 100}


def _build(**options):
    opts = od.WarcOptions.model_validate({**BASE, **options}, context={"base_dir": ROOT})
    return warc.build(opts, BuildContext(name="data", base_dir=ROOT))


class TestWarcConformance(DataSourceConformance):
    plugins = [selfsup_text]
    data = ("warc", {"paths": [str(ROOT / "crawl" / "warc"), str(ROOT / "segment.warc.wet.gz")], "tokenizer": "bytes",
                     "languages": ["en", "de"], "min_chars": 100, "split": "train", "val_fraction": 0.3})
    bad_options = [{"paths": []}, {"paths": ["x"], "languages": ["English"]}, {"paths": ["x"], "extract": "html"},
                   {"paths": ["x"], "min_language_score": 1.5}, {"paths": ["x"], "window": 8, "sentences": True}]
    option_variants = {"limit": 1, "min_tokens": 400, "languages": ["fr"], "min_language_score": 0.9,
                       "paths": [str(ROOT / "segment.warc.wet.gz")], "max_records": 6, "max_doc_chars": 100,
                       "min_chars": 450}
    inert_options = {"on_error": "every record of the suite's files is readable"}


def test_crawl_pages_and_wet_records_become_documents():
    source = _build()
    urls = [u.rsplit("/", 1)[-1] for u in source.urls]
    # crawl: the index, en2, de, fr, about, contact (copy is a revisit record, the 404 is not 2xx, robots.txt
    # is not a page); WET: en, de, mixed (short is too short, en-again a duplicate of en)
    assert sorted(urls) == sorted(["", "en2", "de", "fr", "about", "contact", "en", "de", "mixed"])
    assert source.stats["conversion"] == 5 and source.stats["duplicate"] == 1 and source.stats["short"] == 1
    assert source.stats["not_2xx"] == 1 and source.stats["robots_txt"] == 1
    assert len(source) == len(source.texts) == 9 and source.bad_files.total() == 0
    english = source.texts[source.urls.index(next(u for u in source.urls if u.endswith("/en2")))]
    assert "rivers, mountains" in english and "Copyright the test site" not in english  # boilerplate removed
    raw = _build(extract="raw")
    english_raw = raw.texts[raw.urls.index(next(u for u in raw.urls if u.endswith("/en2")))]
    assert "Copyright the test site" in english_raw and "About us" in english_raw  # every visible text
    assert len(_build(dedup=False)) == 10


def test_languages_keep_only_those_identified():
    german = _build(languages=["de"])
    assert sorted(u.rsplit("/", 1)[-1] for u in german.urls) == ["de", "de"]
    assert all("Geschichte" in t for t in german.texts)
    both = _build(languages=["en", "de"])
    assert any(u.endswith("/mixed") for u in both.urls)
    assert not any(u.endswith("/mixed") for u in _build(languages=["en", "de"], min_language_score=0.95).urls)
    with pytest.raises(ValueError, match="knows no language"):
        _build(languages=["xx"])


def test_unreadable_records_and_files_are_counted_or_fatal(tmp_path, monkeypatch):
    good = ROOT / "segment.warc.wet.gz"
    broken = tmp_path / "broken.warc.gz"
    data = bytearray(good.read_bytes())
    data[len(data) // 2: len(data) // 2 + 20] = b"\xff" * 20  # a gzip member in the middle destroyed
    broken.write_bytes(bytes(data))
    opts = dict(paths=[str(broken)], tokenizer="bytes", min_chars=100)
    with pytest.warns(UserWarning, match="unreadable WARC record"):
        source = _build(**opts)
    assert source.bad_files.counts()["skipped"] == 1 and source.skipped_files[0][0] == str(broken)
    assert len(source) >= 1  # the records before the break are kept
    with pytest.raises(ValueError, match="broken.warc.gz"):
        _build(**opts, on_error="raise")

    from selfsup_text.collect import extract

    real = extract.main_text

    def fails_on_french(html: str, url=None) -> str:
        if "Français" in html:
            raise RuntimeError("extractor crashed")
        return real(html, url)

    monkeypatch.setattr(extract, "main_text", fails_on_french)
    with pytest.warns(UserWarning, match="extractor crashed"):
        source = _build(paths=["crawl/warc"])
    assert source.bad_files.counts()["skipped"] == 1 and "@" in source.skipped_files[0][0]
    assert not any(u.endswith("/fr") for u in source.urls)
    with pytest.raises(ValueError, match=r"warc.*@\d+.*extractor crashed"):
        _build(paths=["crawl/warc"], on_error="raise")


def test_missing_paths_are_clear_errors():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _build(paths=["nowhere.warc.gz"])
    with pytest.raises(FileNotFoundError, match="matches no file"):
        _build(paths=["*.nothing"])
    with pytest.raises(ValueError, match="no document"):
        _build(min_chars=100_000)


def test_long_texts_are_cut_and_counted():
    with pytest.warns(UserWarning, match="cut .* over-long document"):
        source = _build(max_doc_chars=200)
    assert source.bad_files.counts()["cut"] > 0 and max(len(t) for t in source.texts) <= 200


def test_built_through_the_registry_with_its_decoder():
    """As a recipe's [data] table builds it: by name through the registry, options validated against the
    recipe folder; the serving decoder turns a document into the sample the source yields for it."""
    context = BuildContext(name="data", base_dir=ROOT)
    options = {"paths": ["crawl/warc"], "tokenizer": "bpe-8k", "languages": ["en"], "max_length": 64}
    source = context.build("data", "warc", options)
    assert len(source) == 4 and set(source[0]) == {"input_ids"}
    decoder = context.decoder("warc", options)
    for i, text in enumerate(source.texts):
        sample, stats = decoder({"text": "  " + text + "\n"})  # stripped, as the source's documents are
        assert sample["input_ids"].tolist() == source[i]["input_ids"].tolist()
    assert json.dumps(source.stats)
