"""Back-translation and model paraphrase with local transformers seq2seq models, batched and cached.

* ``back_translation``: text -> pivot language -> text (Sennrich, Haddow & Birch 2016, "Improving Neural
  Machine Translation Models with Monolingual Data", ACL; as data augmentation for classification: Yu et
  al. 2018, "QANet", ICLR, and Xie et al. 2020, "Unsupervised Data Augmentation for Consistency Training",
  NeurIPS). Two models (a MarianMT pair such as opus-mt-en-de + opus-mt-de-en, Tiedemann & Thottingal 2020)
  or one multilingual model, steered by language tokens (M2M100, NLLB, mBART: ``source_lang``/``pivot_lang``)
  or by prefixes (T5: ``"translate English to German: "``). Defaults follow UDA's back-translation: random
  sampling at temperature 0.8, one beam, batches of 16, documents split into sentences.
* ``paraphrase``: text -> one seq2seq paraphrasing model (e.g. a T5 fine-tuned for paraphrase, with its task
  prefix ``"paraphrase: "``) -> text; nucleus sampling (Holtzman et al. 2020, "The Curious Case of Neural
  Text Degeneration", ICLR) with p = 0.9 by default.

Models are folders (relative to the recipe) or ids of models already in the Hugging Face cache, loaded
with ``local_files_only=True``: nothing is ever downloaded. They load on the first text the cache does
not hold, so a fully cached run needs no model at all.

**Sampling, seeded per text.** ``generate``'s own sampling draws from torch's global generator, so a
text's output would depend on the other texts in its batch. Here a logits processor draws each row's
token from that row's own ``torch.Generator`` (seeded by the text's seed) and leaves only that token
possible; generation then runs greedily. A text's output is therefore the same alone or in any batch.
Beam search and greedy decoding (``do_sample = false``) use no seed.

**Cache.** Every output is stored in ``<cache_dir>/seq2seq.sqlite``, keyed by the sha256 of: the model
folder's content (the sha256 of every file, memoised by path, size, mtime and inode), the generation
settings, the prefix and language tokens, the seed (when sampling), the transformers version and the
text. A re-run generates nothing; a changed model file changes the key. Back-translation caches each
direction separately. Outputs do not depend on the device in the key (CPU and GPU share entries).

Inputs longer than ``max_input_tokens`` are cut (counted in ``stats["truncated_inputs"]``); an empty
output keeps the original sentence (``stats["empty_outputs"]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from selfsup.components import BuildContext
from selfsup.lib.seeding import sample_seed
from selfsup_text.augment.text import TextAugmentation, text_generator
from selfsup_text.data.base import sentence_char_starts

CACHE_FILE = "seq2seq.sqlite"
_SEED_LIMIT = (1 << 63) - 1


def default_cache_dir() -> Path:
    """``$SELFSUP_CACHE_DIR/seq2seq``, else ``$XDG_CACHE_HOME/selfsup/seq2seq``, else ``~/.cache/selfsup/seq2seq``."""
    if os.environ.get("SELFSUP_CACHE_DIR"):
        return Path(os.environ["SELFSUP_CACHE_DIR"]) / "seq2seq"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "selfsup" / "seq2seq"


# ---------------------------------------------------------------------------------------------- cache


class GenerationCache:
    """Outputs by key, and file hashes by (path, size, mtime, inode), in one SQLite file (WAL mode, so
    data-loader workers and parallel runs can share it). Opened lazily, once per process."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).expanduser()
        self.path = self.directory / CACHE_FILE
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"directory": self.directory, "path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"])

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, output TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS files (path TEXT, size INTEGER, mtime_ns INTEGER, inode INTEGER, "
                         "sha256 TEXT NOT NULL, PRIMARY KEY (path, size, mtime_ns, inode))")
            conn.commit()
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            db = self._db()
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                found.update(db.execute(f"SELECT key, output FROM outputs WHERE key IN ({marks})", chunk).fetchall())
        return found

    def put_many(self, items: dict[str, str]) -> None:
        if not items:
            return
        with self._lock:
            db = self._db()
            db.executemany("INSERT OR REPLACE INTO outputs (key, output) VALUES (?, ?)", list(items.items()))
            db.commit()

    def file_hash(self, file: Path) -> str:
        """The sha256 of ``file``'s content, memoised by its path, size, mtime and inode."""
        st = file.stat()
        ident = (str(file.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            row = self._db().execute("SELECT sha256 FROM files WHERE path=? AND size=? AND mtime_ns=? AND inode=?",
                                     ident).fetchone()
        if row:
            return row[0]
        digest = sha256_file(file)
        with self._lock:
            db = self._db()
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", (*ident, digest))
            db.commit()
        return digest


def sha256_file(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(folder: Path, cache: GenerationCache | None = None) -> str:
    """The sha256 of a model folder's content: every file (symlinks followed, hidden names skipped), by
    relative path and content hash."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise ValueError(f"{folder} holds no files")
    h = hashlib.sha256()
    for file in files:
        digest = cache.file_hash(file) if cache is not None else sha256_file(file)
        h.update(f"{file.relative_to(folder).as_posix()}\0{digest}\n".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- models


def resolve_model(spec: str, context: BuildContext) -> Path:
    """The folder of ``spec``: a local folder (relative to the recipe), else a model id already in the
    Hugging Face cache (``local_files_only``: never downloads). Raises ``FileNotFoundError`` explaining
    how to get the model otherwise."""
    path = context.resolve(spec)
    if path.is_dir():
        folder = path
    else:
        folder = None
        if not spec.startswith((".", "/", "~")) and spec.count("/") <= 1:
            from huggingface_hub import snapshot_download

            try:
                folder = Path(snapshot_download(spec, local_files_only=True))
            except Exception:  # not cached (LocalEntryNotFoundError), or not a valid repo id
                folder = None
        if folder is None:
            from huggingface_hub import constants

            raise FileNotFoundError(
                f"seq2seq model {spec!r}: no folder {path}, and no model of that id in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}). Download it once where there is a network: `hf download {spec}` "
                f"(`huggingface-cli download` before huggingface_hub 1.0; then set HF_HUB_OFFLINE=1), or "
                f"`hf download {spec} --local-dir DIR` and give DIR")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"seq2seq model {spec!r}: {folder} has no config.json (not a transformers model "
                                f"folder)")
    return folder


class SeededSampling(LogitsProcessor):
    """A logits processor that samples each row's next token from its own generator (temperature, then
    nucleus filtering) and returns scores allowing only that token, so greedy search takes it."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.detach().float().cpu() / self.temperature  # [B, V]
        probs = torch.softmax(logits, dim=-1)  # [B, V]
        if self.top_p < 1:
            sorted_probs, order = probs.sort(dim=-1, descending=True)  # [B, V]
            before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the more likely tokens
            sorted_probs[before >= self.top_p] = 0  # keeps at least the most likely token
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        chosen = []
        for row, generator in zip(probs, self.generators):
            if not torch.isfinite(row).all() or row.sum() <= 0:  # every token forbidden: keep the best score
                chosen.append(int(logits[len(chosen)].argmax()))
            else:
                chosen.append(int(torch.multinomial(row, 1, generator=generator)))
        out = torch.full_like(scores, float("-inf"))  # [B, V]
        out[torch.arange(len(chosen), device=scores.device), torch.tensor(chosen, device=scores.device)] = 0
        return out


class Seq2SeqGenerator:
    """One local seq2seq model with its generation settings, prefix and language tokens, behind the cache.

    :meth:`generate` returns one output per text; ``model_calls`` counts ``model.generate`` calls and
    ``stats`` the texts generated, served from the cache, cut or answered empty."""

    def __init__(self, spec: str, options: Any, context: BuildContext, *, prefix: str = "",
                 source_lang: str | None = None, target_lang: str | None = None,
                 cache: GenerationCache | None = None):
        import transformers

        self.spec = spec
        self.folder = resolve_model(spec, context)
        self.options = options
        self.prefix = prefix
        self.source_lang, self.target_lang = source_lang, target_lang
        self.cache = cache
        self.fingerprint = folder_fingerprint(self.folder, cache)
        settings = {"max_input_tokens": options.max_input_tokens, "max_new_tokens": options.max_new_tokens,
                    "num_beams": options.num_beams, "do_sample": options.do_sample}
        if options.do_sample:
            settings.update(temperature=options.temperature, top_p=options.top_p)
        self._identity = {"model": self.fingerprint, "settings": settings, "prefix": prefix,
                          "source_lang": source_lang, "target_lang": target_lang,
                          "transformers": transformers.__version__}
        self.model_calls = 0
        self.stats: Counter[str] = Counter()
        self._model = self._tokenizer = None
        self._forced_bos: int | None = None
        self._load_lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_model=None, _tokenizer=None, _load_lock=None)  # workers load their own copy
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()

    def key(self, text: str, seed: int | None) -> str:
        content = {**self._identity, "seed": seed if self.options.do_sample else None, "text": text}
        return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            from selfsup.lib.distributed import resolve_device

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
                model = AutoModelForSeq2SeqLM.from_pretrained(self.folder, local_files_only=True)
            except (OSError, ValueError, ImportError, KeyError) as exc:
                raise ValueError(f"seq2seq model {self.spec!r}: cannot load a tokenizer and a seq2seq model from "
                                 f"{self.folder}: {exc}") from exc
            if self.source_lang is not None and hasattr(tokenizer, "src_lang"):
                tokenizer.src_lang = self.source_lang
            if self.target_lang is not None:
                self._forced_bos = _language_token(tokenizer, self.target_lang, self.spec)
            self._device = resolve_device(self.options.device)
            self._model, self._tokenizer = model.eval().to(self._device), tokenizer

    # ------------------------------------------------------------------ generation
    def generate(self, texts: Sequence[str], seeds: Sequence[int]) -> list[str]:
        """One output per text (stripped; ``""`` when the model gave nothing). ``seeds[i]`` seeds text
        ``i``'s sampling."""
        keys = [self.key(t, s) for t, s in zip(texts, seeds)]
        found = self.cache.get_many(list(dict.fromkeys(keys))) if self.cache is not None else {}
        todo: dict[str, tuple[str, int]] = {}
        for key, text, seed in zip(keys, texts, seeds):
            if key not in found and key not in todo:
                todo[key] = (text, seed)
        self.stats["cache_hits"] += sum(k in found for k in keys)
        if todo:
            self._load()
            pending = list(todo.items())
            lengths = [len(self._tokenizer(self.prefix + text)["input_ids"]) for _, (text, _) in pending]
            self.stats["truncated_inputs"] += sum(n > self.options.max_input_tokens for n in lengths)
            order = sorted(range(len(pending)), key=lambda i: lengths[i])  # similar lengths together: less padding
            size = self.options.batch_size
            for start in range(0, len(order), size):
                batch = [pending[i] for i in order[start : start + size]]
                outputs = self._generate([text for _, (text, _) in batch], [seed for _, (_, seed) in batch])
                new = {key: out for (key, _), out in zip(batch, outputs)}
                found.update(new)
                if self.cache is not None:
                    self.cache.put_many(new)  # written batch by batch: an interrupted run keeps what it made
            self.stats["generated"] += len(todo)
        outputs = [found[k] for k in keys]
        self.stats["empty_outputs"] += sum(not o for o in outputs)
        return outputs

    def _generate(self, texts: list[str], seeds: list[int]) -> list[str]:
        o = self.options
        encoded = self._tokenizer([self.prefix + t for t in texts], return_tensors="pt", padding=True,
                                  truncation=True, max_length=o.max_input_tokens)
        encoded = {k: v.to(self._device) for k, v in encoded.items()}  # input_ids, attention_mask: [B, T]
        config = self._model.generation_config
        kwargs: dict[str, Any] = {"max_new_tokens": o.max_new_tokens, "num_beams": o.num_beams, "do_sample": False,
                                  "num_return_sequences": 1}
        for name in ("temperature", "top_p", "top_k", "typical_p"):  # our sampler replaces the model's own
            if getattr(config, name, None) is not None:
                kwargs[name] = None
        if o.do_sample:
            kwargs["logits_processor"] = LogitsProcessorList([SeededSampling(seeds, o.temperature, o.top_p)])
        if self._forced_bos is not None:
            kwargs["forced_bos_token_id"] = self._forced_bos
        with torch.inference_mode():
            generated = self._model.generate(**encoded, **kwargs)  # [B, T_out]
        self.model_calls += 1
        return [t.strip() for t in self._tokenizer.batch_decode(generated, skip_special_tokens=True)]


def _language_token(tokenizer: Any, lang: str, spec: str) -> int:
    """The id of the language token that starts the output in ``lang`` (M2M100 ``__de__``, NLLB ``deu_Latn``)."""
    get = getattr(tokenizer, "get_lang_id", None)
    if callable(get):
        try:
            return int(get(lang))
        except (KeyError, ValueError):
            pass
    unk = tokenizer.unk_token_id
    for token in (lang, f"__{lang}__", f">>{lang}<<"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != unk:
            return int(token_id)
    raise ValueError(f"seq2seq model {spec!r}: its tokenizer has no language token for {lang!r} (tried {lang}, "
                     f"__{lang}__, >>{lang}<<); use the model's own codes, or prefixes instead")


# ---------------------------------------------------------------------------------------------- augmentations


class Seq2SeqAugmentation(TextAugmentation):
    """Texts through one or more :class:`Seq2SeqGenerator` stages in turn (back-translation: two, paraphrase:
    one), sentence by sentence with ``split_sentences``. :meth:`edit_batch` batches the whole list;
    :meth:`edit` is a batch of one. ``stats`` adds up the stages' counts (``<stage>_generated``,
    ``<stage>_cache_hits``, ``<stage>_truncated_inputs``, ``<stage>_empty_outputs``)."""

    stage_names: tuple[str, ...] = ()

    def __init__(self, options: Any, context: BuildContext, stages: list[Seq2SeqGenerator]):
        super().__init__(options, context)
        self.stages = stages
        self.split_sentences = options.split_sentences

    @property
    def stats(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for name, stage in zip(self.stage_names, self.stages):
            total.update({f"{name}_{k}": v for k, v in stage.stats.items()})
        return total

    @property
    def model_calls(self) -> int:
        return sum(stage.model_calls for stage in self.stages)

    def edit(self, text: str, generator: torch.Generator) -> str:
        return self._run([text], [_text_seed(generator)])[0]

    def edit_batch(self, texts: Sequence[str], seed: int) -> list[str]:
        """As :meth:`edit` of each text with the generator the base class gives position ``i``, in batches."""
        return self._run(list(texts), [_text_seed(text_generator(seed, i)) for i in range(len(texts))])

    def _run(self, texts: list[str], seeds: list[int]) -> list[str]:
        # Each text -> pieces: (leading space, sentence, trailing space); sentences go through the stages.
        pieces: list[list[list[str]]] = []
        units: list[tuple[int, int]] = []  # (text, piece) of every non-blank sentence
        for t, text in enumerate(texts):
            parts = _split(text) if self.split_sentences else [text]
            row = []
            for part in parts:
                core = part.strip()
                lead = part[: len(part) - len(part.lstrip())]
                row.append([lead, core, part[len(lead) + len(core) :]])
                if core:
                    units.append((t, len(row) - 1))
            pieces.append(row)
        current = [pieces[t][p][1] for t, p in units]
        alive = list(range(len(units)))  # units whose every stage so far gave an output
        for s, stage in enumerate(self.stages):
            if not alive:
                break
            outputs = stage.generate([current[u] for u in alive],
                                     [sample_seed(seeds[units[u][0]], s, 0, units[u][1]) for u in alive])
            for u, out in zip(alive, outputs):
                current[u] = out
            alive = [u for u, out in zip(alive, outputs) if out]
        for u in alive:
            t, p = units[u]
            pieces[t][p][1] = current[u]  # units that came out empty keep their original sentence
        return ["".join(lead + core + trail for lead, core, trail in row) for row in pieces]


def _text_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, _SEED_LIMIT, (1,), generator=generator))


def _split(text: str) -> list[str]:
    starts = sentence_char_starts(text)
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])]


class BackTranslation(Seq2SeqAugmentation):
    """Text -> pivot (``forward_model``) -> text (``backward_model``)."""

    stage_names = ("forward", "backward")

    def __init__(self, options: Any, context: BuildContext):
        cache = _cache(options, context)
        forward = Seq2SeqGenerator(options.forward_model, options, context, prefix=options.forward_prefix,
                                   source_lang=options.source_lang, target_lang=options.pivot_lang, cache=cache)
        backward = Seq2SeqGenerator(options.backward_model or options.forward_model, options, context,
                                    prefix=options.backward_prefix, source_lang=options.pivot_lang,
                                    target_lang=options.source_lang, cache=cache)
        super().__init__(options, context, [forward, backward])


class Paraphrase(Seq2SeqAugmentation):
    """Text -> ``model`` (with ``prefix``) -> text."""

    stage_names = ("paraphrase",)

    def __init__(self, options: Any, context: BuildContext):
        model = Seq2SeqGenerator(options.model, options, context, prefix=options.prefix, cache=_cache(options, context))
        super().__init__(options, context, [model])


def _cache(options: Any, context: BuildContext) -> GenerationCache | None:
    if not options.cache:
        return None
    return GenerationCache(context.resolve(options.cache_dir) if options.cache_dir else default_cache_dir())


def build_back_translation(options: Any, context: BuildContext) -> BackTranslation:
    return BackTranslation(options, context)


def build_paraphrase(options: Any, context: BuildContext) -> Paraphrase:
    return Paraphrase(options, context)
