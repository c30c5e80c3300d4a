"""Token augmentations (tokens.py): span crop, deletion, substitution, swap.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
