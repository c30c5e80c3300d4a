"""Fine-tuning heads for text (``register_heads``): token classification."""
