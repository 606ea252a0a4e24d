"""A throwaway PostgreSQL server for tests and benchmarks: initdb in a temporary directory, started
on a free loopback port as an unprivileged user, stopped (and its directory removed) at the end.

    server = TempPostgres.start()        # or: python -m tests.support.pgserver  (prints the URL, waits)
    url = server.new_database()          # postgresql://facepipe:...@127.0.0.1:PORT/t_...
    server.restart(); server.stop()

The binaries are found in /usr/lib/postgresql/*/bin (newest first), then on PATH. Root cannot run
postgres: as root the cluster belongs to the system user ``facepipe-pg`` (created when missing,
``nobody`` when that fails). fsync stays on (the crash tests rely on it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.server import free_port

SUPERUSER = "facepipe"
SERVICE_USER = "facepipe-pg"


def find_binaries() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None when PostgreSQL is not installed."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    for directory in candidates:
        if all((Path(directory) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    found = [shutil.which(tool) for tool in ("initdb", "pg_ctl", "postgres")]
    if all(found):
        return Path(os.path.realpath(str(found[0]))).parent
    return None


def _run_as() -> pwd.struct_passwd | None:
    """The account that owns the cluster: None (this one) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)
    return pwd.getpwnam("nobody")


@dataclass
class TempPostgres:
    """One running throwaway cluster (see the module docstring)."""

    bin_dir: Path
    root: Path
    port: int
    password: str
    account: pwd.struct_passwd | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        """postgresql:// URL of ``database`` for the superuser (``password`` overrides the real one)."""
        secret = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{secret}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.account is not None:
            kwargs = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        return subprocess.run(
            list(args), check=True, capture_output=True, text=True, timeout=timeout, cwd=self.root, **kwargs
        )

    @classmethod
    def start(cls) -> TempPostgres:
        """initdb a new cluster and start it; RuntimeError when PostgreSQL is not installed."""
        bin_dir = find_binaries()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl/postgres found)")
        account = _run_as()
        root = Path(tempfile.mkdtemp(prefix="facepipe-pg-"))
        if account is not None:
            os.chown(root, account.pw_uid, account.pw_gid)
        server = cls(bin_dir, root, free_port(), secrets.token_hex(12), account)
        pwfile = root / "pw"
        pwfile.write_text(server.password + "\n")
        if account is not None:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        server._run(
            str(bin_dir / "initdb"),
            "-D",
            str(server.data),
            "-U",
            SUPERUSER,
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-instructions",
            "--no-sync",
        )
        pwfile.unlink()
        server._start()
        return server

    def _start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.root} -c fsync=on"
            " -c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode: smart, fast or immediate)."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop (fast: open sessions are cut) and start again on the same port."""
        self.stop()
        self._start()

    def new_database(self) -> str:
        """Create a fresh empty database; returns its URL."""
        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop the server if it runs and remove its directory."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":  # a server for manual runs: prints its URL, stops on Ctrl-C / SIGTERM
    server = TempPostgres.start()
    print(server.new_database() if "--database" in sys.argv else server.url(), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        server.close()
