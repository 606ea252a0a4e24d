"""Batch jobs on the real models: index-folder, association jobs, Ray."""
