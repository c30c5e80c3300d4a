"""Preemption: SIGTERM (a cluster's preemption, ``kill``) and SIGINT (Ctrl-C) finish the current
optimizer step, write a checkpoint and stop with :data:`EXIT_PREEMPTED`; a second signal exits at once.

Under ``torchrun`` every rank gets the signal (torchrun relays its own SIGTERM/SIGINT to the
workers as SIGTERM); the ranks agree at the end of each step (one all-reduce, shared with the
divergence check) so they all stop after the same step and save one consistent checkpoint. A
signal repeated within :data:`REPEAT_WINDOW_S` seconds counts as the same request: a launcher
relaying a signal the workers also got directly (Ctrl-C reaches the whole process group; a
scheduler may signal every process of a job) must not turn a graceful stop into an abrupt one.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType
from typing import Any

#: Exit status of a run stopped by a signal after saving (EX_TEMPFAIL: "try again later").
EXIT_PREEMPTED = 75

#: Seconds within which a repeated signal is taken as the same request.
REPEAT_WINDOW_S = 1.0

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """The run stopped on a signal after writing ``checkpoint`` (``None`` if none could be written)."""

    def __init__(self, signum: int, step: int, checkpoint: Any):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint"
        super().__init__(f"{name} received: stopped after step {step} and wrote {where}; "
                         f"continue with `selfsup train RECIPE --resume`")


class PreemptionGuard:
    """A context manager that turns the first SIGTERM/SIGINT into a flag (:attr:`signum`) the loop
    checks after each step; a second one (after :data:`REPEAT_WINDOW_S`) exits the process at once
    with status 128 + signal number. Handlers are only installed in the main thread and restored on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._first_at = signum, now
            print(f"\n{signal.Signals(signum).name} received: finishing the current step, then saving a checkpoint "
                  f"(send it again to stop at once)", file=sys.stderr, flush=True)
            return
        if now - self._first_at < REPEAT_WINDOW_S:
            return  # the same request relayed by a launcher
        print(f"{signal.Signals(signum).name} received again: stopping at once without saving", file=sys.stderr,
              flush=True)
        os._exit(128 + signum)

    def __enter__(self) -> PreemptionGuard:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None
