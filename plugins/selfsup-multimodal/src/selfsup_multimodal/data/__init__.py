"""Paired data sources, one module per source (digit_captions, spoken_words); pairs.py holds what
they share.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
