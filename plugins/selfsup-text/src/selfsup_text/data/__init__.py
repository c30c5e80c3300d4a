"""Text data sources, one module per source (files, jsonl, hf, shards, corpus, labelled, similarity,
inline), the helpers they share (base, reading, collate, gensim_data) and their serving decoders
(serving).

Imports nothing: ``options`` is torch-free, the source modules are imported by the factories."""
