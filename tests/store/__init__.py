"""The store: SQLite, FAISS indexes, migrations, erasure, crashes and concurrency."""
