"""Image augmentations: single transforms (transforms.py) and multi-view / multi-crop generators (views.py).

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
