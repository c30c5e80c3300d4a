"""Text feedback components for training in rounds (``[rounds.feedback]``, docs/autonomous.md).

* ``salient_spans``: the rule-based salient-span finder (numbers, years and dates, capitalised names
  not at a sentence start), after REALM's salient span masking;
* ``retrieval``: a BM25 index (the ``bm25s`` library) over the passages of the training data;
* ``cloze``: the ``salient_cloze`` feedback: closed-book and open-book salient-span cloze, knowledge
  gaps, the gap curriculum and confidence-filtered self-training.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factory.
"""
