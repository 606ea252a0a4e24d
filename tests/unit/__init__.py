"""Unit tests without models: vision helpers and the benchmark package."""
