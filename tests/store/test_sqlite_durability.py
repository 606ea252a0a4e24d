"""FaceStore.durability says what a commit guarantees, read back from SQLite itself."""

from __future__ import annotations

from pathlib import Path

from pipeline.store import Store


def test_sqlite_store_reports_wal_and_synchronous_full(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        assert store.durability == "SQLite WAL, synchronous=FULL"
        store.db._connection().execute("PRAGMA synchronous = NORMAL")  # the connection it reads
        assert store.durability == "SQLite WAL, synchronous=NORMAL"
    finally:
        store.close()
