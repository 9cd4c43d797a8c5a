"""Dynamic length vs one static build per length: does any backend need length buckets?

    python benchmarks/length_buckets_bench.py [--lengths 8,16,32,64,128] [--budget 1.0]

The pretrained all-MiniLM-L6-v2 encoder with ``seq`` dynamic in 1..128. For ONNX Runtime and
OpenVINO: one build with the length dynamic, timed at each length, against a build made static
at exactly that length (the best a bucket could do). For TVM, which builds static shapes only:
the length-bucketed build (one library per bucket, requests zero-padded up to the nearest with
the attention mask saying so), timed at each bucket's own length and at lengths between buckets,
where padding costs. PyTorch eager at each length for reference. Batch 1, p50 over ``--budget``
seconds after 5 warm-up runs, all in this one process, one measurement after another. Writes
benchmarks/results/length_buckets.{json,md}; the machine is named in both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
RANGE = (1, 128)


def _handle(model, example, seq: int | None):
    """MiniLM's handle: ``seq`` dynamic in RANGE (``seq`` None) or static at ``seq``."""
    from yellowstone.model import load_model
    from yellowstone.serving import parse_specs

    length = f"seq={RANGE[0]}..{RANGE[1]}" if seq is None else str(seq)
    specs = [f"input_ids:-1x{length}:int64", f"attention_mask:-1x{length}:int64"]
    return load_model(model, example, input_specs=parse_specs(specs, where="bench"))


def _example(tok, n: int):
    """A real sentence's tokens at exactly ``n`` tokens (repeated text, truncated)."""
    import torch

    enc = tok(["The committee postponed its vote until next week. " * 40], truncation=True,
              max_length=n, padding="max_length", return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"].to(torch.int64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="8,16,32,64,128")
    ap.add_argument("--between", default="13,48,100", help="lengths between TVM's buckets")
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--backends", default="onnxruntime,openvino,tvm")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from benchmarks import zoo
    from benchmarks.roofline import host_info
    from yellowstone.backends import CompileRequest, get_backend
    from yellowstone.bench import measure

    host = host_info()
    lengths = [int(x) for x in args.lengths.split(",")]
    between = [int(x) for x in args.between.split(",")]
    model, tok, _ = zoo.minilm(seq_len=32, batch=1)
    feeds_at = {n: {k: v.numpy() for k, v in zip(("input_ids", "attention_mask"),
                                                  _example(tok, n))}
                for n in sorted(set(lengths + between))}

    def p50(fn) -> float:
        return round(measure(fn, budget_s=args.budget).p50_ms, 3)

    rows: list[dict] = []
    for n in lengths + between:
        ids, mask = (torch.from_numpy(feeds_at[n][k]) for k in ("input_ids", "attention_mask"))
        with torch.inference_mode():
            rows.append({"backend": "native", "build": "eager", "length": n,
                         "p50_ms": p50(lambda i=ids, m=mask: model(i, m))})
    dynamic = _handle(model, _example(tok, 32), None)
    for name in args.backends.split(","):
        backend = get_backend(name)
        if not backend.probe().available:
            print(f"{name}: {backend.probe().reason}", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        batch = None if backend.dynamic_batch else 1
        with tempfile.TemporaryDirectory() as tmp:
            built = backend.compile(dynamic, CompileRequest(batch=batch, precision="fp32"),
                                    Path(tmp))
            label = "length buckets" if name == "tvm" else "dynamic length"
            print(f"{name} {label}: built in {time.perf_counter() - t0:.1f} s", file=sys.stderr,
                  flush=True)
            for n in lengths + (between if name == "tvm" else []):
                rows.append({"backend": name, "build": label, "length": n,
                             "p50_ms": p50(lambda f=feeds_at[n], c=built: c.run(f))})
        if name == "tvm":
            continue
        for n in lengths:
            with tempfile.TemporaryDirectory() as tmp:
                static = backend.compile(_handle(model, _example(tok, n), n),
                                         CompileRequest(batch=batch, precision="fp32"), Path(tmp))
                rows.append({"backend": name, "build": f"static at {n}", "length": n,
                             "p50_ms": p50(lambda f=feeds_at[n], c=static: c.run(f))})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "length_buckets.json").write_text(json.dumps(
        {"host": host, "range": RANGE, "budget_s": args.budget, "rows": rows}, indent=1))
    md = markdown(rows, host, lengths, between)
    (out / "length_buckets.md").write_text(md)
    print(md)
    return 0


def markdown(rows: list[dict], host: dict, lengths: list[int], between: list[int]) -> str:
    """One row per backend and build, one column per length (p50 ms, batch 1)."""
    cols = sorted(set(lengths + between))
    builds: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        key = (r["backend"], "static at each length" if r["build"].startswith("static")
               else r["build"])
        builds.setdefault(key, {})[r["length"]] = r["p50_ms"]
    lines = [f"Machine: {host['line']}. MiniLM (all-MiniLM-L6-v2), batch 1, `seq` in "
             f"{RANGE[0]}..{RANGE[1]}; p50 ms per length. 'static at each length' is a build "
             "made for exactly that length; TVM's length buckets pad a request to the next of "
             f"{lengths}.", "",
             "| backend | build | " + " | ".join(f"seq {n}" for n in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for (backend, build), times in builds.items():
        lines.append(f"| {backend} | {build} | "
                     + " | ".join(f"{times[n]:.2f}" if n in times else "-" for n in cols) + " |")
    lines += ["", "Dynamic over static at the same length (above 1: the dynamic build is slower):",
              "", "| backend | " + " | ".join(f"seq {n}" for n in lengths) + " |",
              "|---|" + "---|" * len(lengths)]
    for backend in dict.fromkeys(b for b, _ in builds):
        dyn = builds.get((backend, "dynamic length"))
        st = builds.get((backend, "static at each length"))
        if dyn and st:
            lines.append(f"| {backend} | " + " | ".join(
                f"{dyn[n] / st[n]:.2f}" if n in dyn and n in st else "-" for n in lengths) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
