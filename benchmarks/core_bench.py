"""The benchmark suite: every model, backend, precision and batch size, through ``yellowstone.boost``.

    .venv/bin/python benchmarks/core_bench.py [--models resnet50,mobilenet_v3,minilm,keras_cnn]
        [--precisions fp32,int8,bf16] [--batch-sizes 1,8] [--tvm] [--time-budget 2]
        [--out benchmarks/results]

One boost per (model, precision), each in its own process, one after the other, so backends
never compete for the cores and one crash cannot take down the rest. ``--tvm`` adds a TVM run
per model at fp32, batch 1 (TVM is left out of ``auto``; this shows why). Writes
``core_bench.json`` (every report, FLOPs, the measured GEMM peak, wall time), ``core_bench.md``
(the README tables: speed, accuracy, share of the peak) and ``core_bench_<model>.png`` (speedup
over native per backend, precision and batch size). MiniLM calibrates int8 on real sentences
(``zoo.calibration``); the others on yellowstone's synthetic set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(name: str, precision: str, backends: str, sizes: str, budget: float, out: Path) -> None:
    """Child process: boost one model at one precision with a fresh cache; write its report."""
    sys.path.insert(0, str(ROOT))
    if name != "keras_cnn":
        import torchvision  # noqa: F401 - before TensorFlow, which crashes it when imported first
    import yellowstone
    from benchmarks.zoo import MODELS, TASKS, calibration

    model, example = MODELS[name]()
    gflop = model_gflop(model, example)
    t0 = time.perf_counter()
    boosted = yellowstone.boost(model, example, backends=backends, batch_sizes=sizes,
                                precision=precision, task=TASKS[name],
                                calibration_inputs=calibration(name) if precision == "int8" else (),
                                time_budget_s=budget, cache_dir=tempfile.mkdtemp(),
                                progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    rep = boosted.report.to_dict()
    rep["model"] = name
    rep["wall_s"] = round(time.perf_counter() - t0, 1)
    rep["gflop"] = gflop
    out.write_text(json.dumps(rep, indent=1))


def model_gflop(model, example) -> float | None:
    """FLOPs of one forward at the example's batch (matmuls and convolutions, 2 per MAC)."""
    if not hasattr(model, "parameters"):  # Keras: TensorFlow's profiler on the traced graph
        return keras_gflop(model, example)
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*example)
    return counter.get_total_flops() / 1e9


def keras_gflop(model, example) -> float | None:
    """FLOPs of a Keras model's forward, from TensorFlow's graph profiler (None if it fails)."""
    try:
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        fn = tf.function(lambda x: model(x, training=False))
        concrete = fn.get_concrete_function(tf.TensorSpec(example[0].shape, tf.float32))
        graph = convert_variables_to_constants_v2(concrete).graph
        opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        prof = tf.compat.v1.profiler.profile(graph=graph, options=opts)
        return prof.total_float_ops / 1e9 if prof.total_float_ops else None
    except Exception as exc:  # noqa: BLE001 - the roofline column is then left empty
        print(f"  FLOP count failed: {exc}", file=sys.stderr)
        return None


def measured_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """fp32 GEMM throughput of this machine with torch on all cores: the roofline's compute roof."""
    import torch

    a, b = torch.rand(n, n), torch.rand(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# Rows left out of the tables: not installed here, not a candidate for the model, or a precision
# the backend never offers (the table's header says which backends take which precision).
_NOT_APPLICABLE = ("not installed", "left out of auto", "compiles torch models only",
                   "serves fp32 only", "serves fp32 and int8")


def _cell(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(reports: list[dict], machine: str, peak: float, wall_s: float,
             auto_table: bool = True) -> str:
    """The README tables: one row per model, precision and backend that ran."""
    sizes = reports[0]["batch_sizes"] if reports else [1]
    lines = [f"Machine: {machine}. Suite wall time {wall_s / 60:.1f} min. p50 over a time budget "
             "per backend and batch size after 5 warm-up runs; speedup = native fp32 p50 / "
             "backend p50, measured in the same process. Accuracy against the framework's fp32 "
             "output on fresh random inputs (reduced precision also on 64 more samples): max abs "
             "error, top-1 agreement (classifiers), mean cosine similarity. Roofline: FLOPs / p50 "
             f"at batch {sizes[0]}, as a share of this machine's measured fp32 GEMM peak "
             f"({peak:.0f} GFLOP/s; int8 rows can pass 100%: that roof is fp32's). "
             "`auto/best`: the chosen backend's p50 over the fastest "
             "valid one's, per batch size. int8 runs on onnxruntime and openvino; bf16 only on "
             "openvino (and TensorRT) where the CPU has it; inductor and TVM serve fp32.", ""]
    head = (["model", "precision", "backend", "status", "max abs err", "top-1", "cosine"]
            + [f"p50 ms b{b}" for b in sizes] + [f"speedup b{b}" for b in sizes]
            + ["GFLOP/s", "% of peak"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rep in reports:
        native = next(c for c in rep["candidates"] if c["backend"] == "native")
        gflop = rep.get("gflop")
        for c in rep["candidates"]:
            if c["backend"] == "native" and rep["precision"] != "fp32":
                continue  # the fp32 reference: its row is in the fp32 run
            if c["status"] == "unavailable" and any(
                    why in c["reason"] for why in _NOT_APPLICABLE):
                continue  # not installed here, or not a candidate for this model at all
            lat = {int(k): v["p50_ms"] for k, v in c.get("latency_ms", {}).items()}
            nat = {int(k): v["p50_ms"] for k, v in native.get("latency_ms", {}).items()}
            status = f"**{c['status']}**" if c["status"] == "chosen" else c["status"]
            if c["status"] in ("failed", "rejected", "unavailable"):
                status += f" ({c['reason'][:90]})"
            rate = gflop / (lat[sizes[0]] / 1e3) if gflop and lat.get(sizes[0]) else None
            row = [rep["model"], rep["precision"], c["backend"], status,
                   _cell(c.get("max_abs_err"), ".1e"), _cell(c.get("top1_agreement"), ".3f"),
                   _cell(c.get("mean_cosine"), ".4f")]
            row += [_cell(lat.get(b), ".2f") for b in sizes]
            row += [f"{nat[b] / lat[b]:.2f}x" if lat.get(b) and nat.get(b) else "-" for b in sizes]
            row += [_cell(rate, ".0f"), "-" if rate is None else f"{100 * rate / peak:.0f}%"]
            lines.append("| " + " | ".join(row) + " |")
    if not auto_table:
        return "\n".join(lines) + "\n"
    lines += ["", "Auto choice against the best single backend (same run):", "",
              "| model | precision | chosen | " + " | ".join(f"auto/best b{b}" for b in sizes) + " |",
              "|---|---|---|" + "---|" * len(sizes)]
    for rep in reports:
        valid = [c for c in rep["candidates"] if c["status"] in ("chosen", "ok")
                 and (c["backend"] != "native" or rep["precision"] == "fp32" or
                      all(x["status"] not in ("chosen", "ok") for x in rep["candidates"]
                          if x["backend"] != "native"))]
        chosen = next((c for c in rep["candidates"] if c["status"] == "chosen"), None)
        if chosen is None:
            continue
        cells = []
        for b in sizes:
            best = min((c["latency_ms"][str(b)]["p50_ms"] for c in valid
                        if str(b) in c.get("latency_ms", {})), default=None)
            mine = chosen.get("latency_ms", {}).get(str(b), {}).get("p50_ms")
            cells.append(f"{mine / best:.2f}" if mine and best else "-")
        lines.append(f"| {rep['model']} | {rep['precision']} | {chosen['backend']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_model(name: str, reports: list[dict], out: Path) -> None:
    """Speedup over native fp32 per backend x precision (bars), one group per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = []  # (label, {batch: speedup})
    for rep in reports:
        native = next(c for c in rep["candidates"] if c["backend"] == "native")
        nat = {k: v["p50_ms"] for k, v in native.get("latency_ms", {}).items()}
        for c in rep["candidates"]:
            if c["status"] not in ("chosen", "ok") or (c["backend"] == "native"
                                                         and rep["precision"] != "fp32"):
                continue
            sp = {k: nat[k] / v["p50_ms"] for k, v in c["latency_ms"].items() if k in nat}
            star = " *" if c["status"] == "chosen" and c["backend"] != "native" else ""
            bars.append((f"{c['backend']} {rep['precision']}{star}", sp))
    if not bars:
        return
    sizes = sorted({int(k) for _, sp in bars for k in sp})
    fig, ax = plt.subplots(figsize=(2 + 0.9 * len(bars) * len(sizes) ** 0.5, 4))
    width = 0.8 / len(sizes)
    for j, b in enumerate(sizes):
        ax.bar([i + j * width for i in range(len(bars))], [sp.get(str(b), 0) for _, sp in bars],
               width, label=f"batch {b}")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks([i + width * (len(sizes) - 1) / 2 for i in range(len(bars))])
    ax.set_xticklabels([label for label, _ in bars], rotation=30, ha="right")
    ax.set_ylabel("speedup over native fp32 (p50)")
    ax.set_title(f"{name}: validated backends and precisions; * = chosen")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def render(out: Path) -> str:
    """Write core_bench.md and the per-model plots from core_bench.json; return the tables."""
    data = json.loads((out / "core_bench.json").read_text())
    reports, machine, peak, wall = (data["reports"], data["machine"], data["peak_gflops"],
                                    data["wall_s"])
    for name in dict.fromkeys(r["model"] for r in reports):
        plot_model(name, [r for r in reports if r["model"] == name and r["run_backends"] != "tvm"],
                   out / f"core_bench_{name}.png")
    table = markdown([r for r in reports if r["run_backends"] != "tvm"], machine, peak, wall)
    tvm_reports = [r for r in reports if r["run_backends"] == "tvm"]
    if tvm_reports:
        table += "\nTVM (untuned, fp32, batch 1; not in `auto`):\n\n" + "\n".join(
            markdown(tvm_reports, machine, peak, wall, auto_table=False).split("\n")[2:])
    (out / "core_bench.md").write_text(table)
    return table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet50,mobilenet_v3,minilm,keras_cnn")
    p.add_argument("--precisions", default="fp32,int8,bf16")
    p.add_argument("--backends", default="auto")
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--tvm", action="store_true", help="also run TVM at fp32, batch 1")
    p.add_argument("--time-budget", type=float, default=2.0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--render", action="store_true",
                   help="only redraw the tables and plots from the saved core_bench.json")
    args = p.parse_args()
    if args.render:
        render(Path(args.out))
        return 0
    if args.child:
        name, precision, backends = args.child
        one_run(name, precision, backends, args.batch_sizes, args.time_budget,
                Path(args.child_out))
        return 0
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from yellowstone.hardware import detect

    hw = detect()
    peak = measured_peak_gflops()
    print(f"measured fp32 GEMM peak: {peak:.0f} GFLOP/s", file=sys.stderr, flush=True)
    machine = (f"{hw.cpu_model} ({hw.arch}), {hw.cores} cores, ISA "
               f"{'/'.join(hw.isa) or 'baseline'}, Python {platform.python_version()}")
    runs = [(m, prec, args.backends, args.batch_sizes) for m in args.models.split(",")
            for prec in args.precisions.split(",")]
    if args.tvm:
        runs += [(m, "fp32", "tvm", "1") for m in args.models.split(",") if m != "keras_cnn"]
    reports = []
    for name, precision, backends, sizes in runs:
        print(f"== {name} {precision} [{backends}] batch {sizes} "
              f"({(time.perf_counter() - started) / 60:.1f} min)", file=sys.stderr, flush=True)
        tmp = out / f".{name}-{precision}.json"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, __file__, "--child", name, precision, backends,
                               "--batch-sizes", sizes, "--time-budget", str(args.time_budget),
                               "--child-out", str(tmp)], env=env)
        if proc.returncode != 0 or not tmp.exists():
            print(f"{name} {precision}: benchmark process failed (exit {proc.returncode})",
                  file=sys.stderr)
            continue
        rep = json.loads(tmp.read_text())
        tmp.unlink()
        rep["run_backends"] = backends
        reports.append(rep)
    wall = time.perf_counter() - started
    (out / "core_bench.json").write_text(json.dumps(
        {"machine": machine, "peak_gflops": round(peak, 1), "wall_s": round(wall, 1),
         "loadavg_at_end": os.getloadavg(), "reports": reports}, indent=1))
    table = render(out)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
