"""Options models of the speech plugin (pydantic only: importing them never imports torch)."""
