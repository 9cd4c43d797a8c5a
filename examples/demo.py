"""Demo: boost the real pretrained all-MiniLM-L6-v2 sentence encoder and compare with PyTorch.

    bash scripts/demo.sh                      # onnxruntime, openvino, inductor
    bash scripts/demo.sh --backends auto      # every backend that can run here (adds tvm)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yellowstone  # noqa: E402
from benchmarks.zoo import SENTENCES, minilm  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="onnxruntime,openvino,inductor")
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    model, tokenizer, example = minilm(seq_len=args.seq_len, batch=len(SENTENCES))
    print(f"all-MiniLM-L6-v2 (pretrained, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"
          f" parameters), sequence length {args.seq_len}, {torch.get_num_threads()} threads\n")

    boosted = yellowstone.boost(model, example, backends=args.backends, batch_sizes=(1, 4),
                                progress=lambda m: print("  " + m, flush=True))
    print()
    print(boosted.report.table())

    # The same call as the original model, on the real sentences.
    with torch.inference_mode():
        ref = model(*example)
    out = boosted(*example)
    sims_ref, sims_out = ref @ ref.T, out @ out.T
    print(f"\nmax |embedding difference| vs PyTorch: {(out - ref).abs().max().item():.2e}")
    print("cosine similarity, PyTorch -> boosted:")
    for i in range(len(SENTENCES)):
        for j in range(i + 1, len(SENTENCES)):
            print(f"  {sims_ref[i, j]:+.4f} -> {sims_out[i, j]:+.4f}  "
                  f"{SENTENCES[i][:34]!r} vs {SENTENCES[j][:34]!r}")

    one = tuple(t[:1] for t in example)
    timings = {}
    for name, fn in (("pytorch", lambda: model(*one)), (boosted.backend, lambda: boosted(*one))):
        with torch.inference_mode():
            for _ in range(5):
                fn()
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < 3.0:
                fn()
                n += 1
        timings[name] = (time.perf_counter() - t0) / n * 1e3
    base = timings["pytorch"]
    print("\nend to end, batch 1 (same call, 3 s each):")
    for name, ms in timings.items():
        print(f"  {name:12} {ms:7.2f} ms   {base / ms:4.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
