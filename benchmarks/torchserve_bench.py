"""TorchServe: stock image_classifier vs the yellowstone boost handler, same model, over HTTP.

    python benchmarks/torchserve_bench.py [--arch resnet18] [--requests 80] [--workers N]
        [--precision fp32|bf16|int8] [--peers pt2_inductor,pt2_openvino|none] [--rounds 4]
        [--quick]

Starts one TorchServe per row, all up at once, serving the same torchvision model (random
weights) through the built-in image_classifier: stock, stock with one share of the cores per
worker, the boost handler, and TorchServe's own ``torch.compile`` option as its 0.12 docs set it
in model-config.yaml (the peers):

- ``pt2_inductor``: ``pt2: {compile: {enable: true, backend: inductor, mode: reduce-overhead}}``
  (the mode of TorchServe's torch.compile example; on a CPU it compiles as the default mode);
- ``pt2_openvino``: ``pt2: {compile: {enable: true, backend: openvino, options: {aot_autograd:
  true}}}`` (BaseHandler imports ``openvino.torch``; without ``aot_autograd`` torch 2.13+ fails
  in dynamo).

Sends JPEGs made with PIL at concurrency 1 and 4 and reports p50/p99 latency and throughput, with
boost/stock ratios. The requests of each level go in ``--rounds`` blocks that take turns across
the servers (the others idle meanwhile): this host's speed drifts by 10-20% over minutes, and
one server measured after another would take that drift into its ratio. torch.compile compiles
on the first request, which the warm-up covers.
Writes benchmarks/results/torchserve_<arch>.{json,md,png}; ``--quick`` (4 requests per level, a
short boost budget, results in a temporary directory) only checks that every row runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "torchserve"))

from run_example import build_archive, make_jpeg  # noqa: E402
from serve import Server  # noqa: E402

sys.path.insert(0, str(ROOT))
from benchmarks.roofline import host_info  # noqa: E402
from benchmarks.ts_frontend import (  # noqa: E402
    WARMUP_MODEL,
    WARMUP_REQUESTS,
    Client,
    build_warmup_archive,
    warm_frontend,
    with_warmup,
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def block(url: str, images: list[bytes], concurrency: int, n: int) -> tuple[list[float], float]:
    """Send ``n`` requests with ``concurrency`` client threads, each on its own keep-alive
    connection (``ts_frontend.Client``); their latencies (ms) and the wall time (s)."""
    clients = [Client(url) for _ in range(concurrency)]
    idle: queue.SimpleQueue = queue.SimpleQueue()  # a connection serves one request at a time
    for client in clients:
        idle.put(client)

    def one(i: int) -> float:
        client = idle.get()
        try:
            t0 = time.perf_counter()
            client.post_ok(images[i % len(images)])
            return (time.perf_counter() - t0) * 1e3
        finally:
            idle.put(client)

    t0 = time.perf_counter()
    try:
        with cf.ThreadPoolExecutor(concurrency) as pool:
            lat = list(pool.map(one, range(n)))
    finally:
        for client in clients:
            client.close()
    return lat, time.perf_counter() - t0


def summary(concurrency: int, lat: list[float], wall: float) -> dict:
    """p50/p99 latency and throughput of requests sent at ``concurrency``."""
    return {"concurrency": concurrency, "requests": len(lat),
            "p50_ms": round(statistics.median(lat), 2), "p99_ms": round(percentile(lat, 99), 2),
            "throughput_rps": round(len(lat) / wall, 2)}


def load(url: str, images: list[bytes], concurrency: int, n: int) -> dict:
    """Send ``n`` requests with ``concurrency`` client threads; latency in ms."""
    return summary(concurrency, *block(url, images, concurrency, n))


def yellowstone_meta(server: Server, name: str) -> dict:
    """The boost handler's entry in the model's customized metadata ({} for a stock handler)."""
    info = requests.get(f"{server.management}/models/{name}", params={"customized": "true"},
                        timeout=60).json()[0]
    meta = info.get("customizedMetadata")
    meta = json.loads(meta) if isinstance(meta, str) else meta
    return (meta or {}).get("yellowstone") or {}


def served_backend(server: Server, name: str, ys: dict | None = None) -> tuple[str, str | None]:
    """The backend the boost handler reports in the model's customized metadata (``ys``, read
    when not given), and the precision it serves (None for a stock handler; fp32 when the
    framework serves)."""
    ys = yellowstone_meta(server, name) if ys is None else ys
    if not ys:
        return "torch (stock)", None
    report = ys.get("report") or {}
    precision = report.get("precision", "fp32") if ys.get("backend") != "native" else "fp32"
    return ys.get("backend", "native"), precision


class Row:
    """One TorchServe server of the comparison: started, warmed, then measured in blocks that
    alternate with the other rows' (:func:`measure_interleaved`)."""

    def __init__(self, label: str, name: str, work: Path, env: dict | None = None):
        self.label, self.name = label, name
        self.server = Server(work / f"server-{label}", work / "store",
                             with_warmup(f"{name}={name}.mar"),
                             env={"YELLOWSTONE_CACHE_DIR": str(work / "cache"), **(env or {})})
        self.url = f"{self.server.url}/predictions/{name}"
        self.lat: dict[int, list[float]] = {}
        self.wall: dict[int, float] = {}
        self.info: dict = {}

    def ready(self, images: list[bytes], frontend_warmup: int = WARMUP_REQUESTS) -> None:
        """Wait for the model, keep its first answers, warm it up (torch.compile compiles here),
        then warm the frontend's JIT on the echo model (``ts_frontend.warm_frontend``)."""
        t0 = time.perf_counter()
        self.server.wait_model(self.name)
        ready_s = time.perf_counter() - t0
        client = Client(self.url)
        try:
            answers = [json.loads(client.post_ok(img)) for img in images[:4]]
            for img in images * 4:
                client.post_ok(img)
        finally:
            client.close()
        self.server.wait_model(WARMUP_MODEL)
        frontend = warm_frontend(self.server.url, images[0], frontend_warmup)
        ys = yellowstone_meta(self.server, self.name)
        backend, precision = served_backend(self.server, self.name, ys)
        self.info = {"handler": self.label, "backend": backend, "served_precision": precision,
                     "threads_alone": ys.get("threads_alone"),
                     "ready_s": round(ready_s, 1), "frontend_warmup": frontend,
                     "answers": answers}

    def result(self, levels: tuple[int, ...]) -> dict:
        """The row's info and one summary per concurrency level over all its blocks."""
        return {**self.info, "runs": [summary(c, self.lat[c], self.wall[c]) for c in levels]}


def measure_interleaved(rows: list[Row], images: list[bytes], levels: tuple[int, ...], n: int,
                        rounds: int) -> None:
    """``n`` requests per row and level, sent in ``rounds`` blocks taking turns across the rows.

    Every server is up for the whole measurement, idle while another's block runs, so a slow
    spell of the host falls on all rows alike instead of on whichever ran then.
    """
    for c in levels:
        per_block = max(c, -(-n // rounds))
        for r in range(rounds):
            for row in rows[r % len(rows):] + rows[:r % len(rows)]:
                lat, wall = block(row.url, images, c, per_block)
                row.lat.setdefault(c, []).extend(lat)
                row.wall[c] = row.wall.get(c, 0.0) + wall


def compare_answers(a: list[dict], b: list[dict]) -> float:
    """Largest probability difference over the shared top-5 labels (inf when labels differ)."""
    worst = 0.0
    for x, y in zip(a, b):
        if set(x) != set(y):
            return float("inf")
        worst = max(worst, max(abs(x[k] - y[k]) for k in x))
    return worst


SIDES = ("stock", "stock_tuned", "boost")
LABELS = {"stock": "stock", "stock_tuned": "stock, tuned threads", "boost": "boost handler",
          "pt2_inductor": "pt2: inductor", "pt2_openvino": "pt2: openvino"}
PEERS = {  # TorchServe's own model-config.yaml ``pt2`` section, as its 0.12 docs write it
    "pt2_inductor": {"compile": {"enable": True, "backend": "inductor",
                                 "mode": "reduce-overhead"}},
    "pt2_openvino": {"compile": {"enable": True, "backend": "openvino",
                                 "options": {"aot_autograd": True}}},
}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = [s for s in (*SIDES, *PEERS) if result.get(s, {}).get("runs")]
    width = 0.8 / len(sides)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, title in zip(axes, ("p50_ms", "p99_ms", "throughput_rps"),
                              ("p50 latency (ms)", "p99 latency (ms)", "throughput (req/s)")):
        for j, side in enumerate(sides):
            runs = result[side]["runs"]
            xs = [i + (j - (len(sides) - 1) / 2) * width for i in range(len(runs))]
            ax.bar(xs, [r[key] for r in runs], width=width, label=LABELS[side])
        ax.set_xticks(range(len(result["stock"]["runs"])))
        ax.set_xticklabels([f"c={r['concurrency']}" for r in result["stock"]["runs"]])
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"TorchServe {result['model']}, {result['workers']} workers on "
                 f"{result['cores']} cores: stock image_classifier vs yellowstone boost handler "
                 f"({result['boost']['backend']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50", "mobilenet_v3_small"])
    ap.add_argument("--requests", type=int, default=80, help="requests per concurrency level")
    ap.add_argument("--workers", type=int, default=0,
                    help="TorchServe workers (default: one per core, TorchServe's own default)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"],
                    help="the boost handler's precision (bf16/int8 serve only if they validate; "
                         "the results say what served)")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"TorchServe pt2 rows to add: {', '.join(PEERS)}, or none")
    ap.add_argument("--quick", action="store_true",
                    help="4 requests per level, short boost budget, results in a temp dir")
    ap.add_argument("--rounds", type=int, default=4,
                    help="blocks per level: every server is up at once and the blocks take turns")
    ap.add_argument("--frontend-warmup", type=int, default=WARMUP_REQUESTS,
                    help="requests each server's echo model answers before the measurement, so "
                         "the frontend's JIT is warm (see ts_frontend.py)")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    peers = [p for p in args.peers.split(",") if p and p != "none"]
    unknown = set(peers) - set(PEERS)
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}")
    work = Path(tempfile.mkdtemp(prefix="ys-ts-bench-"))
    if args.quick:
        args.requests, args.rounds, args.frontend_warmup = 4, 1, 50
        os.environ.setdefault("YELLOWSTONE_TIME_BUDGET_S", "0.1")
    args.out_dir = args.out_dir or str(work / "results" if args.quick
                                       else ROOT / "benchmarks" / "results")
    images = [make_jpeg(seed) for seed in range(8)]
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or cores
    share = max(1, cores // workers)
    build_warmup_archive(work / "store")
    build_archive(args.arch, work, boost=False, name="stock", workers=workers)
    build_archive(args.arch, work, boost=True, precompile=True, name="boost", workers=workers,
                  precision=args.precision)
    for peer in peers:
        build_archive(args.arch, work, boost=False, name=peer, workers=workers, pt2=PEERS[peer])
    levels = (1, 4)
    rows = [Row("stock", "stock", work),
            # What a careful TorchServe user does by hand: one share of the cores per worker.
            Row("stock_tuned", "stock", work, env={"OMP_NUM_THREADS": str(share)}),
            Row("boost", "boost", work)]
    failed: dict[str, str] = {}
    try:
        for row in rows:
            row.ready(images, args.frontend_warmup)
        for peer in peers:
            row = Row(peer, peer, work)
            rows.append(row)
            try:
                row.ready(images, args.frontend_warmup)
            except (RuntimeError, TimeoutError, OSError, requests.RequestException) as exc:
                failed[peer] = str(exc)[:300]
                rows.remove(row)
                row.server.stop()
        measure_interleaved(rows, images, levels, args.requests, args.rounds)
    finally:
        for row in rows:
            row.server.stop()
    by_label = {row.label: row.result(levels) for row in rows}
    stock, tuned, boost = by_label["stock"], by_label["stock_tuned"], by_label["boost"]
    peer_rows = {peer: by_label.get(peer) or {"handler": peer, "backend": "failed",
                                              "error": failed.get(peer, ""), "runs": [],
                                              "answers": []} for peer in peers}
    stock_answers = stock.pop("answers")
    ratios = []
    for s, t, b in zip(stock["runs"], tuned["runs"], boost["runs"]):
        ratios.append({"concurrency": s["concurrency"],
                       "p50_speedup": round(s["p50_ms"] / b["p50_ms"], 2),
                       "p99_speedup": round(s["p99_ms"] / b["p99_ms"], 2),
                       "throughput_ratio": round(b["throughput_rps"] / s["throughput_rps"], 2),
                       "p50_speedup_vs_tuned": round(t["p50_ms"] / b["p50_ms"], 2),
                       "throughput_ratio_vs_tuned": round(b["throughput_rps"]
                                                          / t["throughput_rps"], 2)})
    result = {"model": args.arch, "precision": args.precision, "weights": "random (weights=None)",
              "workers": workers,
              "cores": cores, "host": host_info(),
              "loadavg_at_end": os.getloadavg(),
              "max_top5_prob_diff": compare_answers(stock_answers, boost.pop("answers")),
              "stock": stock, "stock_tuned": tuned, "boost": boost, "ratios": ratios}
    tuned.pop("answers")
    for peer, row in peer_rows.items():
        answers = row.pop("answers")
        row["max_top5_prob_diff_vs_stock"] = (compare_answers(stock_answers, answers)
                                              if answers else None)
        result[peer] = row
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.precision == "fp32" else f"_{args.precision}"
    stem = out / f"torchserve_{args.arch}{suffix}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = [f"# TorchServe: {args.arch}, stock image_classifier vs boost handler "
             f"({args.precision})", "",
             f"CPU: {result['host']['line']}.", "",
             f"Boost handler backend: **{boost['backend']}**, serving "
             f"**{boost['served_precision']}** ({args.precision} asked); "
             f"{workers} workers on {cores} cores "
             f"(TorchServe's default is one per core); {args.requests} requests per level; JPEG "
             "inputs through image_classifier's own preprocessing. Max top-5 probability "
             f"difference: {result['max_top5_prob_diff']:.2e}. *stock*: as TorchServe runs it "
             f"(every worker's torch on all cores); *tuned*: the same with OMP_NUM_THREADS={share}, "
             "one share of the cores per worker, which the boost handler sets by itself"
             + (f"; a boosted worker that is the only one busy runs on all "
                f"{boost['threads_alone']} cores (`follow_load`)" if boost.get("threads_alone")
                else "") + f". Every server was up at once and the {args.requests} requests per "
             f"level went in {args.rounds} blocks taking turns across the servers (stock, "
             "tuned, boost and the pt2 rows), so the host's slow spells fall on all alike. "
             f"Before them each server's frontend answered {args.frontend_warmup} requests to "
             "an echo model (its JIT warm, as in a server that has been running), and every "
             "client is one keep-alive `http.client` connection (`benchmarks/ts_frontend.py`).",
             "",
             "| concurrency | stock p50 ms | tuned p50 ms | boost p50 ms | stock req/s | "
             "tuned req/s | boost req/s | p50 speedup vs stock | vs tuned | throughput vs stock | "
             "vs tuned |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s, t, b, r in zip(stock["runs"], tuned["runs"], boost["runs"], ratios):
        lines.append(f"| {s['concurrency']} | {s['p50_ms']} | {t['p50_ms']} | {b['p50_ms']} | "
                     f"{s['throughput_rps']} | {t['throughput_rps']} | {b['throughput_rps']} | "
                     f"{r['p50_speedup']}x | {r['p50_speedup_vs_tuned']}x | "
                     f"{r['throughput_ratio']}x | {r['throughput_ratio_vs_tuned']}x |")
    if peer_rows:
        lines += ["", "TorchServe's own torch.compile (model-config.yaml `pt2:`, stock "
                  "image_classifier), one server each, measured in the same turns:", "",
                  "| row | concurrency | p50 ms | p99 ms | req/s | boost p50 speedup vs row |",
                  "|---|---|---|---|---|---|"]
        for peer, row in peer_rows.items():
            if not row["runs"]:
                lines.append(f"| {LABELS[peer]} | - | failed: {row.get('error', '')[:120]} | | | |")
            for r, b in zip(row["runs"], boost["runs"]):
                lines.append(f"| {LABELS[peer]} | {r['concurrency']} | {r['p50_ms']} | "
                             f"{r['p99_ms']} | {r['throughput_rps']} | "
                             f"{round(r['p50_ms'] / b['p50_ms'], 2)}x |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(result, stem.with_suffix(".png"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
