"""The training loop and what it needs (data streams, optimizers, checkpoints, DDP, metrics).

Importing this package imports torch; the CLI does so only for ``train`` and ``eval``.
"""
