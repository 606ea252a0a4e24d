"""FaceStore.durability on PostgreSQL: the pooled connections' synchronous_commit, read with SHOW."""

from __future__ import annotations

from pipeline.store.postgres import PostgresStore


def test_postgres_store_reports_synchronous_commit_on(pg_url: str) -> None:
    store = PostgresStore(pg_url, listen=False)
    try:
        assert store.durability == "PostgreSQL synchronous_commit=on"
    finally:
        store.close()
