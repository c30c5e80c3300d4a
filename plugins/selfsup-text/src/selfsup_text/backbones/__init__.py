"""The transformers backbone (transformer.py): GPT-2/Llama decoders and BERT encoders.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
