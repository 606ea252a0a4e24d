"""The exit statuses of every facepipe command, one meaning each."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """What a facepipe command's exit status means (the AWS CLI v1's codes for the operations)."""

    OK = 0
    """Done: every step succeeded (a benchmark suite skipped with a reason counts as done)."""
    FAILED = 1
    """Something failed that is neither a usage error nor a service error (a file, a failed suite,
    a server that could not start, a command missing from this installation)."""
    USAGE_ERROR = 2
    """Bad command line: unknown option, invalid value, missing argument (argparse's status)."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C / SIGINT (128 + 2); a batch job run again resumes where it stopped."""
    SERVICE_ERROR = 255
    """A Rekognition error (the service said no), the AWS CLI v1's status for any error."""
