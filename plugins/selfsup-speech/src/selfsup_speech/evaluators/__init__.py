"""Speech evaluators: the SUPERB-style frozen-feature probe (probe.py).

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
