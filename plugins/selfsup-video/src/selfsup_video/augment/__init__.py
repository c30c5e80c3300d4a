"""Video augment, one module per component.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
