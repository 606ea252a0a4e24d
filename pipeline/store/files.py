"""Owner-only permissions for everything in a data directory, whatever the process umask.

The data directory is 0700 and every file facepipe creates in it is 0600: the faces are biometric
data. SQLite creates its ``-wal`` and ``-shm`` files with the permissions of the database file, so
creating the database file 0600 first is enough for all three.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_directory(path: Path) -> Path:
    """Create ``path`` (and missing parents) if needed and make it 0700; returns it.

    An existing directory is narrowed to 0700 too when this user owns it (a directory owned by
    someone else is left as it is; opening files in it then decides).
    """
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if it does not exist, and make it 0600; returns it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
    return path


def make_private(path: Path) -> None:
    """Narrow an existing file to 0600 (nothing happens when it does not exist)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        os.chmod(path, PRIVATE_FILE_MODE)
