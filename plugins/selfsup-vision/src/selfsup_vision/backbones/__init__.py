"""Image backbones: a small CNN for tiny images and any timm model.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
