"""What every suite gets: the options of the run, the provider choice, and where to write."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.bench.machine import ProviderChoice
from pipeline.config import Settings


@dataclass
class BenchContext:
    """Options shared by the suites.

    repeat: timed repetitions per figure (each figure is their median); warmup: untimed ones first.
    threads: intra-op threads for ONNX Runtime, OpenCV and FAISS (0 = each library's default).
    quick: tiny sizes, for smoke tests and CI. sizes: explicit sizes per suite overriding its
    defaults (search: collection sizes; pipeline: batch sizes; associate: faces per user;
    server: concurrent clients). server_client: the server suite's HTTP client ("http": lean
    SigV4-signing client, "boto3"); server_auth: SigV4 on the benchmark server; server_threads: its
    request threads.
    """

    settings: Settings
    provider: ProviderChoice
    repeat: int = 5
    warmup: int = 1
    threads: int = 0
    quick: bool = False
    sizes: dict[str, list[int]] = field(default_factory=dict)
    pairs: Path | None = None
    out_dir: Path = Path(".")
    seed: int = 0
    server_client: str = "http"
    server_auth: bool = True
    server_threads: int = 8

    def pick(self, suite: str, full: list[int], quick: list[int]) -> list[int]:
        """The sizes a suite runs: its explicit --sizes, else the quick or the full defaults."""
        if self.sizes.get(suite):
            return list(self.sizes[suite])
        return list(quick if self.quick else full)
