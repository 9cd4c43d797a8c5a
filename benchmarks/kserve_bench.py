"""KServe: a plain ``kserve.Model`` calling the framework vs the yellowstone boost predictor.

Both serve the same TorchScript file through KServe's ModelServer (REST V2, binary tensors) in
their own process; one client (KServe's InferenceRESTClient) drives each in turn at each
concurrency. Reports ratios (boost / plain) of p50 and p99 latency and of throughput, as JSON,
Markdown and a PNG plot under benchmarks/results/.

    python benchmarks/kserve_bench.py [--model mobilenet|mobilenet_v3|resnet50|minilm|mlp]
        [--transport grpc|rest] [--precision fp32|bf16|int8] [--seconds 8] [--concurrency 1,4]

``minilm`` is the pretrained all-MiniLM-L6-v2 sentence encoder (sequence 128, two int64 inputs),
sent real tokenized sentences; its model directory carries ``examples.npz`` (and, for int8,
``calibration.npz``) through ``yellowstone.yaml``, as a user would ship them.

gRPC V2 carries tensors as raw bytes that KServe hands to the model with ``np.frombuffer``.
REST V2 with binary tensors does not stay binary inside KServe 0.21: ``InferRequest.from_bytes``
turns every element into a Python object (``set_data_from_numpy(..., binary_data=False)``),
about 60 ms for one 224x224 image on this machine. The plain predictor pays it; the boost
predictor decodes the body itself with NumPy (``yellowstone.plugins.kserve.routes``).
``request_breakdown_kserve.py`` splits one request into its stages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.roofline import host_info  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PROTOCOLS = {"grpc": "gRPC V2 (raw tensor contents)", "rest": "REST V2 (binary tensors)"}


# -- the plain predictor (run in its own process with --serve-plain) ---------------------------
def plain_model(model_dir: str, name: str) -> object:
    """What a user writes without yellowstone: a ``kserve.Model`` that calls TorchScript.

    Its steps are methods so that ``request_breakdown_kserve.py`` can time each.
    """
    import kserve
    import torch
    from kserve.protocol.infer_type import InferOutput, InferResponse

    class PlainModel(kserve.Model):
        def load(self) -> bool:
            self.module = torch.jit.load(str(Path(model_dir) / "model.pt")).eval()
            self.ready = True
            return True

        def to_tensors(self, payload):
            return [torch.from_numpy(i.as_numpy()) for i in payload.inputs]

        def run(self, xs):
            with torch.inference_mode():
                return self.module(*xs).numpy()

        def to_response(self, payload, y):
            out = InferOutput("output", list(y.shape), "FP32")
            out.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
            return InferResponse(payload.id or "1", self.name, [out])

        def predict(self, payload, headers=None):
            return self.to_response(payload, self.run(self.to_tensors(payload)))

    model = PlainModel(name)
    model.load()
    return model


def serve_plain(model_dir: str, name: str, http_port: int, grpc_port: int, threads: int) -> None:
    import kserve
    import torch

    if threads:
        torch.set_num_threads(threads)
    kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, enable_grpc=True,
                       enable_latency_logging=False).start([plain_model(model_dir, name)])


# -- driver -------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_model(kind: str, out: Path, precision: str) -> list[tuple[str, list[int], str]]:
    """Write the TorchScript model (and yellowstone.yaml); return its inputs (name, shape, dtype)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if kind == "minilm":
        import yaml

        from benchmarks.zoo import calibration, minilm

        model, _, (ids, mask) = minilm(batch=1)
        torch.jit.trace(model, (ids, mask)).save(str(out / "model.pt"))
        _, _, (ids4, mask4) = minilm(batch=4)
        np.savez(out / "examples.npz", input_ids=ids4.numpy(), attention_mask=mask4.numpy())
        config = {"inputs": ["input_ids:-1x128:int64", "attention_mask:-1x128:int64"],
                  "examples": "examples.npz", "task": "embedding"}
        if precision == "int8":
            np.savez(out / "calibration.npz", **calibration("minilm")[0])
            config["calibration"] = "calibration.npz"
        (out / "yellowstone.yaml").write_text(yaml.safe_dump(config))
        return [("input_ids", [1, 128], "INT64"), ("attention_mask", [1, 128], "INT64")]
    if kind in ("mobilenet", "mobilenet_v3", "resnet50"):
        import torchvision

        from benchmarks.zoo import mobilenet_v3

        model = {"mobilenet": lambda: torchvision.models.mobilenet_v3_small(weights=None).eval(),
                 "mobilenet_v3": lambda: mobilenet_v3()[0],
                 "resnet50": lambda: torchvision.models.resnet50(weights=None).eval()}[kind]()
        shape = [1, 3, 224, 224]
    else:
        model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                                    torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                    torch.nn.Linear(1024, 10)).eval()
        shape = [1, 256]
    torch.jit.trace(model, torch.randn(*shape)).save(str(out / "model.pt"))
    return [("input", shape, "FP32")]


def _requests(kind: str, inputs: list[tuple[str, list[int], str]]) -> list[list[np.ndarray]]:
    """16 request payloads: real tokenized sentences for MiniLM, random images otherwise."""
    if kind == "minilm":
        from benchmarks.zoo import CALIBRATION_SENTENCES, SENTENCES, minilm

        _, tok, _ = minilm()
        texts = (SENTENCES + CALIBRATION_SENTENCES)[::-1][:16]
        enc = tok(texts, padding="max_length", truncation=True, max_length=128, return_tensors="np")
        return [[enc["input_ids"][i:i + 1].astype(np.int64),
                 enc["attention_mask"][i:i + 1].astype(np.int64)] for i in range(len(texts))]
    rng = np.random.default_rng(0)
    return [[rng.standard_normal(shape).astype(np.float32) for _, shape, _ in inputs]
            for _ in range(16)]


def _wait_ready(port: int, name: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {name} exited with {proc.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/models/{name}/ready", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} not ready after {timeout} s")


async def _drive(port: int, grpc_port: int, protocol: str, name: str,
                 inputs: list[tuple[str, list[int], str]], payloads: list[list[np.ndarray]],
                 concurrency: int, seconds: float) -> dict:
    from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

    if protocol == "grpc":
        grpc_client = InferenceGRPCClient(f"127.0.0.1:{grpc_port}", retries=0, timeout=120)

        async def infer(req: InferRequest):
            return await grpc_client.infer(req)
        client = grpc_client
    else:
        rest_client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=120))
        base = f"http://127.0.0.1:{port}"

        async def infer(req: InferRequest):
            return await rest_client.infer(base, req, model_name=name)
        client = rest_client
    def request(i: int) -> InferRequest:
        tensors = []
        for (input_name, shape, dtype), x in zip(inputs, payloads[i % len(payloads)]):
            inp = InferInput(input_name, shape, dtype)
            inp.set_data_from_numpy(x)
            tensors.append(inp)
        return InferRequest(name, tensors)

    for i in range(5):  # warm-up
        await infer(request(i))
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        i = w
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await infer(request(i))
            latencies.append((time.perf_counter() - t0) * 1e3)
            i += concurrency

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall = time.perf_counter() - t0
    await client.close()
    return {"latencies": latencies, "wall_s": wall}


def _summary(parts: list[dict]) -> dict:
    """p50/p99 over every latency of every round; throughput over their summed wall time."""
    lat = np.array([x for p in parts for x in p["latencies"]])
    wall = sum(p["wall_s"] for p in parts)
    return {"requests": len(lat), "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "throughput_rps": len(lat) / wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet",
                    choices=("mobilenet", "mobilenet_v3", "resnet50", "minilm", "mlp"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"))
    ap.add_argument("--transport", default="grpc", choices=("grpc", "rest"))  # KServe owns --protocol
    ap.add_argument("--seconds", type=float, default=8.0, help="per side and concurrency")
    ap.add_argument("--rounds", type=int, default=4,
                    help="interleaved rounds the seconds are split into")
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--backends", default="onnxruntime,openvino")
    ap.add_argument("--serve-plain", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model_dir", help=argparse.SUPPRESS)
    ap.add_argument("--http_port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--grpc_port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_plain:
        serve_plain(args.model_dir, "plain", args.http_port, args.grpc_port, args.threads)
        return 0

    work = Path(tempfile.mkdtemp(prefix="kserve-bench-"))
    inputs = _write_model(args.model, work / "models", args.precision)
    payloads = _requests(args.model, inputs)
    specs = [f"--input={n}:{'x'.join(map(str, shape))}:{dt.lower().replace('fp', 'float')}"
             for n, shape, dt in inputs] if args.model != "minilm" else []  # minilm: yaml
    env = dict(os.environ, YELLOWSTONE_CACHE_DIR=str(work / "cache"), PYTHONUNBUFFERED="1")
    procs = {}
    ports = {"plain": _free_port(), "boost": _free_port()}
    grpc_ports = {"plain": _free_port(), "boost": _free_port()}
    logs = {k: open(work / f"{k}.log", "wb") for k in ports}
    procs["plain"] = subprocess.Popen(
        [sys.executable, __file__, "--serve-plain", "--model_dir", str(work / "models"),
         "--http_port", str(ports["plain"]), "--grpc_port", str(grpc_ports["plain"])],
        stdout=logs["plain"], stderr=subprocess.STDOUT, env=env)
    procs["boost"] = subprocess.Popen(
        [sys.executable, "-m", "yellowstone.plugins.kserve", "--model_name", "boost",
         "--model_dir", str(work / "models"), "--http_port", str(ports["boost"]),
         "--grpc_port", str(grpc_ports["boost"]),
         "--enable_latency_logging", "false", "--backends", args.backends,
         "--precision", args.precision, *specs],
        stdout=logs["boost"], stderr=subprocess.STDOUT, env=env)
    rows = []
    try:
        for name, proc in procs.items():
            _wait_ready(ports[name], name, proc)
        backend = next((line.split("ready on ")[1].split()[0]
                        for line in (work / "boost.log").read_text().splitlines()
                        if "ready on " in line), "?")
        for c in [int(v) for v in args.concurrency.split(",")]:
            # Interleaved rounds (plain, boost, boost, plain, ...): this host's speed drifts
            # over minutes, and one long window per side would measure the drift.
            parts: dict[str, list[dict]] = {"plain": [], "boost": []}
            for r in range(args.rounds):
                for k in (("plain", "boost") if r % 2 == 0 else ("boost", "plain")):
                    parts[k].append(asyncio.run(_drive(
                        ports[k], grpc_ports[k], args.transport, k, inputs, payloads, c,
                        args.seconds / args.rounds)))
            res = {k: _summary(v) for k, v in parts.items()}
            rows.append({"concurrency": c, "plain": res["plain"], "boost": res["boost"],
                         "p50_ratio": res["boost"]["p50_ms"] / res["plain"]["p50_ms"],
                         "p99_ratio": res["boost"]["p99_ms"] / res["plain"]["p99_ms"],
                         "throughput_ratio": res["boost"]["throughput_rps"]
                         / res["plain"]["throughput_rps"]})
            print(f"c={c}: plain p50 {res['plain']['p50_ms']:.2f} ms, boost p50 "
                  f"{res['boost']['p50_ms']:.2f} ms, throughput x{rows[-1]['throughput_ratio']:.2f}")
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    result = {"benchmark": "kserve", "model": args.model, "precision": args.precision,
              "inputs": [{"name": n, "shape": sh, "datatype": dt} for n, sh, dt in inputs],
              "boost_backend": backend, "backends_tried": args.backends,
              "seconds_per_point": args.seconds, "protocol": PROTOCOLS[args.transport],
              "host": host_info(), "loadavg_at_end": os.getloadavg(),
              "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (f"kserve_bench_{args.model}_{args.transport}"
                      + ("" if args.precision == "fp32" else f"_{args.precision}"))
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    md = [f"# KServe: plain kserve.Model vs yellowstone boost predictor ({args.model}, "
          f"{args.precision})", "",
          f"CPU: {result['host']['line']}.", "",
          f"Same TorchScript model, {result['protocol']} with KServe's own client, "
          f"{args.seconds:.0f} s per point in {args.rounds} interleaved rounds (plain, boost, "
          f"boost, plain, ...), both servers up on one {os.cpu_count()}-core machine; boost "
          f"served on **{backend}**. Ratios are "
          f"boost / plain (latency < 1 and throughput > 1 mean the boost is better).", "",
          "| concurrency | plain p50 ms | boost p50 ms | p50 ratio | plain p99 ms | boost p99 ms "
          "| p99 ratio | plain req/s | boost req/s | throughput ratio |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, b = r["plain"], r["boost"]
        md.append(f"| {r['concurrency']} | {p['p50_ms']:.2f} | {b['p50_ms']:.2f} | "
                  f"{r['p50_ratio']:.2f} | {p['p99_ms']:.2f} | {b['p99_ms']:.2f} | "
                  f"{r['p99_ratio']:.2f} | {p['throughput_rps']:.1f} | "
                  f"{b['throughput_rps']:.1f} | {r['throughput_ratio']:.2f} |")
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"c={r['concurrency']}" for r in rows]
        xs = np.arange(len(rows))
        for i, (key, title) in enumerate([("p50_ratio", "p50 latency"),
                                          ("p99_ratio", "p99 latency"),
                                          ("throughput_ratio", "throughput")]):
            ax.bar(xs + (i - 1) * 0.25, [r[key] for r in rows], 0.25, label=title)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(xs, labels)
        ax.set_ylabel("boost / plain")
        ax.set_title(f"KServe boost vs plain ({args.model} {args.precision}, {args.transport}, "
                     f"{backend})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(stem.with_suffix(".png"), dpi=120)
    except ImportError:
        print("matplotlib not installed: no plot")
    print(f"wrote {stem}.json/.md/.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
