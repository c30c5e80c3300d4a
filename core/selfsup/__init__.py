"""selfsup: a plugin-based ecosystem for self-supervised learning (the core).

Plugins mark hook implementations with :data:`hookimpl`::

    import selfsup

    @selfsup.hookimpl
    def register_pretext_tasks(register):
        register("my_task", build_my_task, options=MyTaskOptions, modality="vision", summary="...")

The Python API (``selfsup.train``, ``finetune``, ``evaluate``, ``load``, ``export``, ``open_run``)
lives in :mod:`selfsup.api`; docs/python-api.md shows it::

    run = selfsup.train("simclr-digits", overrides={"train.epochs": 2})
    model = selfsup.load(run)

Nothing here imports torch: ``selfsup --help`` and plugin discovery stay fast (the API's names
load on first use).
"""

from typing import Any

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("selfsup")

_API = ("train", "finetune", "evaluate", "load", "export", "open_run", "Run", "Model")

__all__ = ["hookimpl", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from selfsup import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'selfsup' has no attribute {name!r}")
