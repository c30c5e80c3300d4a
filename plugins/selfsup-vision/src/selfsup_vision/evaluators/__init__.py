"""Image evaluators on frozen features: k-means NMI/ARI and a t-SNE plot.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
