"""Lets the tests import ``app`` from this folder (pytest puts a conftest's folder on sys.path)."""
