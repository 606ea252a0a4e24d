"""The Ray engine: the same jobs with the models in Ray actors, on one machine or a cluster.

The driver (the process running the job) walks the folder, reads and hashes each file, and sends
the bytes of files that need work to a pool of actors; each actor holds one face engine (model
sessions loaded once) and returns the decoded size and faces of a batch of images. Results come
back in walk order and only the driver writes: the store and the ledger have exactly one writer.
Files therefore only need to be readable by the driver, and every node needs facepipe installed;
only the driver needs to reach the store (a shared PostgreSQL store included): actors are not
given its URL.

Each actor asks Ray for ``num_cpus`` CPUs, and for one GPU when the provider is 'cuda'.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from pipeline.config import Settings
from pipeline.errors import InvalidParameterException
from pipeline.jobs.analyzers import (
    FileOutcome,
    FileTask,
    ImageAnalysis,
    analyze_blobs,
    batched,
    ordered_window,
    read_task,
)

RAY_MISSING = "the Ray engine needs the 'ray' package: pip install 'facepipe[ray]' (or pip install ray)"
"""The message given when --engine ray is asked for and Ray is not installed."""


def import_ray() -> Any:
    """The ``ray`` module, or InvalidParameterException saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InvalidParameterException(RAY_MISSING) from None
    return ray


def actor_settings(settings: Settings, threads: int) -> Settings:
    """The settings an actor gets: the engine's, with ``threads`` ONNX Runtime threads and without
    the store URL (actors never open the store, and the URL may hold a password that Ray would
    otherwise carry to every node and keep with the actor's definition)."""
    return replace(settings, threads=threads, store=None)


class _FaceActor:
    """Holds one face engine; analyzes batches of image bytes (runs inside a Ray worker)."""

    def __init__(self, settings: Settings, max_image_bytes: int) -> None:
        from pipeline.vision.engine import get_engine

        self.engine = get_engine(settings)
        self.max_image_bytes = max_image_bytes

    def analyze(self, blobs: list[bytes]) -> list[ImageAnalysis | Any]:
        """Per image: its ImageAnalysis, or the FileError that stopped it."""
        return analyze_blobs(self.engine, blobs, self.max_image_bytes)


class RayAnalyzer:
    """Analyzer running the models in ``actors`` Ray actors (see the module docstring).

    ``address``: an existing cluster ('auto', 'ray://host:10001', ...) or None to start a local
    Ray instance with ``local_cpus`` CPUs (default: what the actors ask for, at least 2). ``threads_per_actor``: ONNX Runtime threads and CPUs
    requested per actor. ``reader_threads``: driver threads reading and hashing files.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        actors: int,
        batch_size: int,
        max_image_bytes: int,
        address: str | None = None,
        threads_per_actor: int = 1,
        reader_threads: int = 4,
        local_cpus: int | None = None,
    ) -> None:
        ray = import_ray()
        self.ray = ray
        if actors < 1:
            raise InvalidParameterException(f"the Ray engine needs at least 1 actor, got {actors}")
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                cpus = local_cpus or max(2, actors * max(1, threads_per_actor))
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        self.batch_size = max(1, batch_size)
        self.max_image_bytes = max_image_bytes
        threads = max(1, threads_per_actor)
        remote_actor = ray.remote(_FaceActor).options(
            num_cpus=threads, num_gpus=1 if settings.provider == "cuda" else 0
        )
        self.actors = [
            remote_actor.remote(actor_settings(settings, threads), max_image_bytes) for _ in range(actors)
        ]
        self._readers = ThreadPoolExecutor(
            max_workers=max(1, reader_threads), thread_name_prefix="facepipe-read"
        )

    def run(self, tasks: Iterable[FileTask]) -> Iterator[list[FileOutcome]]:
        """Ordered batches of outcomes; at most two batches per actor are in flight."""
        window = 2 * self.batch_size + 4
        read = ordered_window(
            lambda task: self._readers.submit(read_task, task, self.max_image_bytes), tasks, window
        )
        in_flight: deque[tuple[list[FileOutcome], list[FileOutcome], Any]] = deque()
        next_actor = 0
        for batch in batched(read, self.batch_size):
            needing = [o for o in batch if o.data is not None]
            ref = None
            if needing:
                blobs = [o.data for o in needing]
                for outcome in needing:
                    outcome.data = None
                ref = self.actors[next_actor].analyze.remote(blobs)
                next_actor = (next_actor + 1) % len(self.actors)
            in_flight.append((batch, needing, ref))
            if len(in_flight) >= 2 * len(self.actors):
                yield self._collect(*in_flight.popleft())
        while in_flight:
            yield self._collect(*in_flight.popleft())

    def _collect(self, batch: list[FileOutcome], sent: list[FileOutcome], ref: Any) -> list[FileOutcome]:
        """Wait for the actor's results for the ``sent`` outcomes of ``batch`` and attach them."""
        if ref is not None:
            for outcome, result in zip(sent, self.ray.get(ref), strict=True):
                if isinstance(result, ImageAnalysis):
                    outcome.analysis = result
                else:
                    outcome.error = result
        return batch

    def close(self) -> None:
        """Stop the actors and the reading threads, and Ray itself if this analyzer started it."""
        self._readers.shutdown(wait=True, cancel_futures=True)
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            self.ray.shutdown()
