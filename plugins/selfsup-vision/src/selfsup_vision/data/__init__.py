"""Image data sources, one module per source (arrays: digits and mnist5k; folder; shards: webdataset).

Imports nothing: ``options`` is torch-free, the source modules are imported by the factories."""
