"""A plugin that times selfsup's training loop, for bench scripts that compare it with another loop."""

from __future__ import annotations

import time

import selfsup


class Clock:
    """From ``on_train_start`` (data loaded, model built) to the ``on_step_end`` of step ``last_step``."""

    def __init__(self, last_step: int):
        self.last_step, self.start, self.end = last_step, 0.0, 0.0

    @selfsup.hookimpl
    def on_train_start(self, run):
        self.start = time.perf_counter()

    @selfsup.hookimpl
    def on_step_end(self, run, step, metrics):
        if step == self.last_step:
            self.end = time.perf_counter()
