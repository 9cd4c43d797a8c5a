"""TF Serving benchmark: TensorFlow's own session vs the shim, behind the same gRPC client.

Starts the drop-in server twice on one SavedModel: ``--yellowstone_shim=off`` (what TF Serving
does: tf.saved_model.load + signature call) and ``--yellowstone_shim=always`` (the C shim), then
sends the same Predict requests with the official tensorflow-serving-api client and reports p50/p90
latency and throughput ratios (JSON + Markdown + PNG under benchmarks/results/).

    python benchmarks/tfserving_bench.py [--seconds 5] [--batches 1,8] [--hidden 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def build_model(path: Path, hidden: int) -> None:
    code = f"""
import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='2'
import tensorflow as tf
tf.keras.utils.set_random_seed(0)
inp = tf.keras.Input((64,), name='x')
h = inp
for _ in range(3):
    h = tf.keras.layers.Dense({hidden}, activation='relu')(h)
tf.keras.Model(inp, tf.keras.layers.Dense(10)(h)).export({str(path)!r}, verbose=False)
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(base: Path, shim: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    ready = workdir / f"ready-{shim}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "yellowstone.plugins.tfserving",
            f"--port={port}",
            "--model_name=m",
            f"--model_base_path={base}",
            "--yellowstone_host=127.0.0.1",
            f"--yellowstone_shim={shim}",
            f"--yellowstone_ready_file={ready}",
            f"--yellowstone_artifact_dir={workdir / 'artifacts'}",
        ],
        stdout=open(workdir / f"server-{shim}.log", "w"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    deadline = time.time() + 300
    while not ready.exists():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError((workdir / f"server-{shim}.log").read_text()[-2000:])
        time.sleep(0.5)
    return proc, port


def measure(port: int, batch: int, seconds: float) -> dict:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    rng = np.random.default_rng(0)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "m"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(rng.standard_normal((batch, 64)).astype(np.float32)))
    for _ in range(20):
        stub.Predict(req, timeout=30)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        stub.Predict(req, timeout=30)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "rps": len(ms) / float(ms.sum() / 1e3),
        "n": len(ms),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ys-tfs-bench-"))
    build_model(work / "m" / "1", args.hidden)
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs: "
        "ratios are indicative)",
        "model": f"MLP 64-{args.hidden}x3-10 (Keras export)",
        "client": "tensorflow-serving-api gRPC, one request at a time",
        "rows": [],
    }
    servers = {}
    try:
        for shim in ("off", "always"):
            servers[shim] = start(work / "m", shim, work)
        for b in batches:
            tf_row = measure(servers["off"][1], b, args.seconds)
            shim_row = measure(servers["always"][1], b, args.seconds)
            results["rows"].append(
                {
                    "batch": b,
                    "tensorflow": tf_row,
                    "shim": shim_row,
                    "p50_speedup": tf_row["p50_ms"] / shim_row["p50_ms"],
                    "throughput_ratio": shim_row["rps"] / tf_row["rps"],
                }
            )
    finally:
        for proc, _ in servers.values():
            proc.terminate()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tfserving.json").write_text(json.dumps(results, indent=1))
    lines = [
        "# TF Serving: TensorFlow session vs Yellowstone shim\n",
        f"{results['model']}; {results['client']}; {results['machine']}.\n",
        "| batch | TF p50 ms | shim p50 ms | p50 speedup | throughput ratio |",
        "|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['batch']} | {r['tensorflow']['p50_ms']:.3f} | {r['shim']['p50_ms']:.3f} | "
            f"{r['p50_speedup']:.2f}x | {r['throughput_ratio']:.2f}x |"
        )
    (RESULTS / "tfserving.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        xs = np.arange(len(results["rows"]))
        ax.bar(xs - 0.2, [r["tensorflow"]["p50_ms"] for r in results["rows"]], 0.4, label="TensorFlow")
        ax.bar(xs + 0.2, [r["shim"]["p50_ms"] for r in results["rows"]], 0.4, label="shim")
        ax.set_xticks(xs, [f"batch {r['batch']}" for r in results["rows"]])
        ax.set_ylabel("gRPC Predict p50 (ms)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "tfserving.png", dpi=120)
    except ImportError:
        pass
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
