"""What the tests share, one of each:

- server: free_port, `facepipe serve` as a child process (ServeProcess, facepipe_serve), the protocol
  app on a thread (serve_in_thread, serve_service_in_thread), raw_request, rekognition_client
- memory_service: MemoryService, the in-memory fake service of the protocol tests
- synthetic_faces: LinearEngine and DecodingEngine (fake engines, no models) and face builders
- cli: Result and Runner for command-line tests, aws_env, run_command, running_server
- photos: folders of real sample photos with broken files, for the job tests
- pgserver: a throwaway PostgreSQL server (TempPostgres)
- erasure: byte scans of a data directory for deleted vectors, file modes
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository checkout the tests run from."""
