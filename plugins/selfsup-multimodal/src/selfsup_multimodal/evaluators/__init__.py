"""The ``retrieval`` evaluator (retrieval.py): cross-modal recall@k both ways.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
