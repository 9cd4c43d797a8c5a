"""One TorchServe request, stage by stage: the stock handler and the boost handler side by side.

    python benchmarks/request_breakdown.py [--models resnet50,minilm] [--requests 40] [--quick]
    python benchmarks/request_breakdown.py --overhead [--calls 20000] [--profile]

Server mode (TorchServe part of the "speed of the whole request" breakdown). For each model two
TorchServe servers run one after the other, one worker each, batch size 1: the stock handler and
the boost handler wrapping it. ResNet-50 (random weights) is served by the built-in
``image_classifier`` (the boost handler fuses its pipeline into the model); all-MiniLM-L6-v2 by the
custom text handler of ``torchserve_text/embedder.py``. Inside the worker a handler subclass written
here (``ys_stages.py`` + one file per side) stamps ``time.perf_counter`` around each stage and
returns the times in the ``X-Ys-Stages`` response header; the client times the whole request.
Stages: frontend + IPC (client total minus the handler's own time: HTTP, queueing, the frontend
<-> worker socket), decode (image bytes -> pixels), preprocess (resize, crop, tokenize: the rest of
``preprocess``), tensor conversion (pixels -> the model's input tensor: ``ToTensor``,
``Normalize``, stacking), model (``inference``: for the boost handler the plugin and the backend),
postprocess, and the handler's other work. Means over ``--requests`` sequential requests after a
warm-up. Writes ``request_breakdown.{json,md,png}`` (a stacked bar per model and side) into
benchmarks/results/, or a temporary directory with ``--quick`` (resnet18, 3 requests, a short
boost budget: a check that it runs, not a measurement).

Overhead mode (``--overhead``): the plugin's own cost per call, in process, with nothing else
running: a worker-equivalent loop calls ``BoostHandler.handle`` on a real TorchServe context and
metrics cache (its log lines going to /dev/null) many times, with the model served by a stub
backend whose compiled call is a tiny numpy matmul. The same handler with the same matmul as a
plain torch module in the model's place is the baseline: the difference is what the boost path
adds. Printed in microseconds, with the share of ResNet-50's and MiniLM's batch-1 model time taken
from ``results/core_bench.json`` where it exists.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "torchserve"))

from benchmarks.ts_frontend import (  # noqa: E402
    WARMUP_MODEL,
    WARMUP_REQUESTS,
    Client,
    build_warmup_archive,
    warm_frontend,
    with_warmup,
)

STAGES = ("frontend + IPC", "decode", "preprocess", "tensor conversion", "model", "postprocess",
          "handler, other")
HEADER = "X-Ys-Stages"

# ---------------------------------------------------------------------------------------------
# Worker-side instrumentation, shipped in the archives (TorchServe takes the one class of a file).
# ---------------------------------------------------------------------------------------------
STAGES_LIB = '''
"""Stage timers for the request breakdown benchmark (shipped in its archives)."""

import json
import time


class Stages:
    """Seconds per stage of the request being served; reported in a response header."""

    def __init__(self):
        self.seconds = {}

    def add(self, stage, seconds):
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timed(self, stage, fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - t0)
        return run

    def report(self, context, total):
        ms = {k: v * 1e3 for k, v in self.seconds.items()}
        ms["handler"] = total * 1e3
        for idx in range(len(context.request_ids or {0: None})):
            context.set_response_header(idx, "HEADER_NAME", json.dumps(ms))
        self.seconds = {}


def serve(handler, handle, data, context):
    t0 = time.perf_counter()
    out = handle(data, context)
    handler.stages.report(context, time.perf_counter() - t0)
    return out


def methods(target, stages):
    """Time the handler's own preprocess / inference / postprocess."""
    target.preprocess = stages.timed("preprocess_total", target.preprocess)
    target.inference = stages.timed("model", target.inference)
    target.postprocess = stages.timed("postprocess", target.postprocess)


def stock_image_pipeline(handler, stages):
    """image_classifier's Resize -> CenterCrop -> ToTensor -> Normalize, split into stages."""
    resize, crop, to_tensor, normalize = handler.image_processing.transforms

    def process(image):
        t0 = time.perf_counter()
        image.load()  # PIL decodes lazily: make the decode its own stage
        t1 = time.perf_counter()
        image = crop(resize(image))
        t2 = time.perf_counter()
        tensor = normalize(to_tensor(image))
        t3 = time.perf_counter()
        stages.add("decode", t1 - t0)
        stages.add("tensor", t3 - t2)
        return tensor

    handler.image_processing = process


def fused_pipeline(pre, stages):
    """The boost handler's fused preprocessing, split into the same stages."""
    pre.decode = stages.timed("decode", pre.decode)
    pre.to_batch = stages.timed("tensor", pre.to_batch)
'''.replace("HEADER_NAME", HEADER)

STOCK_IMAGE = '''
from ts.torch_handler.image_classifier import ImageClassifier

import ys_stages


class StagedImageClassifier(ImageClassifier):
    def initialize(self, context):
        super().initialize(context)
        self.stages = ys_stages.Stages()
        ys_stages.stock_image_pipeline(self, self.stages)
        ys_stages.methods(self, self.stages)

    def handle(self, data, context):
        return ys_stages.serve(self, super().handle, data, context)
'''

STOCK_TEXT = '''
from embedder import SentenceEmbedder

import ys_stages


class StagedEmbedder(SentenceEmbedder):
    def initialize(self, context):
        super().initialize(context)
        self.stages = ys_stages.Stages()
        ys_stages.methods(self, self.stages)

    def handle(self, data, context):
        return ys_stages.serve(self, super().handle, data, context)
'''

BOOST = '''
from yellowstone.plugins.torchserve.handler import BoostHandler

import ys_stages


class StagedBoostHandler(BoostHandler):
    def initialize(self, context):
        super().initialize(context)
        self.stages = ys_stages.Stages()
        if self.fused_preprocess is not None:
            ys_stages.fused_pipeline(self.fused_preprocess, self.stages)
        ys_stages.methods(self.inner, self.stages)

    def handle(self, data, context):
        return ys_stages.serve(self, super().handle, data, context)
'''


def stages_of(header: dict[str, float], client_ms: float) -> dict[str, float]:
    """The request's stages in ms, from the worker's stamps and the client's total."""
    pre = header.get("preprocess_total", 0.0)
    decode, tensor = header.get("decode", 0.0), header.get("tensor", 0.0)
    model, post = header.get("model", 0.0), header.get("postprocess", 0.0)
    handler = header.get("handler", 0.0)
    return {"frontend + IPC": client_ms - handler, "decode": decode,
            "preprocess": pre - decode - tensor, "tensor conversion": tensor, "model": model,
            "postprocess": post, "handler, other": handler - pre - model - post}


# ---------------------------------------------------------------------------------------------
# Server mode
# ---------------------------------------------------------------------------------------------
def _archiver(name: str, store: Path, serialized: Path, handler: Path, config: Path,
              extra: list[Path], model_file: Path | None = None) -> None:
    cmd = [str(Path(sys.executable).parent / "torch-model-archiver"), "--model-name", name,
           "--version", "1.0", "--serialized-file", str(serialized), "--handler", str(handler),
           "--config-file", str(config), "--export-path", str(store), "--force",
           "--extra-files", ",".join(str(e) for e in extra)]
    if model_file:
        cmd += ["--model-file", str(model_file)]
    subprocess.run(cmd, check=True, capture_output=True)


def build(model: str, work: Path, arch: str, boost_options: dict) -> dict[str, bytes | list]:
    """Write the handler files and both archives for ``model``; return the request bodies."""
    import yaml

    files = work / "handlers"
    files.mkdir(exist_ok=True)
    (files / "ys_stages.py").write_text(textwrap.dedent(STAGES_LIB))
    (files / "staged_boost.py").write_text(textwrap.dedent(BOOST))
    store = work / "store"
    store.mkdir(exist_ok=True)
    base = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 1}
    if model == "resnet":
        from run_example import make_jpeg, make_model

        weights, model_file = make_model(arch, work)
        (files / "staged_image.py").write_text(textwrap.dedent(STOCK_IMAGE))
        stock_cfg, boost_cfg = work / "stock_resnet.yaml", work / "boost_resnet.yaml"
        stock_cfg.write_text(yaml.safe_dump(base))
        boost_cfg.write_text(yaml.safe_dump({**base, "yellowstone": {
            "handler": "image_classifier", "task": "classification", **boost_options}}))
        extra = [files / "ys_stages.py"]
        _archiver("stock_resnet", store, weights, files / "staged_image.py", stock_cfg, extra,
                  model_file)
        _archiver("boost_resnet", store, weights, files / "staged_boost.py", boost_cfg, extra,
                  model_file)
        return {"bodies": [make_jpeg(seed) for seed in range(8)]}
    import torch

    from benchmarks.zoo import CALIBRATION_SENTENCES, SENTENCES, minilm

    net, _, (ids, mask) = minilm(batch=1)
    torch.jit.trace(net, (ids, mask)).save(str(work / "model.pt"))
    (files / "staged_text.py").write_text(textwrap.dedent(STOCK_TEXT))
    embedder = HERE / "torchserve_text" / "embedder.py"
    stock_cfg, boost_cfg = work / "stock_minilm.yaml", work / "boost_minilm.yaml"
    stock_cfg.write_text(yaml.safe_dump(base))
    boost_cfg.write_text(yaml.safe_dump({**base, "yellowstone": {
        "handler": "embedder.py", "task": "embedding", **boost_options}}))
    extra = [files / "ys_stages.py", embedder]
    _archiver("stock_minilm", store, work / "model.pt", files / "staged_text.py", stock_cfg, extra)
    _archiver("boost_minilm", store, work / "model.pt", files / "staged_boost.py", boost_cfg,
              extra)
    return {"bodies": [t.encode() for t in SENTENCES + CALIBRATION_SENTENCES[:12]]}


def measure(name: str, work: Path, bodies: list, n: int, warmup: int,
            frontend_warmup: int = WARMUP_REQUESTS) -> dict:
    """Serve ``name`` alone, send ``n`` sequential requests after a warm-up; stages per request.

    The frontend's JIT is warmed first on the echo model (``ts_frontend.warm_frontend``), and
    the client is one keep-alive ``http.client`` connection, so "frontend + IPC" is the
    server's steady state, not a cold JVM's or the client library's.
    """
    import requests
    from serve import Server

    server = Server(work / f"server-{name}", work / "store", with_warmup(f"{name}={name}.mar"),
                    env={"YELLOWSTONE_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1"})
    try:
        server.wait_model(name)
        client = Client(f"{server.url}/predictions/{name}", timeout=900)
        for i in range(warmup):  # the first request boosts MiniLM; torch warms up its kernels
            client.post_ok(bodies[i % len(bodies)])
        server.wait_model(WARMUP_MODEL)
        warm_frontend(server.url, bodies[0], frontend_warmup)
        rows = []
        for i in range(n):
            t0 = time.perf_counter()
            status, data, headers = client.post(bodies[i % len(bodies)])
            client_ms = (time.perf_counter() - t0) * 1e3
            if status != 200:
                raise RuntimeError(f"{name}: HTTP {status}: {data[:300]!r}")
            stamps = headers.get(HEADER)
            if stamps is None:
                raise RuntimeError(f"{name}: no {HEADER} header in the response "
                                   f"(headers: {dict(headers)})")
            rows.append(stages_of(json.loads(stamps), client_ms))
        client.close()
        info = requests.get(f"{server.management}/models/{name}", params={"customized": "true"},
                            timeout=60).json()[0]
        meta = info.get("customizedMetadata")
        meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
        ys = meta.get("yellowstone", {}) if isinstance(meta, dict) else {}
        return {"name": name, "backend": ys.get("backend", "torch (stock)"),
                "preprocess": ys.get("preprocess", "the handler's own"), "requests": n,
                "mean_ms": {s: round(statistics.fmean(r[s] for r in rows), 3) for s in STAGES},
                "median_total_ms": round(statistics.median(sum(r.values()) for r in rows), 3)}
    finally:
        server.stop()


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.2 + 1.5 * len(results), 4.2))
    labels = [f"{r['model']}\n{r['side']}" for r in results]
    bottom = [0.0] * len(results)
    for stage in STAGES:
        values = [max(0.0, r["mean_ms"][stage]) for r in results]
        ax.bar(labels, values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("mean ms per request")
    ax.set_title("One TorchServe request, stage by stage (batch 1, one worker)", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: list[dict]) -> list[str]:
    lines = ["| model | side | backend | " + " | ".join(STAGES) + " | total |",
             "|---|---|---|" + "---|" * (len(STAGES) + 1)]
    for r in results:
        cells = " | ".join(f"{r['mean_ms'][s]:.2f}" for s in STAGES)
        lines.append(f"| {r['model']} | {r['side']} | {r['backend']} | {cells} | "
                     f"{sum(r['mean_ms'].values()):.2f} |")
    return lines


def server_mode(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ys-breakdown-"))
    arch = "resnet18" if args.quick else "resnet50"
    requests_n = 3 if args.quick else args.requests
    boost_options = {"backends": "onnxruntime,openvino", "precision": args.precision}
    if args.quick:
        boost_options.update(time_budget_s=0.1, validation_rounds=1)
    out = Path(args.out_dir) if args.out_dir else (work / "results" if args.quick else
                                                    ROOT / "benchmarks" / "results")
    results = []
    build_warmup_archive(work / "store")
    for model in args.models.split(","):
        key = {"resnet50": "resnet", "minilm": "minilm"}[model.strip()]
        bodies = build(key, work, arch, boost_options)["bodies"]
        label = arch if key == "resnet" else "MiniLM"
        for side in ("stock", "boost"):
            row = measure(f"{side}_{key}", work, bodies, requests_n, warmup=2 if args.quick else 8,
                          frontend_warmup=50 if args.quick else WARMUP_REQUESTS)
            results.append({"model": label, "side": side, **row})
            print(f"{label} {side}: {row['backend']}, " + ", ".join(
                f"{s} {row['mean_ms'][s]:.2f}" for s in STAGES), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    from benchmarks.roofline import host_info

    doc = {"quick": args.quick, "precision": args.precision, "host": host_info(),
           "cores": len(os.sched_getaffinity(0)), "loadavg_at_end": os.getloadavg(), "results": results}
    stem = "request_breakdown" + ("" if args.precision == "fp32" else f"_{args.precision}")
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    lines = ["# One TorchServe request, stage by stage: stock vs boost handler", "",
             f"CPU: {doc['host']['line']}.", "",
             f"Batch 1, one worker on {doc['cores']} cores, {requests_n} sequential requests per "
             "side after a warm-up (the model's, then the frontend's JIT on an echo model: "
             "`benchmarks/ts_frontend.py`), one keep-alive `http.client` connection; mean ms "
             "per stage (frontend + IPC = client total minus the "
             "worker handler's own time). Boost preprocessing: "
             + "; ".join(f"{r['model']}: {r['preprocess']}" for r in results
                         if r["side"] == "boost") + ".", "", *table(results)]
    if args.quick:
        lines.insert(1, "\n**Quick mode: a check that the benchmark runs, not a measurement.**")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    plot(results, out / f"{stem}.png")
    print("\n".join(lines))
    print(f"\nwrote {out / stem}.md")


# ---------------------------------------------------------------------------------------------
# Overhead mode
# ---------------------------------------------------------------------------------------------
class _StubRun:
    """The stub backend's compiled model: y = x @ W.T + b in numpy (about a microsecond)."""

    def __init__(self, weight, bias):
        self.weight, self.bias = weight, bias

    def run(self, feeds):
        (x,) = feeds.values()
        return [x @ self.weight.T + self.bias]


class StubBackend:
    """A backend whose compile returns :class:`_StubRun`: the model costs next to nothing."""

    name = "ys_stub"
    dynamic_batch = True
    cacheable = False
    auto_excluded = ""

    def __init__(self):
        self.compiled: list[_StubRun] = []

    def probe(self):
        from yellowstone.backends.base import Availability

        return Availability(name=self.name, available=True, version="1.0")

    def version(self):
        return "1.0"

    def supports(self, model):
        return None

    def supports_precision(self, precision):
        return None if precision == "fp32" else "fp32 only"

    def compile(self, model, request, workdir):
        return self.load(model, request, workdir)

    def load(self, model, request, workdir):
        linear = model.module.linear if hasattr(model.module, "linear") else model.module
        run = _StubRun(linear.weight.detach().numpy().copy(), linear.bias.detach().numpy().copy())
        self.compiled.append(run)
        return run


def _p50_us(fn, calls: int) -> float:
    for _ in range(min(500, calls // 10)):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _model_ms() -> dict[str, float]:
    """Batch-1 p50 of the chosen backend per model, from results/core_bench.json (fp32)."""
    path = ROOT / "benchmarks" / "results" / "core_bench.json"
    if not path.exists():
        return {}
    out = {}
    for rep in json.loads(path.read_text()).get("reports", []):
        if rep.get("precision") != "fp32" or rep.get("model") not in ("resnet50", "minilm"):
            continue
        chosen = next((c for c in rep["candidates"] if c["backend"] == rep["chosen"]), None)
        p50 = (chosen or {}).get("latency_ms", {}).get("1", {}).get("p50_ms")
        if p50:
            out[f"{rep['model']} ({rep['chosen']})"] = p50
    return out


def overhead_mode(args: argparse.Namespace) -> None:
    import logging

    import numpy as np
    import torch
    import ts
    from ts.context import Context, RequestProcessor
    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

    from yellowstone.backends import register_backend, unregister_backend
    from yellowstone.plugins.torchserve.handler import BoostHandler

    logging.basicConfig(stream=open(os.devnull, "w"), level=logging.INFO)  # noqa: SIM115
    work = Path(tempfile.mkdtemp(prefix="ys-overhead-"))
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 8).eval()
    torch.jit.trace(linear, torch.randn(1, 64)).save(str(work / "m.pt"))
    cache = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" /
                                                      "metrics.yaml"))
    cache.initialize_cache()
    manifest = {"model": {"modelName": "m", "serializedFile": "m.pt",
                          "handler": "boost_handler.py"}}
    ctx = Context("m", str(work), manifest, 1, None, ts.__version__, True, cache,
                  {"minWorkers": 1, "yellowstone": {"handler": "base_handler",
                                                    "input_shape": [1, 64],
                                                    "backends": StubBackend.name,
                                                    "cache": False, "time_budget_s": 0.1}})
    ctx.request_ids = {0: "req-0"}
    ctx.request_processor = [RequestProcessor({})]
    cache.request_ids = ctx.request_ids
    stub = StubBackend()
    register_backend(StubBackend.name, stub)
    handler = BoostHandler()
    try:
        handler.initialize(ctx)
        if handler.backend != StubBackend.name:
            raise SystemExit(f"the stub backend did not win ({handler.backend}); rerun on a "
                             "quieter machine")
        x = torch.randn(1, 64)
        data = [x[0].tolist()]
        compiled = stub.compiled[-1]
        stand_in = handler.inner.model

        class Baseline(torch.nn.Module):
            """The same matmul as a plain module: the stock handler with a free model."""

            def forward(self, t):
                return torch.from_numpy(compiled.run({"x": t.numpy()})[0])

        baseline = Baseline()
        feeds = {handler.boosted.inputs[0].name: x.numpy()}
        with torch.inference_mode():
            run_us = _p50_us(lambda: compiled.run(feeds), args.calls)
            call_us = _p50_us(lambda: stand_in(x), args.calls)
            handle_us = _p50_us(lambda: handler.handle(data, ctx), args.calls // 4)
            handler.inner.model = baseline
            base_us = _p50_us(lambda: handler.handle(data, ctx), args.calls // 4)
            handler.inner.model = stand_in
        print(f"stub compiled run:             {run_us:8.1f} us")
        print(f"boosted stand-in call:         {call_us:8.1f} us  "
              f"(adds {call_us - run_us:.1f} us to the backend's own run)")
        print(f"BoostHandler.handle:           {handle_us:8.1f} us")
        print(f"same handler, plain module:    {base_us:8.1f} us")
        added = handle_us - base_us
        print(f"the boost path adds per call:  {added:8.1f} us")
        for model, ms in _model_ms().items():
            print(f"  = {added / (ms * 1e3) * 100:.2f}% of {model}'s batch-1 model time "
                  f"({ms:.1f} ms, results/core_bench.json)")
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            with torch.inference_mode():
                prof.runcall(lambda: [handler.handle(data, ctx) for _ in range(args.calls // 4)])
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        np.testing.assert_allclose(handler.handle(data, ctx)[0],
                                   linear(x).detach().numpy()[0], rtol=1e-5, atol=1e-5)
    finally:
        if handler._bridge is not None:
            handler._bridge.detach()
        unregister_backend(StubBackend.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,minilm")
    ap.add_argument("--requests", type=int, default=40, help="measured requests per side")
    ap.add_argument("--quick", action="store_true",
                    help="resnet18, 3 requests, short boost budget, results in a temp dir")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"),
                    help="the boost side's precision (served only where it validates)")
    ap.add_argument("--overhead", action="store_true",
                    help="in-process: what the boost path adds per call, in microseconds")
    ap.add_argument("--calls", type=int, default=20000, help="overhead mode: calls per timing")
    ap.add_argument("--profile", action="store_true", help="overhead mode: cProfile the loop")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.overhead:
        overhead_mode(args)
    else:
        server_mode(args)


if __name__ == "__main__":
    main()
