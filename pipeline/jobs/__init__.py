"""Batch jobs: index image folders and associate faces with users in bulk, resumable.

- index_folder: `facepipe index-folder`, the folder job and its ledger-backed crash safety;
- associate / manifest / cluster: `facepipe associate-job`, manifests and proposed users;
- analyzers / ray_engine: where the models run (local worker threads, or Ray actors);
- ledger, naming, progress, calls: the job ledger, ExternalImageIds and tokens, progress output,
  paginated service calls; cli: the two commands' argument parsing and exit statuses.
"""
