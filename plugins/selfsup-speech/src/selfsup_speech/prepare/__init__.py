"""``selfsup prepare-audio``: decode, mono-mix, resample and loudness-check audio once, into shards.

Training then reads int16 samples from memory-mapped shards (the ``audio_shards`` source) instead of
decoding and resampling compressed files every epoch. See :mod:`.command` and :mod:`.audio`, and
docs/speech.md ("Preparing data").
"""
