"""TorchServe, text: a custom sentence-embedding handler, stock vs wrapped by the boost handler.

    python benchmarks/torchserve_text_bench.py [--requests 60] [--workers 1]

Serves the pretrained all-MiniLM-L6-v2 (TorchScript, sequence 128) with the same user handler
(``torchserve_text/embedder.py``: tokenizer in ``preprocess``, model in ``inference``) twice,
one after the other: archived with ``torch-model-archiver`` as is, then with ``yellowstone
archive`` (the boost handler wrapping it; the model boosts on the first request, validated by
cosine similarity as ``task: embedding``). Sends real sentences at concurrency 1 and 4 and
reports p50/p99 latency, throughput and boost/stock ratios, plus the cosine similarity of the two
servers' answers. Writes benchmarks/results/torchserve_minilm.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "torchserve"))

from serve import Server  # noqa: E402

from benchmarks.torchserve_bench import load, served_backend  # noqa: E402

HANDLER = HERE / "torchserve_text" / "embedder.py"


def build(work: Path, workers: int) -> None:
    """The TorchScript encoder, and the stock and boost archives of it."""
    from benchmarks.zoo import minilm
    from yellowstone.plugins.torchserve.archive import archive_main

    model, _, (ids, mask) = minilm(batch=1)
    import torch

    torch.jit.trace(model, (ids, mask)).save(str(work / "model.pt"))
    store = work / "store"
    store.mkdir(exist_ok=True)
    config = work / "model-config.yaml"
    config.write_text(f"minWorkers: {workers}\nmaxWorkers: {workers}\nbatchSize: 1\n")
    subprocess.run([str(Path(sys.executable).parent / "torch-model-archiver"), "--model-name",
                    "stock", "--version", "1.0", "--serialized-file", str(work / "model.pt"),
                    "--handler", str(HANDLER), "--config-file", str(config),
                    "--export-path", str(store), "--force"], check=True)
    if archive_main(["--model-name", "boost", "--serialized-file", str(work / "model.pt"),
                     "--handler", str(HANDLER), "--config-file", str(config),
                     "--backends", "onnxruntime,openvino", "--task", "embedding",
                     "--export-path", str(store), "--force", "-q"]) != 0:
        raise SystemExit("yellowstone archive failed")


def run(name: str, work: Path, texts: list[bytes], n: int) -> dict:
    server = Server(work / f"server-{name}", work / "store", f"{name}={name}.mar",
                    env={"YELLOWSTONE_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1"})
    try:
        server.wait_model(name)
        url = f"{server.url}/predictions/{name}"
        answers = [requests.post(url, data=t, timeout=600).json() for t in texts[:8]]  # 1st boosts
        for t in texts:
            requests.post(url, data=t, timeout=300)
        runs = [load(url, texts, c, n) for c in (1, 4)]
        return {"backend": served_backend(server, name), "runs": runs, "answers": answers}
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=60, help="requests per concurrency level")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    from benchmarks.zoo import CALIBRATION_SENTENCES, SENTENCES

    work = Path(tempfile.mkdtemp(prefix="ys-ts-text-"))
    build(work, args.workers)
    texts = [t.encode() for t in SENTENCES + CALIBRATION_SENTENCES[:12]]
    stock = run("stock", work, texts, args.requests)
    boost = run("boost", work, texts, args.requests)
    a, b = np.array(stock.pop("answers")), np.array(boost.pop("answers"))
    cosine = float(np.min(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
    ratios = [{"concurrency": s["concurrency"],
               "p50_speedup": round(s["p50_ms"] / o["p50_ms"], 2),
               "p99_speedup": round(s["p99_ms"] / o["p99_ms"], 2),
               "throughput_ratio": round(o["throughput_rps"] / s["throughput_rps"], 2)}
              for s, o in zip(stock["runs"], boost["runs"])]
    cores = len(os.sched_getaffinity(0))
    result = {"model": "all-MiniLM-L6-v2 (pretrained), sequence 128", "workers": args.workers,
              "cores": cores, "loadavg_at_end": os.getloadavg(), "min_cosine_stock_vs_boost": cosine,
              "stock": stock, "boost": boost, "ratios": ratios}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / "torchserve_minilm"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = ["# TorchServe: MiniLM sentence embeddings, custom handler, stock vs boost handler", "",
             f"The user's handler (tokenizer + TorchScript encoder, sequence 128) served as is and "
             f"wrapped by the boost handler (backend **{boost['backend']}**); {args.workers} "
             f"worker(s) on {cores} cores; {args.requests} real sentences per level, one after "
             f"the other in one run. Lowest cosine similarity between the two servers' "
             f"embeddings: {cosine:.6f}.", "",
             "| concurrency | stock p50 ms | boost p50 ms | p50 speedup | stock req/s | "
             "boost req/s | throughput ratio |", "|---|---|---|---|---|---|---|"]
    for s, o, r in zip(stock["runs"], boost["runs"], ratios):
        lines.append(f"| {s['concurrency']} | {s['p50_ms']} | {o['p50_ms']} | {r['p50_speedup']}x "
                     f"| {s['throughput_rps']} | {o['throughput_rps']} | {r['throughput_ratio']}x |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
        for ax, key, title in zip(axes, ("p50_ms", "throughput_rps"),
                                  ("p50 latency (ms)", "throughput (req/s)")):
            for j, (label, side) in enumerate((("stock", stock), ("boost", boost))):
                ax.bar([i + (j - 0.5) * 0.38 for i in range(2)], [r[key] for r in side["runs"]],
                       0.38, label=label)
            ax.set_xticks([0, 1], ["c=1", "c=4"])
            ax.set_title(title)
        axes[0].legend()
        fig.suptitle(f"TorchServe MiniLM, custom handler: stock vs boost ({boost['backend']})")
        fig.tight_layout()
        fig.savefig(stem.with_suffix(".png"), dpi=110)
    except ImportError:
        pass
    print("\n".join(lines))


if __name__ == "__main__":
    main()
