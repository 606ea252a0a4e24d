"""Server benchmark: requests/s and p50/p99 latency over HTTP against the same calls in-process.

    python benchmarks/bench_server.py [--clients 1 4 16] [--requests 400] [--image-requests 64]
                                      [--photos 20] [--client http|boto3] [--no-auth] [--out DIR]

Builds a collection from real photos (insightface's sample images, plus up to --photos photos from
../shared/data/faces/celeb5 when present), then measures SearchUsers, ListFaces and
SearchFacesByImage at each client count: first in-process (threads calling FacePipe.call), then
through `facepipe serve` started as a separate process on a loopback port (SigV4 on unless
--no-auth). The HTTP clients run in this process: `http` is a lean client (one persistent
connection per client thread, every request signed with botocore's SigV4), `boto3` a boto3
client per thread. Client and server share this machine's cores, so the HTTP numbers include
the clients' CPU time. Writes results.json, results.md and server.png under --out.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from pipeline.config import Settings
from pipeline.service import FacePipe

REPO = Path(__file__).resolve().parents[1]
CELEB5 = REPO.parent / "shared" / "data" / "faces" / "celeb5"
KEY_ID, SECRET = "AKIDBENCHMARK", "benchmark-secret"
COLLECTION, USER = "bench", "tom"
OPERATIONS = ("SearchUsers", "ListFaces", "SearchFacesByImage")


def sample_images() -> Path:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "images"


def build_collection(data_dir: Path, photos: int) -> dict[str, dict[str, Any]]:
    """Index the photos into COLLECTION, make USER; returns each benchmarked operation's params."""
    samples = sample_images()
    query_image = (samples / "Tom_Hanks_54745.png").read_bytes()
    fp = FacePipe(Settings(data_dir=data_dir))
    try:
        fp.call("CreateCollection", {"CollectionId": COLLECTION})
        hanks = fp.call(
            "IndexFaces", {"CollectionId": COLLECTION, "Image": {"Bytes": query_image}, "MaxFaces": 1}
        )
        fp.call(
            "IndexFaces", {"CollectionId": COLLECTION, "Image": {"Bytes": (samples / "t1.jpg").read_bytes()}}
        )
        extra = sorted(CELEB5.glob("*/*.jpg"))[:photos] if CELEB5.is_dir() else []
        for path in extra:
            fp.call(
                "IndexFaces",
                {"CollectionId": COLLECTION, "Image": {"Bytes": path.read_bytes()}, "MaxFaces": 1},
            )
        fp.call("CreateUser", {"CollectionId": COLLECTION, "UserId": USER})
        face_id = hanks["FaceRecords"][0]["Face"]["FaceId"]
        fp.call("AssociateFaces", {"CollectionId": COLLECTION, "UserId": USER, "FaceIds": [face_id]})
        faces = fp.call("DescribeCollection", {"CollectionId": COLLECTION})["FaceCount"]
        print(f"collection: {faces} faces from {2 + len(extra)} photos", flush=True)
    finally:
        fp.close()
    return {
        "SearchUsers": {"CollectionId": COLLECTION, "UserId": USER, "MaxUsers": 5},
        "ListFaces": {"CollectionId": COLLECTION, "MaxResults": 20},
        "SearchFacesByImage": {"CollectionId": COLLECTION, "Image": {"Bytes": query_image}, "MaxFaces": 5},
    }


def measure(
    make_call: Callable[[], Callable[[], None]], clients: int, requests: int, warmup: int = 2
) -> dict[str, Any]:
    """Run ``requests`` calls split over ``clients`` threads; requests/s and latency percentiles (ms)."""
    per_client = max(1, requests // clients)
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        call = make_call()
        for _ in range(warmup):
            call()
        barrier.wait()
        mine = []
        for _ in range(per_client):
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(worker) for _ in range(clients)]
        barrier.wait()
        start = time.perf_counter()
        for future in futures:
            future.result()
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def in_process_call(fp: FacePipe, operation: str, params: dict[str, Any]) -> Callable[[], Callable[[], None]]:
    def make() -> Callable[[], None]:
        def call() -> None:
            fp.call(operation, params)

        return call

    return make


def _json_body(params: dict[str, Any]) -> bytes:
    import base64

    def encode(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        return value

    return json.dumps(encode(params)).encode()


def http_call(
    url: str, operation: str, params: dict[str, Any], sign: bool
) -> Callable[[], Callable[[], None]]:
    """A lean JSON 1.1 client: persistent connection per thread, SigV4-signed per request."""
    host, port = url.removeprefix("http://").split(":")
    body = _json_body(params)
    signer = SigV4Auth(Credentials(KEY_ID, SECRET), "rekognition", "us-east-1")

    def make() -> Callable[[], None]:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)

        def call() -> None:
            headers = {
                "X-Amz-Target": f"RekognitionService.{operation}",
                "Content-Type": "application/x-amz-json-1.1",
            }
            if sign:
                request = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
                signer.add_auth(request)
                headers = dict(request.headers.items())
            conn.request("POST", "/", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{operation}: HTTP {response.status}: {payload[:300]!r}")

        return call

    return make


def boto3_call(
    url: str, operation: str, params: dict[str, Any], sign: bool
) -> Callable[[], Callable[[], None]]:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.session import Session

    method = Session().get_service_model("rekognition").operation_model(operation)
    snake = "".join("_" + c.lower() if c.isupper() else c for c in method.name).lstrip("_")

    def make() -> Callable[[], None]:
        config = Config(retries={"max_attempts": 1}, read_timeout=120, max_pool_connections=4)
        if not sign:
            config = config.merge(Config(signature_version=UNSIGNED))
        client = boto3.session.Session().client(
            "rekognition", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, config=config,
        )  # fmt: skip
        bound = getattr(client, snake)

        def call() -> None:
            bound(**params)

        return call

    return make


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(data_dir: Path, auth: bool, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, FACEPIPE_CREDENTIALS=f"{KEY_ID}:{SECRET}")
    command = [sys.executable, "-c", "import sys; from pipeline.protocol.server import serve_main; sys.exit(serve_main(sys.argv[1:]))",
               "--port", str(port), "--data-dir", str(data_dir), "--threads", str(threads), "--log-level", "warning"]  # fmt: skip
    if not auth:
        command.append("--no-auth")
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return process, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not answer /health within 120 s")


def write_report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"Server benchmark ({results['machine']}, client: {results['client']}, auth: {results['auth']}, "
        f"{results['faces']} faces, 1-minute load average {results['load_average_1m_at_start']} at start).",
        "CPU ms/request is the CPU time the serving process spent per request (in-process: the benchmark",
        "process; HTTP: the server process, clients excluded). Unlike requests/s and latencies it does",
        "not depend on what else runs on the machine.",
        "",
        "| operation | clients | in-process req/s | p50 ms | p99 ms | CPU ms/req | HTTP req/s | p50 ms | p99 ms "
        "| server CPU ms/req | HTTP/in-process req/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        a, b = row["in_process"], row["http"]
        lines.append(
            f"| {row['operation']} | {row['clients']} | {a['requests_per_s']} | {a['p50_ms']} | {a['p99_ms']} "
            f"| {a.get('cpu_ms_per_request', 'n/a')} | {b['requests_per_s']} | {b['p50_ms']} | {b['p99_ms']} "
            f"| {b.get('cpu_ms_per_request', 'n/a')} | {b['requests_per_s'] / a['requests_per_s']:.2f} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, len(OPERATIONS), figsize=(4.2 * len(OPERATIONS), 3.4))
    for ax, operation in zip(axes, OPERATIONS, strict=True):
        rows = [r for r in results["rows"] if r["operation"] == operation]
        clients = [r["clients"] for r in rows]
        ax.plot(clients, [r["in_process"]["requests_per_s"] for r in rows], "o-", label="in-process")
        ax.plot(clients, [r["http"]["requests_per_s"] for r in rows], "s-", label="HTTP")
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.set_title(operation)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("requests/s")
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "server.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=400, help="requests per metadata measurement")
    parser.add_argument(
        "--image-requests", type=int, default=40, help="requests per SearchFacesByImage measurement"
    )
    parser.add_argument("--photos", type=int, default=20, help="extra celeb5 photos to index when present")
    parser.add_argument("--client", choices=["http", "boto3"], default="http")
    parser.add_argument("--no-auth", action="store_true", help="serve and send unsigned requests")
    parser.add_argument("--server-threads", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "server")
    args = parser.parse_args(argv)
    auth = not args.no_auth
    load_at_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None

    with tempfile.TemporaryDirectory(prefix="bench-server-") as home:
        data_dir = Path(home)
        params = build_collection(data_dir, args.photos)
        counts = {
            op: args.image_requests if op == "SearchFacesByImage" else args.requests for op in OPERATIONS
        }

        fp = FacePipe(Settings(data_dir=data_dir))
        in_process: dict[tuple[str, int], dict[str, Any]] = {}
        try:
            faces = fp.call("DescribeCollection", {"CollectionId": COLLECTION})["FaceCount"]
            for operation in OPERATIONS:
                for clients in args.clients:
                    cpu_before = time.process_time()
                    stats = measure(
                        in_process_call(fp, operation, params[operation]), clients, counts[operation]
                    )
                    calls = stats["requests"] + 2 * clients
                    stats["cpu_ms_per_request"] = round((time.process_time() - cpu_before) * 1000 / calls, 3)
                    in_process[operation, clients] = stats
                    print(f"in-process {operation:<19} {clients:>2} clients: {stats}", flush=True)
        finally:
            fp.close()

        process, url = start_server(data_dir, auth, args.server_threads)
        rows = []
        try:
            client = http_call if args.client == "http" else boto3_call
            for operation in OPERATIONS:
                for clients in args.clients:
                    cpu_before = process_cpu_s(process.pid)
                    stats = measure(
                        client(url, operation, params[operation], auth), clients, counts[operation]
                    )
                    cpu_after = process_cpu_s(process.pid)
                    if cpu_before is not None and cpu_after is not None:
                        # includes the warm-up calls; robust to other load on the machine
                        calls = stats["requests"] + 2 * clients
                        stats["cpu_ms_per_request"] = round((cpu_after - cpu_before) * 1000 / calls, 3)
                    print(f"HTTP       {operation:<19} {clients:>2} clients: {stats}", flush=True)
                    rows.append(
                        {
                            "operation": operation,
                            "clients": clients,
                            "in_process": in_process[operation, clients],
                            "http": stats,
                        }
                    )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)

    results = {
        "machine": f"{os.cpu_count()} CPU cores",
        "load_average_1m_at_start": load_at_start,
        "client": args.client,
        "auth": auth,
        "faces": faces,
        "server_threads": args.server_threads,
        "rows": rows,
    }
    write_report(results, args.out)
    print(f"wrote {args.out}/results.json, results.md, server.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
