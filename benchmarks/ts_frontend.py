"""TorchServe's own request floor, and the client and warm-up the TorchServe benchmarks share.

    python benchmarks/ts_frontend.py [--requests 1500] [--sleep-ms 20]

A TorchServe in steady state has served many requests: its Java frontend's hot paths (Netty's
HTTP decode, the job queue, the worker socket codec) are compiled by the JIT. A fresh one is not,
and on this host a request's time outside the handler falls from about 6 ms over the first
hundred requests to about 2 ms after a thousand (this script measures it). The benchmarks
measure the steady state: every server they start also serves ``frontend_warmup``, an echo
handler with one worker, and :func:`warm_frontend` sends it ``WARMUP_REQUESTS`` requests before
the measured ones. The JIT's work is shared by every model of a server, so the served model's
own warm-up stays short, and stock and boosted servers are warmed alike.

The clients are :class:`Client`: one keep-alive ``http.client`` connection each, the request
line, headers and body in one send. ``requests`` costs about 1.2 ms more per call here (urllib3's
own work in Python); TorchServe's benchmark tool drives its servers with ApacheBench
(``ab -k``), a C client, for the same reason.

Run as a script, it measures the floor itself: an echo handler that sleeps ``--sleep-ms`` (an
idle model of that length) answers ``--requests`` requests in blocks of 100, each block timed
with :class:`Client` and with a ``requests.Session``, and the time outside the handler per block
is written to ``benchmarks/results/torchserve_frontend.{json,md}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "torchserve"))

WARMUP_MODEL = "frontend_warmup"
WARMUP_REQUESTS = 1500  # the floor is flat after about 1000 (results/torchserve_frontend.md)

ECHO_HANDLER = '''
"""Echo handler: the time it held each request, in ms (sleeps ECHO_SLEEP_MS first, default 0)."""

import os
import time


class Echo:
    def initialize(self, context):
        self.sleep_s = float(os.environ.get("ECHO_SLEEP_MS", "0")) / 1e3
        self.initialized = True

    def handle(self, data, context):
        t0 = time.perf_counter()
        if self.sleep_s:
            time.sleep(self.sleep_s)
        held = (time.perf_counter() - t0) * 1e3
        return [f"{held:.4f}" for _ in data]
'''


class Client:
    """One keep-alive HTTP/1.1 connection to a TorchServe inference URL."""

    def __init__(self, url: str, timeout: float = 300):
        parts = urlsplit(url)
        self.path = parts.path or "/"
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def post(self, body: bytes) -> tuple[int, bytes, http.client.HTTPMessage]:
        """POST ``body``; the status, the response body and its headers."""
        self.conn.request("POST", self.path, body=body)  # bytes body: one send with the headers
        resp = self.conn.getresponse()
        return resp.status, resp.read(), resp.headers

    def post_ok(self, body: bytes) -> bytes:
        """POST ``body``; its response body, or an error naming the status."""
        status, data, _ = self.post(body)
        if status != 200:
            raise RuntimeError(f"POST {self.path}: HTTP {status}: {data[:300]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


def build_warmup_archive(store: Path) -> str:
    """Write ``frontend_warmup.mar`` (the echo handler, one worker) into ``store``."""
    store.mkdir(parents=True, exist_ok=True)
    if (store / f"{WARMUP_MODEL}.mar").exists():
        return WARMUP_MODEL
    src = Path(tempfile.mkdtemp(prefix="ys-echo-"))
    (src / "echo_handler.py").write_text(ECHO_HANDLER)
    (src / "model-config.yaml").write_text("minWorkers: 1\nmaxWorkers: 1\n")
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    subprocess.run([str(archiver), "--model-name", WARMUP_MODEL, "--version", "1",
                    "--handler", str(src / "echo_handler.py"),
                    "--config-file", str(src / "model-config.yaml"),
                    "--export-path", str(store)], check=True)
    return WARMUP_MODEL


def with_warmup(models: str) -> str:
    """A ``--models`` value plus the warm-up model."""
    return f"{models},{WARMUP_MODEL}={WARMUP_MODEL}.mar"


def warm_frontend(inference_url: str, body: bytes, n: int = WARMUP_REQUESTS) -> dict:
    """Send ``n`` requests to the echo model; the median time outside it, first and last 100.

    ``inference_url`` is the server's inference address; the echo model must be ready (a
    server started with :func:`with_warmup`, then ``wait_model(WARMUP_MODEL)``).
    """
    client = Client(f"{inference_url}/predictions/{WARMUP_MODEL}")
    outside = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            held = float(client.post_ok(body))
            outside.append((time.perf_counter() - t0) * 1e3 - held)
    finally:
        client.close()
    return {"requests": n, "first100_ms": round(statistics.median(outside[:100]), 3),
            "last100_ms": round(statistics.median(outside[-100:]), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--sleep-ms", type=float, default=20.0)
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    import requests
    from run_example import make_jpeg
    from serve import Server

    from benchmarks.roofline import host_info

    work = Path(tempfile.mkdtemp(prefix="ys-ts-frontend-"))
    build_warmup_archive(work / "store")
    body = make_jpeg(0)
    server = Server(work / "server", work / "store", f"{WARMUP_MODEL}={WARMUP_MODEL}.mar",
                    env={"ECHO_SLEEP_MS": str(args.sleep_ms)})
    blocks = []
    try:
        server.wait_model(WARMUP_MODEL)
        url = f"{server.url}/predictions/{WARMUP_MODEL}"
        client, session = Client(url), requests.Session()
        clients = {"http.client": lambda: client.post_ok(body),
                   "requests": lambda: session.post(url, data=body, timeout=60).content}
        served = 0
        while served < args.requests:
            row = {"served_before": served}
            for name, call in clients.items():
                outside = []
                for _ in range(50):
                    t0 = time.perf_counter()
                    held = float(call())
                    outside.append((time.perf_counter() - t0) * 1e3 - held)
                row[name] = round(statistics.median(outside), 3)
                served += 50
            blocks.append(row)
            print(row, flush=True)
        client.close()
    finally:
        server.stop()
    result = {"host": host_info(), "sleep_ms": args.sleep_ms, "body_bytes": len(body),
              "blocks": blocks}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "torchserve_frontend.json").write_text(json.dumps(result, indent=1))
    lines = ["# TorchServe's own floor: time outside the handler, by requests served", "",
             f"CPU: {result['host']['line']}.", "",
             f"An echo handler (one worker) that sleeps {args.sleep_ms:g} ms, {len(body)}-byte "
             "JPEG bodies, sequential requests on one keep-alive connection per client. Each "
             "block: 50 requests with `http.client`, then 50 with a `requests.Session`; median "
             "of the client's time minus the handler's own, in ms.", "",
             "| requests served before the block | http.client | requests |", "|---|---|---|"]
    lines += [f"| {b['served_before']} | {b['http.client']} | {b['requests']} |" for b in blocks]
    (out / "torchserve_frontend.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
