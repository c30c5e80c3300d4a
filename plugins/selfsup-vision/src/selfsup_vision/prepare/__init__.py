"""``selfsup prepare-images``: decode, orient, convert and downsize images once, into WebDataset shards.

Training then decodes small JPEGs from tar shards (the ``webdataset`` source) instead of full-size
photos every epoch. See :mod:`.command` and :mod:`.images`, and docs/vision.md ("Preparing data").
"""
