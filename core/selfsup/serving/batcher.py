"""Dynamic batching: inputs of concurrent requests are run through the model together.

Each request puts its inputs on one queue and awaits their results. A single batching task takes
the first waiting input, then every input already queued (those that arrived while the model ran
the previous batch), up to ``max_batch``; with ``max_wait > 0`` it also waits up to that long for
more, and hands the batch to ``run`` in a worker thread (the model runs off the event loop, so the
server keeps accepting and answering meanwhile). Waiting is off by default: under load the queue
fills while the model is busy anyway, and a wait only adds latency when it is idle (measured in
bench/serve_load.py); an accelerator that needs large batches may want a few milliseconds. The queue is
bounded: a request whose inputs do not fit (``max_queue`` inputs waiting or running) is refused at
once with :class:`QueueFull` (the service answers 503 with ``Retry-After``) instead of letting
memory grow under overload.

With ``max_batch = 1`` every input runs alone: the service without batching (bench/serve_load.py
compares the two).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


class QueueFull(Exception):
    """The batcher holds ``max_queue`` inputs already; ``retry_after`` is a suggested wait in seconds."""

    def __init__(self, waiting: int, limit: int, retry_after: int):
        super().__init__(f"{waiting} inputs are waiting (at most {limit}); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Item:
    payload: Any
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """``await batcher.submit(payloads)`` -> one result per payload, in order (the exception, for a
    payload that failed).

    ``run(payloads) -> results`` gets a list of at most ``max_batch`` payloads (from one or several
    requests) and returns a list of the same length; an item of the result that is an exception is
    raised to that payload's request only. ``on_batch(size, seconds)`` is told each batch's size and
    run time (metrics)."""

    def __init__(self, run: Callable[[list[Any]], Sequence[Any]], *, max_batch: int, max_wait: float,
                 max_queue: int, on_batch: Callable[[int, float], None] | None = None):
        self.run, self.max_batch, self.max_wait, self.max_queue = run, max_batch, max_wait, max_queue
        self.on_batch = on_batch
        self.pending = 0  # inputs accepted and not yet answered (queued or running)
        self.batch_seconds = 0.05  # running estimate of one batch's time, for Retry-After
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="selfsup-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="selfsup-batcher")

    async def stop(self) -> None:
        """Finish what was accepted, then stop (graceful shutdown)."""
        while self.pending:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, payloads: Sequence[Any]) -> list[Any]:
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        if self.pending + len(payloads) > self.max_queue:
            batches_ahead = max(1, self.pending // self.max_batch)
            raise QueueFull(self.pending, self.max_queue, max(1, round(batches_ahead * self.batch_seconds + 0.5)))
        loop = asyncio.get_running_loop()
        items = [_Item(p, loop.create_future()) for p in payloads]
        self.pending += len(items)
        for item in items:
            self._queue.put_nowait(item)
        try:
            results = await asyncio.gather(*(item.future for item in items), return_exceptions=True)
        finally:
            self.pending -= len(items)
        return list(results)

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            live = [item for item in batch if not item.future.done()]  # a request may have been cancelled
            if not live:
                continue
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.run, [item.payload for item in live])
            except Exception as exc:  # noqa: BLE001 - handed to every request of the batch
                results = [exc] * len(live)
            seconds = time.perf_counter() - start
            self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * seconds
            if self.on_batch is not None:
                self.on_batch(len(live), seconds)
            for item, result in zip(live, results):
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
