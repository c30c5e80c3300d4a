"""selfsup: a plugin-based ecosystem for self-supervised learning (the core).

Plugins mark hook implementations with :data:`hookimpl`::

    import selfsup

    @selfsup.hookimpl
    def register_pretext_tasks(register):
        register("my_task", build_my_task, options=MyTaskOptions, modality="vision", summary="...")

Nothing here imports torch: ``selfsup --help`` and plugin discovery stay fast.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("selfsup")

__all__ = ["hookimpl", "__version__"]
