"""`facepipe serve` under hostile clients and under image load (issue 11's figures).

    python benchmarks/bench_server_hostile.py [--source DIR] [--only memory flood contention]
                                              [--seconds 10] [--image-clients 8] [--rounds 2]
                                              [--out FILE.json]

Starts `facepipe serve` (SigV4 on) from this checkout, or from the checkout DIR (``--source``: an
older commit's ``git worktree``, for before/after figures), on a free loopback port, and measures:

- memory: the server's RSS (/proc) while 40 unsigned clients each declare a 14.9 MB body, send
  as much of it as the server takes within 3 s, and never finish; and after they leave;
- flood: under a 1,024 open-file limit, 1,100 idle connections; then /health latency (5 s
  timeout), a signed ListCollections, and the lines the server logged in the 10 s that follow;
- contention: ListFaces (MaxResults 20) p50/p99, sequential from one client, while
  ``--image-clients`` clients call DetectFaces on the six-face sample photo without pause;
  for this checkout once with metadata on their own threads (the default) and once with
  ``--metadata-threads 0`` (one shared pool, as before), the two servers running side by side
  and measured alternately, ``--rounds`` times each. With ``--source`` the old server is
  measured alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.bench.machine import cpu_model
from pipeline.bench.stats import percentile
from pipeline.bench.suite_server import KEY_ID, SECRET, free_port, http_call
from pipeline.vision.samples import sample_photos

UPLOAD_CLIENTS, UPLOAD_BYTES = 40, 14_900_000
FLOOD_CONNECTIONS, FLOOD_FILE_LIMIT = 1100, 1024


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """`facepipe serve` in a child process on a free loopback port (SigV4 with the bench key)."""

    def __init__(
        self, source: Path | None, data_dir: Path, args: list[str], nofile: int | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        env = dict(os.environ, FACEPIPE_CREDENTIALS=f"{KEY_ID}:{SECRET}")
        if source is not None:
            env["PYTHONPATH"] = str(source)
        code = "import sys; from pipeline.cli.serve import serve_main; sys.exit(serve_main(sys.argv[1:]))"

        def limit_files() -> None:
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "--port", str(self.port), "--data-dir", str(data_dir), *args],
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("wb"),
            env=env,
            start_new_session=True,
            preexec_fn=limit_files,
            cwd=str(source) if source else None,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.log_path.read_text()[-800:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)

    def log_lines(self) -> int:
        return len(self.log_path.read_bytes().splitlines())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def health_s(url: str, timeout: float = 5.0) -> float | None:
    """Seconds /health took, None when it did not answer within ``timeout``."""
    import http.client

    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        conn.request("GET", "/health")
        ok = conn.getresponse().status == 200
        conn.close()
    except OSError:
        return None
    return time.monotonic() - started if ok else None


def memory_figures(server: Server) -> dict[str, Any]:
    """RSS under UPLOAD_CLIENTS unsigned uploads that never finish, and after they leave."""
    pid = server.proc.pid
    before = rss_mib(pid)
    head = (
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: RekognitionService.IndexFaces\r\n"
        f"Content-Type: application/x-amz-json-1.1\r\nContent-Length: {UPLOAD_BYTES + 1}\r\n\r\n"
    ).encode()
    chunk = b"A" * (1 << 16)
    sockets, sent, answered = [], 0, 0
    for _ in range(UPLOAD_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=1)
        sockets.append(sock)
        sock.sendall(head)
        deadline = time.monotonic() + 3
        mine = 0
        try:
            while mine < UPLOAD_BYTES and time.monotonic() < deadline:
                piece = chunk[: UPLOAD_BYTES - mine]  # one byte short of the declared length
                sock.sendall(piece)
                mine += len(piece)
        except OSError:
            pass
        sent += mine
    time.sleep(1)
    peak = rss_mib(pid)
    for sock in sockets:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            answered += sock.recv(12).startswith(b"HTTP/1.1 4")
    health = health_s(server.url)
    for sock in sockets:
        sock.close()
    time.sleep(3)
    return {
        "rss_before_mib": round(before, 1),
        "rss_with_uploads_mib": round(peak, 1),
        "rss_growth_mib": round(peak - before, 1),
        "rss_after_they_leave_mib": round(rss_mib(pid), 1),
        "body_bytes_sent_mib": round(sent / (1 << 20), 1),
        "answered_at_once": answered,
        "health_s_during": health,
    }


def flood_figures(server: Server) -> dict[str, Any]:
    """Idle connections past the file limit: /health, a signed call, and the log that follows."""
    lines_before = server.log_lines()
    sockets = []
    refused = 0
    for _ in range(FLOOD_CONNECTIONS):
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", server.port))
            sockets.append(sock)
        except OSError:
            refused += 1
            sock.close()
    time.sleep(0.5)
    health = health_s(server.url)
    try:
        http_call(server.url, True)("ListCollections", {})
        signed_ok = True
    except Exception:  # the figure is whether it worked
        signed_ok = False
    time.sleep(10)
    lines = server.log_lines() - lines_before
    for sock in sockets:
        sock.close()
    return {
        "connections_opened": len(sockets),
        "connect_failures": refused,
        "health_s": health,
        "signed_call_ok": signed_ok,
        "log_lines_in_10s": lines,
    }


def build_collection(url: str) -> None:
    call = http_call(url, True)
    call("CreateCollection", {"CollectionId": "bench"})
    photos = sample_photos()
    for name in ("t1.jpg", "Tom_Hanks_54745.png", "mask_blue.jpg"):
        call("IndexFaces", {"CollectionId": "bench", "Image": {"Bytes": (photos / name).read_bytes()}})


def list_faces_under_load(url: str, image_clients: int, seconds: float) -> dict[str, Any]:
    """ListFaces latencies (one sequential client) while image clients run DetectFaces nonstop."""
    group = (sample_photos() / "t1.jpg").read_bytes()
    stop = threading.Event()
    images = [0]
    lock = threading.Lock()

    def image_worker() -> None:
        call = http_call(url, True)
        while not stop.is_set():
            call("DetectFaces", {"Image": {"Bytes": group}})
            with lock:
                images[0] += 1

    workers = [threading.Thread(target=image_worker) for _ in range(image_clients)]
    for worker in workers:
        worker.start()
    time.sleep(2)  # every image client has a request in flight
    call = http_call(url, True)
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        call("ListFaces", {"CollectionId": "bench", "MaxResults": 20})
        latencies.append(time.perf_counter() - started)
    stop.set()
    for worker in workers:
        worker.join()
    return {
        "list_faces_calls": len(latencies),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p90_ms": round(percentile(latencies, 90) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "detect_faces_per_s": round(images[0] / (seconds + 2), 2),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", type=Path, help="serve from this checkout (e.g. an old commit's worktree)"
    )
    parser.add_argument("--only", nargs="+", choices=["memory", "flood", "contention"])
    parser.add_argument("--seconds", type=float, default=10.0, help="ListFaces seconds per run (default 10)")
    parser.add_argument("--image-clients", type=int, default=8, help="DetectFaces clients (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="contention runs per mode (default 2)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    parts = args.only or ["memory", "flood", "contention"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    results: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "source": str(args.source or Path.cwd()),
    }
    with tempfile.TemporaryDirectory(prefix="facepipe-hostile-") as tmp:
        data = Path(tmp) / "data"
        if "memory" in parts:
            server = Server(args.source, data, [])
            try:
                results["memory"] = memory_figures(server)
            finally:
                server.stop()
        if "flood" in parts:
            server = Server(args.source, data, [], nofile=FLOOD_FILE_LIMIT)
            try:
                results["flood"] = flood_figures(server)
            finally:
                server.stop()
        if "contention" in parts:
            modes: dict[str, list[str]] = {"default": []}
            if args.source is None:
                modes = {
                    "separate metadata threads": [],
                    "one shared pool (--metadata-threads 0)": ["--metadata-threads", "0"],
                }
            servers = {mode: Server(args.source, data, extra) for mode, extra in modes.items()}
            try:
                build_collection(next(iter(servers.values())).url)
                runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
                for _ in range(args.rounds):
                    for mode, server in servers.items():
                        runs[mode].append(list_faces_under_load(server.url, args.image_clients, args.seconds))
                results["contention"] = {"image_clients": args.image_clients, "runs": runs}
            finally:
                for server in servers.values():
                    server.stop()
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
