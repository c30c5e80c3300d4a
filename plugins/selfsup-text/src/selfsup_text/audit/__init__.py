"""``selfsup audit``: social-bias measurements of a text model (docs/bias.md).

:mod:`.templates` (the template sets and word sets, built in under ``assets/audit`` or from a file),
:mod:`.models` (a run directory, a ``selfsup`` export or a transformers folder as a model to score),
:mod:`.likelihood` (CrowS-Pairs-style likelihood differences of minimally different sentence pairs),
:mod:`.weat` (WEAT/SEAT effect sizes, permutation tests, bootstrap intervals), :mod:`.pipeline`
(the whole audit), :mod:`.report` (JSON, Markdown table, plot) and :mod:`.command` (the click command).
``options`` and ``command`` import neither torch nor transformers."""
