"""Text evaluators, one module per evaluator (perplexity, mlm_accuracy, nsp_accuracy, sts); batches.py
holds the held-out batching they share.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
