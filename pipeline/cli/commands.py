"""facepipe's own commands beside the Rekognition operations, each imported when it is run."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.cli.exit_status import ExitStatus


@dataclass(frozen=True)
class OwnCommand:
    """A command implemented by ``module.function(argv) -> exit status``."""

    module: str
    function: str
    summary: str

    def load(self) -> Callable[[list[str]], int]:
        """Import the command's entry point; ImportError when it is not part of this installation."""
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and self.module.startswith(exc.name):
                raise ImportError(f"module {self.module} is missing") from exc
            raise
        entry = getattr(module, self.function, None)
        if not callable(entry):
            raise ImportError(f"{self.module} has no {self.function}()")
        return entry


OWN_COMMANDS: dict[str, OwnCommand] = {
    "quickstart": OwnCommand(
        "pipeline.cli.quickstart",
        "quickstart_main",
        "index the sample photos into a collection, search and compare them",
    ),
    "serve": OwnCommand(
        "pipeline.cli.serve",
        "serve_main",
        "run the Rekognition-compatible HTTP server (for --endpoint-url, boto3, SDKs)",
    ),
    "index-folder": OwnCommand(
        "pipeline.cli.jobs", "index_folder_main", "index every image of a folder (resumable batch job)"
    ),
    "associate-job": OwnCommand(
        "pipeline.cli.jobs", "associate_job_main", "associate faces with users in bulk (batch job)"
    ),
    "bench": OwnCommand("pipeline.cli.bench", "bench_main", "run the benchmarks"),
}
"""Command name -> where it is implemented, in the order `facepipe help` lists them."""


def run_own_command(name: str, argv: Sequence[str]) -> int:
    """Run one of OWN_COMMANDS with its arguments; FAILED (1) with a message when it is not installed."""
    command = OWN_COMMANDS[name]
    try:
        entry = command.load()
    except ImportError as exc:
        print(
            f"facepipe: the '{name}' command is not available in this installation ({exc})", file=sys.stderr
        )
        return ExitStatus.FAILED
    try:
        return int(entry(list(argv)) or ExitStatus.OK)
    except SystemExit as exc:  # argparse-based commands exit on usage errors and --help
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or ExitStatus.OK
        print(exc.code, file=sys.stderr)
        return ExitStatus.FAILED
