"""Dynamic micro-batching: requests that arrive within a few milliseconds run as one batch.

A burst of single-image requests costs one onnxruntime call per batch instead of one per image,
and while every inference slot is busy the requests wait in order (the caller bounds how many
may wait, and for how long). Threads, not asyncio: the batcher works whatever event loop (or
none) its callers run in.

``submit(x)`` returns a ``concurrent.futures.Future`` of ``x``'s output row. The future stays
*pending* while it waits for a slot and turns *running* when its batch is formed, so a caller
that gives up waiting can ``cancel()`` it exactly when it has not started (``cancel`` fails
once it runs): nothing is computed for a request nobody waits for any more.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class MicroBatcher:
    """Runs ``predict(batch) -> outputs`` on stacked inputs, ``slots`` batches at a time.

    Once a slot is free, the first waiting input starts a batch; inputs arriving within
    ``window_s`` join it, up to ``max_batch``. Inputs must share one shape.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], slots: int, max_batch: int,
                 window_s: float):
        self.predict, self.max_batch, self.window_s = predict, max_batch, window_s
        self._waiting: collections.deque[tuple[np.ndarray, Future]] = collections.deque()
        self._cond = threading.Condition()
        self._slots = threading.Semaphore(slots)
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix="infer")
        self._closed = False
        self.stats = {"batches": 0, "batched": 0, "largest": 0}
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, x: np.ndarray) -> Future:
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._waiting.append((x, future))
            self._cond.notify()
        return future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the batching thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    break
            self._slots.acquire()  # waits while every slot runs a batch; requests queue meanwhile
            batch = self._collect()
            if not batch:
                self._slots.release()
                continue
            try:
                self._pool.submit(self._run, batch)
            except RuntimeError:  # the pool shut down while the app stops
                self._slots.release()
                break
        self._fail_waiting()

    def _collect(self) -> list[tuple[np.ndarray, Future]]:
        """Up to ``max_batch`` waiting inputs, waiting at most ``window_s`` for late ones; each
        is marked running as it is taken (one whose caller gave up is dropped)."""
        batch: list[tuple[np.ndarray, Future]] = []
        deadline = time.monotonic() + self.window_s
        with self._cond:
            while len(batch) < self.max_batch:
                if self._waiting:
                    item = self._waiting.popleft()
                    if item[1].set_running_or_notify_cancel():
                        batch.append(item)
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closed or not batch:
                    break
                self._cond.wait(left)
        return batch

    def _run(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        try:
            outputs = self.predict(np.stack([x for x, _ in batch]))
            for (_, future), row in zip(batch, outputs, strict=True):
                future.set_result(row)
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            with self._cond:
                self.stats["batches"] += 1
                self.stats["batched"] += len(batch)
                self.stats["largest"] = max(self.stats["largest"], len(batch))
            self._slots.release()

    def _fail_waiting(self) -> None:
        with self._cond:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for _, future in waiting:
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the server is stopping"))

    def snapshot(self) -> dict[str, Any]:
        """Counters for ``/health``: batches run, requests in them, the largest batch."""
        return {**self.stats, "waiting": len(self._waiting)}
