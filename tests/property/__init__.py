"""Hypothesis state machines over the store."""
