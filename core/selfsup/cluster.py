"""k-means: moved to :mod:`selfsup.lib.clustering` (the public API); this name stays for older imports."""

from selfsup.lib.clustering import KMeansResult, kmeans

__all__ = ["KMeansResult", "kmeans"]
