"""The engine's streams: chunked work in order, on parallel threads, bounded, never deadlocking."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

from pipeline.vision.streams import IN_FLIGHT_PER_STREAM, Streams, batched, usable_cores


def test_usable_cores_follows_the_affinity_mask() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0)) >= 1


def test_batched_cuts_consecutive_chunks() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []


def test_chunks_run_on_parallel_streams_and_come_back_in_order() -> None:
    streams = Streams(3)
    running, most = 0, 0
    lock = threading.Lock()
    names: set[str] = set()

    def work(chunk: list[int]) -> list[int]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            names.add(threading.current_thread().name)
        time.sleep(0.01 * (chunk[0] % 3))  # later chunks may finish first
        with lock:
            running -= 1
        return [x * x for x in chunk]

    try:
        out = [y for chunk in streams.map_chunks(work, range(40), 4) for y in chunk]
    finally:
        streams.close()
    assert out == [x * x for x in range(40)]
    assert 1 < most <= 3
    assert all(name.startswith("facepipe-stream") for name in names)


def test_items_are_drawn_lazily_with_a_bounded_window() -> None:
    streams = Streams(2)
    drawn = 0

    def items() -> Iterator[int]:
        nonlocal drawn
        for i in range(1000):
            drawn += 1
            yield i

    try:
        results = streams.map_chunks(lambda chunk: sum(chunk), items(), 4)
        next(results)
        assert drawn <= 4 * (IN_FLIGHT_PER_STREAM * 2 + 1)
        results.close()
    finally:
        streams.close()
    assert drawn < 1000


def test_work_on_a_stream_runs_nested_batches_inline() -> None:
    streams = Streams(2)

    def outer(chunk: list[int]) -> list[int]:
        assert streams.in_stream()
        # every stream busy with an outer chunk: queueing the inner ones would deadlock
        return [y for part in streams.map_chunks(lambda c: [x + 1 for x in c], chunk, 1) for y in part]

    try:
        out = [y for chunk in streams.map_chunks(outer, range(20), 5) for y in chunk]
    finally:
        streams.close()
    assert out == list(range(1, 21))
    assert not streams.in_stream()


def test_one_stream_runs_in_the_calling_thread() -> None:
    streams = Streams(1)
    caller = threading.current_thread().name
    seen = [
        name
        for chunk in streams.map_chunks(lambda c: [threading.current_thread().name] * len(c), range(5), 2)
        for name in chunk
    ]
    assert seen == [caller] * 5
