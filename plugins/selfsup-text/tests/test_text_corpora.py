"""Shipped text: the embedded corpus, the labelled probe sets and the similarity-rated sets."""

from __future__ import annotations

import numpy as np
import pytest

import selfsup_text
from selfsup.components import BuildContext
from selfsup.testing import DataSourceConformance
from selfsup_text.data import gensim_data
from selfsup_text.data import options as od


def _build(options_cls, module, **options):
    return module.build(options_cls(**options), BuildContext(name="data"))


class TestEmbeddedCorpusConformance(DataSourceConformance):
    plugins = [selfsup_text]
    data = ("embedded_corpus", {"name": "news", "split": "val", "tokenizer": "bytes", "window": 64})
    bad_options = [{"name": "books"}, {"unit": "line"}]
    option_variants = {"min_tokens": 2000}  # drops the shorter news documents from the stream
    inert_options = {
        "add_special_tokens": "not used in window mode (documented in selfsup_text.data.base)",
        "max_length": "not used in window mode (documented in selfsup_text.data.base)",
        "sentences": "cannot be combined with the suite's window (a validation error)",
        "unit": "the first news documents are one paragraph each",
    }


class TestLabelledConformance(DataSourceConformance):
    plugins = [selfsup_text]
    data = ("labelled_text", {"set": "polarity"})
    bad_options = [{"set": "imdb"}, {"max_length": 1}]
    option_variants = {"max_length": 8}  # 256 -> 257 cuts no sentence


class TestSimilarityConformance(DataSourceConformance):
    plugins = [selfsup_text]
    data = ("similarity_pairs", {"set": "wordsim353", "tokenizer": "bytes"})
    bad_options = [{"set": "sts-b"}]
    option_variants = {"max_length": 4}  # 256 -> 257 cuts no word


def test_embedded_corpus_is_real_english_over_one_megabyte():
    wiki, news = gensim_data.corpus_documents("wiki"), gensim_data.corpus_documents("news")
    assert len(news) == 293 == len(set(news)) and len(wiki) >= 100
    size = sum(len(t.encode("utf-8")) for t in wiki + news)
    assert size >= 1_000_000, f"only {size / 1e6:.2f} MB"
    assert wiki[0].startswith("Anarchism is a political philosophy")
    text = "\n".join(wiki)
    for markup in ("[[", "]]", "{{", "'''", "<ref", "==", "[http"):
        assert markup not in text, f"wiki markup {markup!r} left in the extracted text"
    assert any(c.isupper() for c in text[:200]) and "," in text[:500]  # case and punctuation kept


def test_wiki_extraction_is_cached_by_content_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(tmp_path))
    gensim_data.wiki_articles.cache_clear()
    try:
        first = gensim_data.wiki_articles()
        files = list((tmp_path / "text").glob("enwiki-shortened-*.jsonl"))
        digest = gensim_data.file_sha256(gensim_data.datafile(gensim_data.WIKI_DUMP))[:16]
        assert len(files) == 1 and digest in files[0].name
        gensim_data.wiki_articles.cache_clear()
        assert gensim_data.wiki_articles() == first  # read back from the cache
    finally:
        gensim_data.wiki_articles.cache_clear()


def test_corpus_paragraph_unit_and_split():
    from selfsup_text.data import corpus

    docs = _build(od.EmbeddedCorpusOptions, corpus, name="wiki", tokenizer="bytes", max_length=8)
    paras = _build(od.EmbeddedCorpusOptions, corpus, name="wiki", unit="paragraph", tokenizer="bytes", max_length=8)
    assert len(paras) > 5 * len(docs)
    train = _build(od.EmbeddedCorpusOptions, corpus, name="news", split="train", tokenizer="bytes")
    val = _build(od.EmbeddedCorpusOptions, corpus, name="news", split="val", tokenizer="bytes")
    assert len(train) == 264 and len(val) == 29 and not set(train.texts) & set(val.texts)


def test_labelled_sets_are_balanced_stratified_and_headerless():
    from selfsup_text.data import labelled

    for name, names in [("polarity", ["neg", "pos"]), ("newsgroups", ["alt.atheism", "sci.space"])]:
        full = _build(od.LabelledTextOptions, labelled, set=name, split="all", tokenizer="bytes")
        val = _build(od.LabelledTextOptions, labelled, set=name, split="val", tokenizer="bytes")
        assert len(full) == 200 and full.label_names == names
        assert np.bincount(full.labels.numpy()).tolist() == [100, 100]
        assert np.bincount(val.labels.numpy()).tolist() == [20, 20]
        assert full[0]["label"] in (0, 1) and len(full[0]["input_ids"]) <= 256
    news = _build(od.LabelledTextOptions, labelled, set="newsgroups", split="all", tokenizer="bytes")
    assert not any(t.startswith(("Newsgroups:", "Path:", "From:", "Subject:")) for t in news.texts)
    assert sum("Newsgroups:" in t for t in news.texts) <= 1  # one post quotes a forwarded header


def test_lee_pairs_are_the_upper_triangle_of_the_ratings():
    from selfsup_text.data import similarity

    source = _build(od.SimilarityPairsOptions, similarity, set="lee")
    assert len(source) == 50 and source.pairs.shape == (1225, 2) and source.scores.shape == (1225,)
    matrix = np.loadtxt(gensim_data.datafile("similarities0-1.txt"))
    i, j = source.pairs[:, 0].numpy(), source.pairs[:, 1].numpy()
    assert (i < j).all() and len({(a, b) for a, b in zip(i, j)}) == 1225
    np.testing.assert_allclose(source.scores.numpy(), matrix[i, j], rtol=1e-6)
    assert source[0]["input_ids"][0] == source.tokenizer.cls_token_id


@pytest.mark.parametrize("name,pairs,first", [("simlex999", 999, ("old", "new", 1.58)),
                                              ("wordsim353", 353, ("love", "sex", 6.77))])
def test_word_sets(name, pairs, first):
    from selfsup_text.data import similarity

    source = _build(od.SimilarityPairsOptions, similarity, set=name, tokenizer="bytes")
    assert source.pairs.shape == (pairs, 2)
    a, b = source.pairs[0].tolist()
    assert (source.texts[a], source.texts[b]) == first[:2]
    assert source.scores[0].item() == pytest.approx(first[2])
    assert source.tokenizer.decode(source[a]["input_ids"][1:-1]) == first[0]
