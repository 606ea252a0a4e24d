"""Batch jobs: index image folders and associate faces with users in bulk, resumable.

- index_folder: `facepipe index-folder`, the folder job and its ledger-backed crash safety;
- associate / manifest / cluster: `facepipe associate-job`, manifests and proposed users;
- analyzers / ray_engine: where the models run (local worker threads, or Ray actors);
- ledger, naming, progress, calls: the job ledger, ExternalImageIds and tokens, progress output,
  paginated service calls; runner: the jobs as typed entry points (their command lines are
  pipeline.cli.jobs).
"""
