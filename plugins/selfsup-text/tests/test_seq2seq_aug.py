"""Back-translation and paraphrase with tiny MarianMT models built and saved here (no hub): the output is
forward-then-backward generation done by hand, batching gives the outputs of one-by-one, the cache
answers re-runs and follows model changes, language tokens and prefixes, errors, the registry and
`selfsup augment`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import selfsup_text
from selfsup.components import BuildContext
from selfsup.testing import AugmentationConformance
from selfsup_text.augment.options import BackTranslationOptions, ParaphraseOptions
from selfsup_text.augment.seq2seq import (
    GenerationCache,
    Seq2SeqGenerator,
    build_back_translation,
    build_paraphrase,
    folder_fingerprint,
)
from selfsup_text.augment.text import text_generator

WORDS = ("the a cat dog sat on mat is good bad movie film very and der die das katze hund gut schlecht film ist "
         "sehr und . ,").split()
LANGS = ["__en__", "__de__"]
TEXTS = ["the cat sat on the mat .", "good movie", "the dog is very bad , the film is good .", "katze",
         "a film", "the cat . The dog sat on the mat . A good film ."]


def make_model(folder: Path, seed: int) -> Path:
    """A 2-layer MarianMT model (random weights, seed) and a word-level tokenizer, saved to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in [*LANGS, *dict.fromkeys(WORDS), "The", "A"]:
        vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins the words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    config = MarianConfig(vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                          max_position_embeddings=64, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                          init_std=1.0)  # large weights: untrained, yet its outputs depend on its input
    torch.manual_seed(seed)
    MarianMTModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq2seq")
    return make_model(root / "en-de", 0), make_model(root / "de-en", 1)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def back_translation(fwd, bwd, **options):
    options = {"forward_model": str(fwd), "backward_model": str(bwd), "max_new_tokens": 8, "cache": False, **options}
    return build_back_translation(BackTranslationOptions(**options), BuildContext(name="bt"))


def by_hand(folder: Path, texts: list[str], *, num_beams: int = 1, max_new_tokens: int = 8) -> list[str]:
    """transformers' own generate(), one text at a time, greedy or beam search."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, local_files_only=True).eval()
    out = []
    for text in texts:
        encoded = tokenizer([text], return_tensors="pt")
        ids = model.generate(**encoded, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False)
        out.append(tokenizer.decode(ids[0], skip_special_tokens=True).strip())
    return out


# ----------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("beams", [1, 3])
def test_back_translation_is_forward_then_backward_generation(models, beams):
    fwd, bwd = models
    texts = TEXTS[:5]  # one sentence each
    aug = back_translation(fwd, bwd, do_sample=False, num_beams=beams, split_sentences=False, batch_size=2)
    expected = by_hand(bwd, by_hand(fwd, texts, num_beams=beams), num_beams=beams)
    assert aug.edit_batch(texts, 0) == expected
    assert len(set(expected)) > 1  # the tiny models do depend on their input
    assert aug.edit(texts[0], torch.Generator().manual_seed(9)) == expected[0]  # deterministic search: seed unused


def test_sentences_are_translated_one_by_one_and_rejoined(models):
    fwd, bwd = models
    text = "the cat .  The dog sat on the mat .\n\nA good film ."
    sentences = ["the cat .", "The dog sat on the mat .", "A good film ."]
    aug = back_translation(fwd, bwd, do_sample=False)
    expected = by_hand(bwd, by_hand(fwd, sentences))
    assert aug.edit_batch([text], 0) == [f"{expected[0]}  {expected[1]}\n\n{expected[2]}"]


@pytest.mark.parametrize("settings", [{"do_sample": False}, {"do_sample": False, "num_beams": 2},
                                      {"do_sample": True}, {"do_sample": True, "top_p": 0.5, "temperature": 1.5}])
def test_batches_give_the_outputs_of_one_by_one(models, settings):
    fwd, bwd = models
    batched = back_translation(fwd, bwd, batch_size=4, **settings).edit_batch(TEXTS, 3)
    single = back_translation(fwd, bwd, batch_size=1, **settings)
    assert [single.edit(t, text_generator(3, i)) for i, t in enumerate(TEXTS)] == batched


def test_pickles_for_data_loader_workers(models, tmp_path):
    import pickle

    fwd, bwd = models
    aug = back_translation(fwd, bwd, cache=True, cache_dir=str(tmp_path / "c"))
    fresh = pickle.loads(pickle.dumps(aug))  # before any model is loaded
    out = aug.edit_batch(TEXTS, 0)
    loaded = pickle.loads(pickle.dumps(aug))  # after: the copy loads its own model, opens its own database
    assert all(stage._model is None for stage in loaded.stages)
    calls = loaded.model_calls
    assert fresh.edit_batch(TEXTS, 0) == out == loaded.edit_batch(TEXTS, 0) and loaded.model_calls == calls


def test_sampling_is_seeded_per_text(models):
    fwd, bwd = models
    aug = back_translation(fwd, bwd, max_new_tokens=12, temperature=2.0)
    runs = [aug.edit_batch(TEXTS[:3], seed) for seed in range(6)]
    assert runs[0] == aug.edit_batch(TEXTS[:3], 0)
    assert len({tuple(r) for r in runs}) == 6  # different seeds, different samples
    greedy = back_translation(fwd, bwd, do_sample=False, max_new_tokens=12)
    assert greedy.edit_batch(TEXTS[:3], 0) == greedy.edit_batch(TEXTS[:3], 1)


def test_truncation_and_empty_outputs_are_counted(models, tmp_path):
    fwd, bwd = models
    aug = back_translation(fwd, bwd, max_input_tokens=4, do_sample=False, split_sentences=False)
    aug.edit_batch(["the cat sat on the mat .", "katze", "   "], 0)
    assert aug.stats["forward_truncated_inputs"] == 1 and aug.stats["forward_generated"] == 2
    assert aug.edit_batch(["   "], 0) == ["   "] and aug.model_calls == 2  # a blank text needs no model
    silent = make_model(tmp_path / "silent", 0)  # its generation config forces </s> as the last token
    config = json.loads((silent / "generation_config.json").read_text())
    (silent / "generation_config.json").write_text(json.dumps({**config, "forced_eos_token_id": 1}))
    paraphrase = build_paraphrase(ParaphraseOptions(model=str(silent), prefix="", max_new_tokens=1, cache=False),
                                  BuildContext(name="p"))
    text = "good movie . The cat sat ."
    assert paraphrase.edit_batch([text], 0) == [text]  # nothing generated: the original sentences stay
    assert paraphrase.stats["paraphrase_empty_outputs"] == 2 and paraphrase.stats["paraphrase_generated"] == 2


# ----------------------------------------------------------------------------- cache


def test_cache_answers_a_rerun_and_follows_model_changes(models, tmp_path):
    fwd, bwd = models
    fwd_copy = make_model(tmp_path / "fwd", 0)
    options = {"cache": True, "cache_dir": str(tmp_path / "cache")}
    first = back_translation(fwd_copy, bwd, **options)
    out = first.edit_batch(TEXTS, 0)
    assert first.model_calls > 0 and first.stats["forward_generated"] > 0
    again = back_translation(fwd_copy, bwd, **options)
    assert again.edit_batch(TEXTS, 0) == out
    assert again.model_calls == 0 and all(stage._model is None for stage in again.stages)  # no model even loaded
    assert again.stats["forward_cache_hits"] == again.stats["backward_cache_hits"] > 0
    assert [again.edit(t, text_generator(0, i)) for i, t in enumerate(TEXTS)] == out and again.model_calls == 0
    other_seed = back_translation(fwd_copy, bwd, **options)
    other_seed.edit_batch(TEXTS, 1)
    assert other_seed.model_calls > 0  # sampling: the seed is part of the key

    make_model(fwd_copy, 5)  # the forward model's weights change
    changed = back_translation(fwd_copy, bwd, **options)
    changed.edit_batch(TEXTS, 0)
    assert changed.stages[0].model_calls > 0 and changed.stats["forward_cache_hits"] == 0
    (fwd_copy / "config.json").write_text((fwd_copy / "config.json").read_text().replace("}", ', "note": 1}', 1))
    assert back_translation(fwd_copy, bwd, **options).stages[0].fingerprint != changed.stages[0].fingerprint


def test_fingerprint_reads_content_and_memoises_by_file_identity(models, tmp_path):
    fwd, _ = models
    cache = GenerationCache(tmp_path / "c")
    assert folder_fingerprint(fwd, cache) == folder_fingerprint(fwd) == folder_fingerprint(fwd, cache)
    assert cache.path.is_file()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        folder_fingerprint(tmp_path / "empty")


def test_generator_counts_calls_and_dedupes(models, tmp_path):
    fwd, _ = models
    opts = ParaphraseOptions(model=str(fwd), do_sample=False, batch_size=2, max_new_tokens=4, cache=False)
    gen = Seq2SeqGenerator(str(fwd), opts, BuildContext(name="g"))
    out = gen.generate(["katze", "katze", "good movie", "a film", "the cat"], [0] * 5)
    assert out[0] == out[1] and gen.stats["generated"] == 4 and gen.model_calls == 2  # 4 distinct texts, batches of 2


# ----------------------------------------------------------------------------- multilingual models


def test_language_tokens_start_the_output(models):
    fwd, _ = models
    opts = BackTranslationOptions(forward_model=str(fwd), source_lang="en", pivot_lang="de", do_sample=False,
                                  max_new_tokens=4, cache=False)
    gen = Seq2SeqGenerator(str(fwd), opts, BuildContext(name="g"), target_lang="de")
    assert all(out.startswith("__de__") for out in gen.generate(TEXTS[:3], [0, 1, 2]))  # forced first token
    aug = build_back_translation(opts, BuildContext(name="bt"))
    assert aug.stages[0].target_lang == "de" and aug.stages[1].target_lang == "en"
    aug.edit_batch(TEXTS[:2], 0)
    bad = Seq2SeqGenerator(str(fwd), opts, BuildContext(name="g"), target_lang="xx")
    with pytest.raises(ValueError, match="no language token for 'xx'"):
        bad.generate(["good movie"], [0])


def test_prefix_is_put_before_the_input(models):
    fwd, _ = models
    plain = build_paraphrase(ParaphraseOptions(model=str(fwd), prefix="", do_sample=False, cache=False,
                                               max_new_tokens=6), BuildContext(name="p"))
    prefixed = build_paraphrase(ParaphraseOptions(model=str(fwd), prefix="very very ", do_sample=False, cache=False,
                                                  max_new_tokens=6), BuildContext(name="p"))
    assert prefixed.edit_batch(TEXTS[:4], 0) == by_hand(fwd, ["very very " + t for t in TEXTS[:4]], max_new_tokens=6)
    assert plain.edit_batch(TEXTS[:4], 0) != prefixed.edit_batch(TEXTS[:4], 0)


# ----------------------------------------------------------------------------- errors and options


def test_missing_or_invalid_model_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no folder .*nowhere.*`hf download "):
        back_translation(tmp_path / "nowhere", tmp_path / "nowhere2")
    with pytest.raises(FileNotFoundError, match="Helsinki-NLP/opus-mt-en-de.*Hugging Face cache"):
        back_translation("Helsinki-NLP/opus-mt-en-de", "Helsinki-NLP/opus-mt-de-en")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        back_translation(tmp_path / "empty", tmp_path / "nowhere")


def test_options_are_checked():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="num_beams = 1"):
        BackTranslationOptions(forward_model="a", backward_model="b", num_beams=4)
    with pytest.raises(ValidationError, match="language tokens"):
        BackTranslationOptions(forward_model="m2m")
    with pytest.raises(ValidationError, match="both source_lang and pivot_lang"):
        BackTranslationOptions(forward_model="m2m", pivot_lang="de")
    BackTranslationOptions(forward_model="t5", forward_prefix="translate English to German: ",
                           backward_prefix="translate German to English: ")
    assert ParaphraseOptions(model="p").prefix == "paraphrase: " and ParaphraseOptions(model="p").top_p == 0.9


# ----------------------------------------------------------------------------- the registry and the CLI


@pytest.fixture(scope="class")
def class_models(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("conformance")
    fwd, bwd = make_model(root / "en-de", 0), make_model(root / "de-en", 1)
    request.cls.augmentation = ("back_translation", {
        "forward_model": str(fwd), "backward_model": str(bwd), "max_new_tokens": 6, "cache": False,
        "tokenizer": "bytes", "temperature": 3.0})
    request.cls.option_variants = {"backward_model": str(fwd), "forward_model": str(bwd), "out_key": "positive_ids",
                                   "max_length": 4, "max_input_tokens": 2, "max_new_tokens": 2, "temperature": 0.05,
                                   "top_p": 0.1, "forward_prefix": "very very ", "backward_prefix": "sehr sehr "}


@pytest.mark.usefixtures("class_models")
class TestBackTranslationConformance(AugmentationConformance):
    plugins = [selfsup_text]
    augmentation = ("back_translation", {})  # set by the fixture
    data = ("texts", {"texts": ["the cat sat on the mat .", "good movie"], "tokenizer": "bytes"})
    inert_options = {
        "batch_size": "batches give the outputs of one-by-one (tested above)",
        "split_sentences": "the data holds one sentence per text",
        "device": "the tests run on the CPU only",
        "cache": "caching changes speed, not outputs (tested above)",
        "cache_dir": "idem",
        "source_lang": "set together with pivot_lang only (validated); language tokens are tested above",
        "pivot_lang": "idem",
        "num_beams": "sampling (the default) takes one beam; beam search is tested above",
    }
    bad_options = [{"num_beams": 2}, {"temperature": 0}, {"top_p": 1.5}, {"batch_size": 0}]


def test_on_token_samples_as_recipes_build_it(models):
    fwd, bwd = models
    context = BuildContext(name="bt")
    source = context.build("data", "texts", {"texts": TEXTS[:3], "tokenizer": "bytes"})
    aug = context.build("augmentations", "back_translation", {
        "forward_model": str(fwd), "backward_model": str(bwd), "do_sample": False, "cache": False,
        "tokenizer": "bytes", "max_new_tokens": 8})
    expected = by_hand(bwd, by_hand(fwd, TEXTS[:3]))
    for i in range(3):
        ids = aug(source[i], torch.Generator().manual_seed(i))["input_ids"]
        assert aug.tokenizer.decode(ids[1:-1].tolist()) == expected[i]


@pytest.mark.slow
def test_augment_command_back_translates_and_caches(models, tmp_path):
    fwd, bwd = models
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS[:4]) + "\n")
    env = {**os.environ, "SELFSUP_PLUGINS": "text", "HF_HUB_OFFLINE": "1", "SELFSUP_CACHE_DIR": str(tmp_path / "c")}
    cmd = [sys.executable, "-m", "selfsup", "augment", "texts.txt", "--aug", "back_translation", "--set",
           f"forward_model={fwd}", "--set", f"backward_model={bwd}", "--set", "max_new_tokens=8", "--copies", "2",
           "--out", "bt.jsonl", "--overwrite"]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    lines = [json.loads(x) for x in (tmp_path / "bt.jsonl").read_text().splitlines()]
    assert [(x["source_index"], x["copy"], x["augmentation"]) for x in lines] == [
        (i, c, "back_translation") for c in (1, 2) for i in range(4)]
    aug = back_translation(fwd, bwd, max_new_tokens=8)
    from selfsup.lib.seeding import sample_seed

    assert [x["text"] for x in lines[:4]] == aug.edit_batch(TEXTS[:4], sample_seed(0, "augment", 1, 0))
    assert "0 failed" in first.stdout and "forward_generated 8" in first.stdout
    assert (tmp_path / "c" / "seq2seq" / "seq2seq.sqlite").is_file()
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "forward_cache_hits 8" in second.stdout and "forward_generated" not in second.stdout
    assert [json.loads(x) for x in (tmp_path / "bt.jsonl").read_text().splitlines()] == lines
