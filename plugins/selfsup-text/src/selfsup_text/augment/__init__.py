"""Augmentations of token ids and of text.

Token augmentations (:mod:`.tokens`): span crop, deletion, substitution, swap of ``input_ids``.

Text augmentations edit the words of a document, not its ids: :mod:`.text` turns a sample's ids back
into text, edits it and tokenizes the result again; each method is one module (:mod:`.eda` with its
WordNet reader :mod:`.wordnet`, :mod:`.seq2seq` for back-translation and model paraphrase,
:mod:`.counterfactual` for counterfactual data augmentation); :mod:`.command` is ``selfsup augment``
(texts in, augmented copies out as JSONL). See docs/text-augmentation.md.

Imports nothing: ``options`` and ``command`` are torch-free, the other modules are imported by the factories."""
