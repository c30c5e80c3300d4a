"""Speech backbones. Both take a collated batch (``audio [B, T]``, optional ``lengths [B]``) and
share one interface, which the pretext tasks and the probe use:

* ``latents(batch) -> (z [B, F, C], padding_mask [B, F])``: per-frame inputs of the sequence model
  (conv features for ``wav2vec2_encoder``, log-mel frames for ``logmel_encoder``); the targets
  of wav2vec 2.0's quantizer and of APC;
* ``contextualize(z, padding_mask, mask=None, all_layers=False)``: the sequence model on ``z``,
  with the frames where ``mask [B, F]`` is True replaced by a learned mask embedding;
  ``[B, F, D]``, or the list of per-layer states with ``all_layers``;
* ``frames(batch) -> (features [B, F, D], padding_mask [B, F])``, ``layers(batch)`` (list of
  ``[B, F, D]``), ``embed(batch) -> [B, D]`` (mean over valid frames);
* ``output_dim`` (D), ``latent_dim`` (C), ``frame_rate`` (frames per second), ``frame_offset``
  (seconds from the clip start to the centre of frame 0), ``num_frames(lengths)``.
"""
