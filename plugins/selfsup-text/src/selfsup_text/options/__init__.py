"""Options models of the text plugin (pydantic only: importing them never imports torch)."""
