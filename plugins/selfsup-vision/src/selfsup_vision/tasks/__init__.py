"""Image pretext tasks, one module per method: SimCLR, SwAV, MAE, DeepCluster.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
