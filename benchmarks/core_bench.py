"""Every backend side by side on ResNet-50, MobileNetV3 and MiniLM, through ``yellowstone.boost``.

    .venv/bin/python benchmarks/core_bench.py [--models resnet50,mobilenet_v3,minilm]
        [--backends auto] [--batch-sizes 1] [--time-budget 3] [--out benchmarks/results]

Writes ``core_bench.json`` (every report, FLOPs, the measured GEMM peak), ``core_bench.md``
(the README table, with each backend's share of that peak) and one PNG
plot per model. Each model runs in its own process, one after the other, so backends never
compete for the cores and one model's crash cannot take down the others.
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


def one_model(name: str, backends: str, sizes: str, budget: float, out: Path) -> None:
    """Child process: boost one model with a fresh cache and write its report JSON."""
    sys.path.insert(0, str(ROOT))
    import yellowstone
    from benchmarks.zoo import MODELS

    model, example = MODELS[name]()
    gflop = model_gflop(model, example)
    t0 = time.perf_counter()
    boosted = yellowstone.boost(model, example, backends=backends, batch_sizes=sizes,
                                time_budget_s=budget, cache_dir=tempfile.mkdtemp(),
                                progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    rep = boosted.report.to_dict()
    rep["model"] = name
    rep["wall_s"] = round(time.perf_counter() - t0, 1)
    rep["gflop"] = gflop
    out.write_text(json.dumps(rep, indent=1))


def model_gflop(model, example) -> float:
    """FLOPs of one forward at the example's batch (matmuls and convolutions, 2 per MAC)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*example)
    return counter.get_total_flops() / 1e9


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


def markdown(reports: list[dict], machine: str, peak: float) -> str:
    lines = [f"Machine: {machine}. fp32, batch {reports[0]['batch_sizes'][0]}; p50/p90 over a "
             "time budget per backend after warm-up; max abs err vs PyTorch on fresh random "
             "inputs; speedup = native p50 / backend p50 (measured in the same run). Roofline: "
             f"the model's FLOPs over p50, as a share of this machine's measured fp32 GEMM peak "
             f"({peak:.0f} GFLOP/s, torch on all cores).", ""]
    lines += ["| model | backend | status | compile s | max abs err | p50 ms | p90 ms | "
              "speedup vs native | GFLOP/s | % of peak |", "|---|---|---|---|---|---|---|---|---|---|"]
    for rep in reports:
        native = next(c for c in rep["candidates"] if c["backend"] == "native")
        gflop = rep.get("gflop")
        for c in rep["candidates"]:
            if c["status"] == "unavailable":
                continue
            sp = (f"{native['p50_ms'] / c['p50_ms']:.2f}x" if c.get("p50_ms") and native.get("p50_ms")
                  else "-")
            err = "-" if c.get("max_abs_err") is None else f"{c['max_abs_err']:.1e}"
            comp = "-" if c.get("compile_s") is None else f"{c['compile_s']:.1f}"
            p50 = "-" if c.get("p50_ms") is None else f"{c['p50_ms']:.2f}"
            p90 = "-" if c.get("p90_ms") is None else f"{c['p90_ms']:.2f}"
            status = f"**{c['status']}**" if c["status"] == "chosen" else c["status"]
            if c["status"] in ("failed", "rejected"):
                status += f" ({c['reason'][:80]})"
            rate = gflop / (c["p50_ms"] / 1e3) if gflop and c.get("p50_ms") else None
            roof = "-" if rate is None else f"{rate:.0f} | {100 * rate / peak:.0f}%"
            lines.append(f"| {rep['model']} | {c['backend']} | {status} | {comp} | {err} | {p50} "
                         f"| {p90} | {sp} | {roof if rate else '- | -'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet50,mobilenet_v3,minilm")
    p.add_argument("--backends", default="auto")
    p.add_argument("--batch-sizes", default="1")
    p.add_argument("--time-budget", type=float, default=3.0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        one_model(args.child, args.backends, args.batch_sizes, args.time_budget,
                  Path(args.child_out))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from yellowstone.cli import plot_report
    from yellowstone.hardware import detect

    hw = detect()
    peak = measured_peak_gflops()
    print(f"measured fp32 GEMM peak: {peak:.0f} GFLOP/s", file=sys.stderr, flush=True)
    machine = (f"{hw.cpu_model} ({hw.arch}), {hw.cores} cores, ISA "
               f"{'/'.join(hw.isa) or 'baseline'}, Python {platform.python_version()}")
    reports = []
    for name in args.models.split(","):
        print(f"== {name}", file=sys.stderr, flush=True)
        tmp = out / f".{name}.json"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, __file__, "--child", name, "--backends",
                               args.backends, "--batch-sizes", args.batch_sizes,
                               "--time-budget", str(args.time_budget), "--child-out", str(tmp)],
                              env=env)
        if proc.returncode != 0 or not tmp.exists():
            print(f"{name}: benchmark process failed (exit {proc.returncode})", file=sys.stderr)
            continue
        rep = json.loads(tmp.read_text())
        tmp.unlink()
        reports.append(rep)
        plot_report(rep, out / f"core_bench_{name}.png", title=f"{name}: latency per backend "
                    f"({hw.cores} cores); * = chosen")
    load = os.getloadavg()
    (out / "core_bench.json").write_text(json.dumps(
        {"machine": machine, "peak_gflops": round(peak, 1), "loadavg_at_end": load,
         "reports": reports}, indent=1))
    table = markdown(reports, machine, peak)
    (out / "core_bench.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
