"""The ``clip`` task (clip.py): symmetric InfoNCE between two encoders.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
