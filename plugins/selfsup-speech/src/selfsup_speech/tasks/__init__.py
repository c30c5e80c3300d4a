"""Speech pretext tasks, one module per method (wav2vec2, hubert, apc); masking.py holds the span
masking wav2vec2 and hubert share, pretrained.py loads the earlier model hubert's later iterations cluster.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
