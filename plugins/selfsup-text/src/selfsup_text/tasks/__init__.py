"""Text pretext tasks, one module per method (clm, mlm, nsp, simcse); common.py holds the helpers
they share, linear_ce.py the chunked LM head + loss of clm.

Imports nothing: ``options`` is torch-free, the other modules are imported by the factories."""
