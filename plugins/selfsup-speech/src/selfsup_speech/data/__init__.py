"""Speech data sources, one module per source (synthesized, folder, manifest), and the audio reading
(audio_io) and batching (collate) they share.

Imports nothing: ``options`` is torch-free, the source modules are imported by the factories."""
