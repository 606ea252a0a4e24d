"""How the engine uses the CPU cores: a pool of single-threaded streams running small chunks.

On CPUs, one ONNX Runtime session run with several intra-op threads scales less than linearly
on the small tensors of face models (measured on 2 cores: embedding one face 13.9 ms on 1 thread,
9.1 ms on 2), while separate images on separate cores scale almost linearly (two single-threaded
streams keep ~1.94 of 2 cores busy: 106-108 images/s against 57 on one). So for batches the
engine runs sessions with one intra-op thread each and spreads work over
``count`` streams (threads; ONNX Runtime, OpenCV and numpy release the GIL), one per core of the
thread budget. Work is cut into consecutive chunks of a few items; results come back in item
order, with a bounded number of chunks in flight.

Work submitted from inside a stream runs inline in that stream (never queued behind itself), so
code running on a stream may call the engine's batch methods freely.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

IN_FLIGHT_PER_STREAM = 2
"""Chunks queued or running per stream: one running, one ready to start when it finishes."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; os.cpu_count() where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def ordered_window(
    submit: Callable[[T], Future[R]], items: Iterable[T], window: int
) -> Generator[R, None, None]:
    """Results of ``submit(item)`` in item order, with at most ``window`` futures in flight.

    Closing the generator early cancels the futures that have not started.
    """
    in_flight: deque[Future[R]] = deque()
    try:
        for item in items:
            in_flight.append(submit(item))
            if len(in_flight) >= window:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:
        for future in in_flight:
            future.cancel()


class Streams:
    """``count`` worker threads that run chunks of work in parallel, results in order."""

    def __init__(self, count: int) -> None:
        self.count = max(1, int(count))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _mark_worker(self) -> None:
        self._local.worker = True

    def in_stream(self) -> bool:
        """True when the calling thread is one of these streams."""
        return bool(getattr(self._local, "worker", False))

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.count,
                    thread_name_prefix="facepipe-stream",
                    initializer=self._mark_worker,
                )
            return self._pool

    def map_chunks(
        self, work: Callable[[list[T]], R], items: Iterable[T], chunk_size: int
    ) -> Generator[R, None, None]:
        """``work(chunk)`` for consecutive chunks of ``chunk_size`` items, in order, on the streams.

        Lazy: items are drawn as streams free up, at most IN_FLIGHT_PER_STREAM chunks per stream
        are in flight, so memory stays bounded whatever the number of items. With one stream, or
        when called from a stream, the chunks run one after the other in the calling thread.
        """
        chunks = batched(items, max(1, chunk_size))
        if self.count == 1 or self.in_stream():
            return (work(chunk) for chunk in chunks)
        pool = self._executor()
        return ordered_window(
            lambda chunk: pool.submit(work, chunk), chunks, IN_FLIGHT_PER_STREAM * self.count
        )

    def close(self) -> None:
        """Stop the worker threads (a later map_chunks starts new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
