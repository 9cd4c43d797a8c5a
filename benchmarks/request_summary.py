"""One figure and one table for "where does a request's time go" on all three servers.

    python benchmarks/request_summary.py [--readme]

Reads what the three breakdown benchmarks wrote into benchmarks/results/ and puts them side by
side; it measures nothing itself:

- ``request_breakdown.json`` (TorchServe, ``request_breakdown.py``: HTTP through the real
  frontend and worker, stock handler vs the boost handler);
- ``request_breakdown_kserve_<model>.json`` (KServe REST V2 binary and gRPC V2, plain
  ``kserve.Model`` vs the boost predictor, in process);
- ``request_breakdown_tfserving_<model>.json`` (TF Serving REST and gRPC Predict, the TensorFlow
  session vs the shim, in process).

Each server names its stages its own way; the figure maps them onto five shared ones (protocol
and framework, decode, preprocess and conversion, model, postprocess and encode). The table gives
per server, transport and model: the stock and boosted request, the model's share, and the
plugin's own cost: what the boosted request spends outside the model minus what the stock
request spends outside it (negative where the boost path does less, e.g. TorchServe's
image pipeline fused into the compiled model). Writes ``request_summary.{md,png}``; with
``--readme`` also the README's ``<!-- requests:begin -->`` section.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BEGIN, END = "<!-- requests:begin -->", "<!-- requests:end -->"
SHARED = ("protocol + framework", "decode", "preprocess + conversion", "model",
          "postprocess + encode")
MODELS = {"resnet50": "ResNet-50", "minilm": "MiniLM"}

# each server's stage -> the shared stage it belongs to
TORCHSERVE_STAGES = {"frontend + IPC": SHARED[0], "handler, other": SHARED[0], "decode": SHARED[1],
                     "preprocess": SHARED[2], "tensor conversion": SHARED[2], "model": SHARED[3],
                     "postprocess": SHARED[4]}
IN_PROCESS_STAGES = {"framework": SHARED[0], "decode": SHARED[1], "conversion": SHARED[2],
                     "model": SHARED[3], "encode": SHARED[4]}


def _row(server: str, transport: str, model: str, side: str, backend: str,
         stages: dict[str, float], mapping: dict[str, str], total: float) -> dict:
    shared = dict.fromkeys(SHARED, 0.0)
    for stage, ms in stages.items():
        if stage in mapping:
            shared[mapping[stage]] += ms
    return {"server": server, "transport": transport, "model": model, "side": side,
            "backend": backend, "stages": shared, "total_ms": total, "model_ms": shared["model"]}


def torchserve_rows() -> tuple[list[dict], dict | None]:
    path = RESULTS / "request_breakdown.json"
    if not path.exists():
        return [], None
    doc = json.loads(path.read_text())
    rows = []
    for r in doc["results"]:
        model = "resnet50" if r["model"].lower().startswith("resnet") else "minilm"
        rows.append(_row("TorchServe", "HTTP", model, r["side"], r["backend"], r["mean_ms"],
                         TORCHSERVE_STAGES, sum(r["mean_ms"].values())))
    return rows, doc


def in_process_rows(server: str, prefix: str, stock: str) -> tuple[list[dict], list[dict]]:
    rows, docs = [], []
    for model in MODELS:
        path = RESULTS / f"{prefix}_{model}.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        docs.append(doc)
        for key, r in doc["rows"].items():
            who, transport = key.split("/")
            side = "stock" if who == stock else "boost"
            backend = doc.get("boost_backend", "") if side == "boost" else stock
            rows.append(_row(server, "REST" if transport == "rest" else "gRPC", model, side,
                             backend, r, IN_PROCESS_STAGES, r["total"]))
    return rows, docs


def pairs(rows: list[dict]) -> list[dict]:
    """Stock and boost of each (server, transport, model), with the ratios."""
    out = []
    keys = list(dict.fromkeys((r["server"], r["transport"], r["model"]) for r in rows))
    for key in keys:
        by_side = {r["side"]: r for r in rows if (r["server"], r["transport"], r["model"]) == key}
        if set(by_side) != {"stock", "boost"}:
            continue
        s, b = by_side["stock"], by_side["boost"]
        own = (b["total_ms"] - b["model_ms"]) - (s["total_ms"] - s["model_ms"])
        out.append({"server": key[0], "transport": key[1], "model": key[2],
                    "backend": b["backend"], "stock": s, "boost": b,
                    "speedup": s["total_ms"] / b["total_ms"],
                    "own_ms": own, "own_pct": 100 * own / b["model_ms"] if b["model_ms"] else None})
    return out


def markdown(table: list[dict], hosts: list[str]) -> str:
    lines = ["| server | transport | model | stock ms (model) | boosted ms (model) | boosted on | "
             "request speedup | plugin's own cost, ms | as % of the boosted model |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in table:
        s, b = p["stock"], p["boost"]
        pct = "-" if p["own_pct"] is None else f"{p['own_pct']:+.1f}%"
        lines.append(f"| {p['server']} | {p['transport']} | {MODELS[p['model']]} | "
                     f"{s['total_ms']:.2f} ({s['model_ms']:.2f}) | "
                     f"{b['total_ms']:.2f} ({b['model_ms']:.2f}) | {p['backend']} | "
                     f"{p['speedup']:.2f}x | {p['own_ms']:+.2f} | {pct} |")
    head = ["CPU: " + "; ".join(sorted(set(hosts))) + "." if hosts else "CPU: not recorded.", ""]
    return "\n".join(head + lines) + "\n"


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return False
    servers = list(dict.fromkeys(r["server"] for r in rows))
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    fig, axes = plt.subplots(len(models), len(servers), squeeze=False,
                             figsize=(4.2 * len(servers), 3.4 * len(models)))
    colors = dict(zip(SHARED, ("#9e9e9e", "#64b5f6", "#ffb74d", "#e57373", "#81c784")))
    for i, model in enumerate(models):
        for j, server in enumerate(servers):
            ax = axes[i][j]
            mine = sorted((r for r in rows if r["model"] == model and r["server"] == server),
                          key=lambda r: (r["transport"] != "gRPC", r["side"] != "stock"))
            labels = [f"{r['side']}\n{r['transport']}" for r in mine]
            bottom = [0.0] * len(mine)
            for stage in SHARED:
                vals = [r["stages"][stage] for r in mine]
                ax.bar(range(len(mine)), vals, 0.6, bottom=bottom, color=colors[stage],
                       label=stage if (i, j) == (0, 0) else None)
                bottom = [a + v for a, v in zip(bottom, vals)]
            ax.set_xticks(range(len(mine)), labels, fontsize=8)
            ax.set_title(f"{server}: {MODELS[model]}", fontsize=10)
            if j == 0:
                ax.set_ylabel("ms per request")
    fig.legend(loc="lower center", ncol=len(SHARED), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", action="store_true", help="also write the README's section")
    args = ap.parse_args()
    ts_rows, ts_doc = torchserve_rows()
    ks_rows, ks_docs = in_process_rows("KServe", "request_breakdown_kserve", "plain")
    tf_rows, tf_docs = in_process_rows("TF Serving", "request_breakdown_tfserving", "tensorflow")
    rows = ts_rows + ks_rows + tf_rows
    if not rows:
        print("no breakdown results in benchmarks/results/: run the three breakdowns first",
              file=sys.stderr)
        return 1
    hosts = [d["host"]["line"] for d in [ts_doc, *ks_docs, *tf_docs] if d and "host" in d]
    body = markdown(pairs(rows), hosts)
    (RESULTS / "request_summary.md").write_text(body)
    has_plot = plot(rows, RESULTS / "request_summary.png")
    print(body)
    if args.readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        if BEGIN not in text or END not in text:
            print(f"README.md has no {BEGIN} ... {END} section", file=sys.stderr)
            return 1
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        figure = "\n![Where one request's time goes](benchmarks/results/request_summary.png)\n" \
            if has_plot else ""
        readme.write_text(f"{head}{BEGIN}\n{body}{figure}{END}{tail}")
        print("README.md: requests section written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
