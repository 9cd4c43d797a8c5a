"""ONNX Runtime alone in a process: yellowstone's graph and options against the suite's peer's.

    python benchmarks/ort_isolation.py [--models minilm,mobilenet_v3] [--runs 60]

The suite (core_bench.py) times its candidates inside one process that also holds PyTorch and
the other backends' runtimes; each peer (peers.py) runs alone in its own. To tell a worse graph
from a worse room, this script times four ONNX Runtime sessions per model, each in a fresh
process with nothing else loaded but the exporter: the graph yellowstone exports (torch's
TorchScript-based exporter, opset 17, dynamic batch) or the peer's (the dynamo exporter, as
peers.py exports it), each with ONNX Runtime's default SessionOptions or with the options
yellowstone's backend sets (ORT_ENABLE_ALL, intra-op threads = the cores). Batch 1, p50 of
``--runs`` runs after 10 warm-up runs. Writes benchmarks/results/ort_isolation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRAPHS = {"yellowstone": "TorchScript-based exporter (what yellowstone exports)",
          "peer": "dynamo exporter (what the suite's onnxruntime peer exports)"}
OPTIONS = {"default": "ONNX Runtime's default SessionOptions",
           "yellowstone": "yellowstone's options (ORT_ENABLE_ALL, intra-op threads = cores)"}


def export(model_name: str, graph: str, path: Path) -> dict:
    """Write the model's ONNX graph to ``path``; return its feeds' shapes and dtypes."""
    import torch

    from benchmarks import zoo
    from benchmarks.peers import _onnx_from_torch

    model, *_, example = zoo.minilm() if model_name == "minilm" else getattr(zoo, model_name)()
    names = ["input_ids", "attention_mask"] if len(example) == 2 else ["x"]
    if graph == "peer":
        _onnx_from_torch(model, example, path)
    else:
        two = tuple(torch.cat([x, x]) for x in example)  # batch 2: batch 1 would be baked in
        torch.onnx.export(model, two, str(path), dynamo=False, input_names=names,
                          output_names=["y"], opset_version=17,
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "y": {0: "batch"}})
    return {n: x.numpy() for n, x in zip(names, example)}


def child(model_name: str, graph: str, options: str, runs: int) -> None:
    """One measurement, in this (fresh) process; prints its p50 in ms as JSON."""
    import os

    import onnxruntime as ort

    path = Path(tempfile.mkdtemp(prefix="ys-ort-iso-")) / "model.onnx"
    feeds = export(model_name, graph, path)
    opts = ort.SessionOptions()
    if options == "yellowstone":
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for _ in range(10):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"p50_ms": statistics.median(times)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,mobilenet_v3")
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.runs)
        return 0
    from benchmarks.roofline import host_info

    rows = []
    for model in args.models.split(","):
        for graph in GRAPHS:
            for options in OPTIONS:
                proc = subprocess.run([sys.executable, __file__, "--runs", str(args.runs),
                                       "--child", model, graph, options],
                                      capture_output=True, text=True, timeout=900)
                if proc.returncode != 0:
                    raise SystemExit(f"{model} {graph} {options} failed:\n{proc.stderr[-2000:]}")
                p50 = json.loads(proc.stdout.strip().splitlines()[-1])["p50_ms"]
                rows.append({"model": model, "graph": graph, "options": options, "p50_ms": p50})
                print(f"{model:13s} graph {graph:12s} options {options:12s} {p50:7.2f} ms",
                      flush=True)
    host = host_info()
    md = ["# ONNX Runtime alone in a process: yellowstone's graph and options vs the peer's", "",
          f"CPU: {host['line']}. Batch 1, p50 of {args.runs} runs, each row in a fresh process. "
          f"Graphs: {'; '.join(f'*{k}*: {v}' for k, v in GRAPHS.items())}. Options: "
          f"{'; '.join(f'*{k}*: {v}' for k, v in OPTIONS.items())}.", "",
          "| model | graph | options | p50 ms |", "|---|---|---|---|"]
    md += [f"| {r['model']} | {r['graph']} | {r['options']} | {r['p50_ms']:.2f} |" for r in rows]
    out = ROOT / "benchmarks" / "results" / "ort_isolation"
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"host": host, "runs": args.runs,
                                                    "rows": rows}, indent=1))
    print(f"wrote {out}.md/.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
