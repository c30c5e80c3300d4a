"""Step 3 of ``selfsup prepare``: exact and near-duplicate removal (the first occurrence is kept).

Exact duplicates: equal SHA-256 of the cleaned text. Near duplicates: MinHash (Broder 1997, "On the
resemblance and containment of documents") signatures of word 5-gram shingles, indexed with
locality-sensitive hashing (datasketch ``MinHashLSH``, Leskovec, Rajaraman & Ullman, "Mining of
Massive Datasets", ch. 3); a document is dropped when an earlier kept document is an LSH candidate
whose estimated Jaccard similarity is at least ``threshold``. This is the de-duplication used for
large LM corpora (Lee et al. 2022, "Deduplicating Training Data Makes Language Models Better").
The MinHash seed is fixed, so the result is deterministic.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
MINHASH_SEED = 1


def exact_duplicates(texts: Sequence[str]) -> list[bool]:
    """``True`` for every text equal to an earlier one."""
    seen: set[bytes] = set()
    flags = []
    for text in texts:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        flags.append(digest in seen)
        seen.add(digest)
    return flags


def shingles(text: str, n: int = 5) -> set[bytes]:
    """Word n-grams of ``text`` (lowercased words; the whole text when it has fewer than n words)."""
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


def near_duplicates(texts: Sequence[str], *, threshold: float, num_perm: int = 128, ngram: int = 5) -> list[bool]:
    """``True`` for every text whose word-``ngram`` Jaccard similarity (MinHash estimate) with an
    earlier kept text is at least ``threshold``."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[str, MinHash] = {}
    flags = []
    for i, text in enumerate(texts):
        signature = MinHash(num_perm=num_perm, seed=MINHASH_SEED)
        signature.update_batch(list(shingles(text, ngram)))
        duplicate = any(kept[key].jaccard(signature) >= threshold for key in lsh.query(signature))
        flags.append(duplicate)
        if not duplicate:
            key = str(i)
            lsh.insert(key, signature)
            kept[key] = signature
    return flags
