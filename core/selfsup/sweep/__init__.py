"""Hyper-parameter sweeps on Optuna (``selfsup sweep``): a search space file (:mod:`.space`), a
sweep folder and its study (:mod:`.study`, :mod:`.prepare`), workers that train each trial as a
normal run and prune through the lifecycle events (:mod:`.worker`), and the summary (:mod:`.show`).
Imports of Optuna and torch stay inside functions: ``selfsup --help`` does not pay for them."""
