"""Speech data sources, one module per source (synthesized, folder, manifest), the audio reading
(audio_io) and batching (collate) they share, and their serving decoders (serving).

Imports nothing: ``options`` is torch-free, the source modules are imported by the factories."""
