"""Put the suite's latest tables (benchmarks/results/core_bench.md) into the README.

    .venv/bin/python benchmarks/update_readme.py

Replaces what lies between the ``<!-- suite:begin -->`` and ``<!-- suite:end -->`` markers in
README.md with core_bench.md (its machine line names the CPU, family/model, microarchitecture,
ISA, measured clock and cores), a link to each model's plot and to the roofline's derivation
(benchmarks/ROOFLINE.md, benchmarks/results/roofline.json), so the README quotes the committed
results and nothing else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"


def main() -> int:
    readme = ROOT / "README.md"
    results = ROOT / "benchmarks" / "results"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md has no {BEGIN} ... {END} section", file=sys.stderr)
        return 1
    data = json.loads((results / "core_bench.json").read_text())
    models = list(dict.fromkeys(r["model"] for r in data["reports"]))
    plots = " ".join(f"![{m}](benchmarks/results/core_bench_{m}.png)" for m in models
                     if (results / f"core_bench_{m}.png").exists())
    body = (results / "core_bench.md").read_text().strip()
    if "roofline" not in data:
        print("core_bench.json predates the roofline (run benchmarks/core_bench.py again)",
              file=sys.stderr)
        return 1
    body += ("\n\nHow the roof is derived (FLOP/cycle per microarchitecture and ISA, with sources; "
             "the measured clock; the OpenVINO MatMul beside it): "
             "[benchmarks/ROOFLINE.md](benchmarks/ROOFLINE.md), measured values in "
             "[roofline.json](benchmarks/results/roofline.json).")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{body}\n\n{plots}\n{END}{tail}")
    print(f"README.md: suite section from {len(data['reports'])} runs ({', '.join(models)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
