"""``facepipe serve --metrics`` on the PostgreSQL store: the connection pool and the store's figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings
from pipeline.protocol.metrics import ServerMetrics
from pipeline.service import FacePipe
from tests.support.synthetic_faces import LinearEngine, index_vectors, person


def test_scrape_reports_the_pool_and_the_collections(pg_url: str, tmp_path: Path) -> None:
    fp = FacePipe(Settings(data_dir=tmp_path / "server", store=pg_url), engine=LinearEngine())
    try:
        fp.call("CreateCollection", {"CollectionId": "pg-metrics"})
        face_ids = index_vectors(fp, "pg-metrics", person(np.random.default_rng(7), 3))
        fp.call("SearchFaces", {"CollectionId": "pg-metrics", "FaceId": face_ids[0]})  # holds the index
        text = ServerMetrics(fp.store).exposition().decode()
    finally:
        fp.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    pool = {
        dict(labels)["state"]: value
        for (name, labels), value in samples.items()
        if name == "facepipe_store_pool_connections"
    }
    assert set(pool) == {"pool_size", "pool_available", "pool_max", "requests_waiting"}
    assert 1 <= pool["pool_size"] <= pool["pool_max"] and 0 <= pool["pool_available"] <= pool["pool_size"]
    assert pool["requests_waiting"] == 0
    assert samples[("facepipe_collection_faces", (("collection", "pg-metrics"),))] == 3
    assert samples[("facepipe_index_lag", (("collection", "pg-metrics"),))] == 0
