"""The PostgreSQL store on a throwaway server (skipped where PostgreSQL is not installed)."""
