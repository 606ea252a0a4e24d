"""Prometheus metrics for ``facepipe serve --metrics`` (``GET /metrics``, the text format).

Each app has its own :class:`ServerMetrics` with a dedicated registry (never prometheus_client's
global one), so several apps in one process, and the tests, do not share counts. Request metrics
are recorded where the app logs its access line; the store's figures are read when Prometheus
scrapes (:class:`StoreCollector`), so a scrape costs one query for the collections, one per
collection whose index this process holds, and nothing between scrapes.

Metrics:

- ``facepipe_requests_total{operation,status,error_code}``: API requests answered (operation
  "unknown" for an X-Amz-Target that names no operation; error_code "" for a success).
- ``facepipe_request_seconds{operation}``: their latency, from the request's arrival to the answer.
- ``facepipe_collection_faces{collection}``: faces in each collection (the first MAX_COLLECTIONS
  collections by name).
- ``facepipe_index_lag{collection}``: changes in the store's change log that this process's
  in-memory index of the collection has not applied yet (only collections whose index it holds;
  they are applied before the next search of that collection).
- ``facepipe_store_pool_connections{state}``: the PostgreSQL store's connection pool
  (psycopg_pool's statistics pool_size, pool_available, pool_max and requests_waiting); absent
  for the SQLite store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("pipeline.protocol.metrics")

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of facepipe_request_seconds' buckets: 1 ms (metadata calls) to 30 s
(large images on a busy server); slower requests fall in +Inf."""
MAX_COLLECTIONS = 1000
"""Most collections reported per scrape (the first ones by name), bounding its cost and size."""
POOL_STATS = ("pool_size", "pool_available", "pool_max", "requests_waiting")
"""The psycopg_pool statistics reported as facepipe_store_pool_connections' states."""
UNKNOWN_OPERATION = "unknown"
"""The operation label of requests whose X-Amz-Target names no operation (bounded label values)."""


class StoreCollector(Collector):
    """Reads the store's figures at scrape time: faces per collection, index lag, pool statistics.

    ``store`` is the service's store (pipeline.store.Store or PostgresStore); a store that cannot be
    read is logged and its figures left out of that scrape, so the request metrics still come."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """The store's metric families, computed now."""
        try:
            families = self._families()
        except Exception:
            logger.exception("metrics: the store could not be read; its figures are left out")
            return
        yield from families

    def _families(self) -> list[Metric]:
        faces = GaugeMetricFamily(
            "facepipe_collection_faces", "Faces in the collection.", labels=["collection"]
        )
        lag = GaugeMetricFamily(
            "facepipe_index_lag",
            "Changes in the store's change log not yet applied by this process's in-memory index "
            "of the collection.",
            labels=["collection"],
        )
        held = list(self.store.indexes.cached())[:MAX_COLLECTIONS]
        with self.store.read() as tx:
            for row in tx.list_collections(None, MAX_COLLECTIONS):
                faces.add_metric([row.name], row.face_count)
            for idx in held:
                coll = tx.find_collection_by_id(idx.collection_id)
                if coll is None:  # deleted since: the index is dropped at the next change
                    continue
                _, head = tx.log_position(coll)
                lag.add_metric([coll.name], max(0, head - idx.applied_seq))
        families: list[Metric] = [faces, lag]
        pool = getattr(getattr(self.store, "database", None), "pool", None)
        if pool is not None and hasattr(pool, "get_stats"):
            stats = pool.get_stats()  # get_stats, not pop_stats: the pool's counters are left alone
            connections = GaugeMetricFamily(
                "facepipe_store_pool_connections",
                "The PostgreSQL store's connection pool (psycopg_pool statistics).",
                labels=["state"],
            )
            for state in POOL_STATS:
                connections.add_metric([state], stats.get(state, 0))
            families.append(connections)
        return families


class ServerMetrics:
    """The metrics of one server app, in its own registry."""

    def __init__(self, store: Any | None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "facepipe_requests",
            "API requests answered, by operation, HTTP status and Rekognition error code.",
            ["operation", "status", "error_code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "facepipe_request_seconds",
            "API request latency in seconds, from arrival to answer.",
            ["operation"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        if store is not None:
            self.registry.register(StoreCollector(store))

    def record(self, operation: str | None, status: int, error_code: str | None, seconds: float) -> None:
        """Count one answered request (``operation`` None: no known operation) taking ``seconds``."""
        name = operation or UNKNOWN_OPERATION
        self.requests.labels(name, str(status), error_code or "").inc()
        self.latency.labels(name).observe(seconds)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (reads the store: call off the event loop)."""
        return generate_latest(self.registry)
