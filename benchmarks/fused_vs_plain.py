"""ResNet-50 with the TorchServe handler's fused preprocessing against the plain model, in process.

    .venv/bin/python benchmarks/fused_vs_plain.py [--precision bf16] [--rounds 6]

Tells whether the boost handler's model stage is slower in a TorchServe worker because of the
graph it serves (:class:`FusedImageModel`: uint8 NHWC pixels, ``/255``, ``Normalize``, then the
model) or because of the worker it runs in. Both are boosted on OpenVINO at batch 1 (random
weights) and timed in one process, in ``--rounds`` ABBA rounds, through ``run`` (NumPy feeds)
and through the call the handler makes (tensors). Writes
``benchmarks/results/fused_vs_plain.{json,md}`` (or ``--out-dir``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    import torch
    import torchvision  # before anything imports TensorFlow

    import yellowstone
    from benchmarks.roofline import host_info
    from yellowstone.bench import measure
    from yellowstone.plugins.torchserve.fused import FusedImageModel

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    fused = FusedImageModel(model, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).eval()
    x = torch.rand(1, 3, 224, 224)
    pixels = torch.randint(0, 256, (1, 224, 224, 3), dtype=torch.uint8)
    kw = {"backends": "openvino", "precision": args.precision, "batch_sizes": "1",
          "time_budget_s": 0.5, "cache": False}
    plain_b = yellowstone.boost(model, (x,), **kw)
    fused_b = yellowstone.boost(fused, (pixels,), **kw)
    feeds_p = {plain_b.handle.inputs[0].name: x.numpy()}
    feeds_f = {fused_b.handle.inputs[0].name: pixels.numpy()}
    sides = {"plain, run": lambda: plain_b.run(feeds_p), "fused, run": lambda: fused_b.run(feeds_f),
             "plain, call": lambda: plain_b(x), "fused, call": lambda: fused_b(pixels)}
    p50s: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(args.rounds):
        for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            p50s[k].append(measure(sides[k], budget_s=0.5, warmup=2).p50_ms)
    host = host_info()
    result = {"host": host, "precision": args.precision, "rounds": args.rounds,
              "backend": [plain_b.backend, fused_b.backend],
              "buckets": [plain_b.report.candidate("openvino").buckets,
                          fused_b.report.candidate("openvino").buckets],
              "p50_ms": {k: statistics.median(v) for k, v in p50s.items()}, "rounds_p50_ms": p50s}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fused_vs_plain.json").write_text(json.dumps(result, indent=1))
    rows = "\n".join(f"| {k} | {statistics.median(v):.2f} | {min(v):.2f}-{max(v):.2f} |"
                     for k, v in p50s.items())
    (out / "fused_vs_plain.md").write_text(
        f"# ResNet-50, fused preprocessing vs plain, OpenVINO {args.precision}, batch 1, in process\n\n"
        f"CPU: {host['line']}\n\n{args.rounds} ABBA rounds of 0.5 s per side; median p50 and the "
        f"rounds' range. Served by {plain_b.backend} / {fused_b.backend}, buckets "
        f"{result['buckets'][0]} / {result['buckets'][1]}.\n\n"
        f"| side | p50 ms | range |\n|---|---|---|\n{rows}\n")
    print((out / "fused_vs_plain.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
