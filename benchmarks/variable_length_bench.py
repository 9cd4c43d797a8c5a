"""Variable sequence length: MiniLM on sentences at their natural lengths, boosted vs the framework.

    python benchmarks/variable_length_bench.py [--sentences 300] [--rounds 3] [--quick]

The pretrained all-MiniLM-L6-v2 (TorchScript) embeds a fixed mix of real English sentences:
the prose paragraphs of the docstrings of a fixed list of standard-library modules (the Python
that runs the script ships them; the JSON records the Python version and the token lengths).
Each request is one sentence, tokenized at its own length (``padding`` to nothing) and served by
a model whose ``seq`` dim is dynamic in 1..256; for comparison, the same service with every
sentence padded to 128 tokens (and truncated there), as fixed-shape serving does. Four
configurations: {framework, boost} x {natural lengths, padded to 128}, measured

- in-process: PyTorch running the TorchScript file vs ``yellowstone.boost`` of it; one sentence
  per call (p50, p90, requests/s over the mix) and batches of 8 consecutive sentences padded to
  the batch's longest or to 128 (sentences/s);
- through KServe REST (V2, binary tensors, KServe's own client): a plain ``kserve.Model``
  calling TorchScript (``kserve_bench.py``'s) vs the boost predictor, one server per padding
  mode for the boost predictor; at concurrency 1 and 4.

Rounds interleave the configurations (this host's speed drifts over minutes). Every result
names the CPU (model, vendor family/model, microarchitecture, ISA). Writes
benchmarks/results/variable_length.{json,md,png} (``--out`` elsewhere); ``--quick`` runs a
short smoke version (40 sentences, one round, 0.05 s boost budget) whose timings mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
PAD = 128
DYNAMIC = ["input_ids:-1xseq=1..256:int64", "attention_mask:-1xseq=1..256:int64"]
PADDED = [f"input_ids:-1x{PAD}:int64", f"attention_mask:-1x{PAD}:int64"]
CONFIGS = ("framework natural", "boost natural", f"framework pad{PAD}", f"boost pad{PAD}")
BATCH = 8
# Modules whose docstrings hold the sentence mix (their order fixes the mix).
MODULES = ("argparse", "asyncio", "base64", "bisect", "calendar", "collections", "configparser",
           "contextlib", "csv", "datetime", "decimal", "difflib", "email.message", "fractions",
           "functools", "gzip", "heapq", "http.client", "inspect", "ipaddress", "itertools",
           "json", "logging", "mailbox", "os", "pathlib", "pickle", "queue", "random", "re",
           "sched", "shutil", "socket", "sqlite3", "statistics", "string", "subprocess",
           "tarfile", "tempfile", "textwrap", "threading", "unittest", "urllib.parse", "uuid",
           "zipfile")


# -- the sentence mix ----------------------------------------------------------------------------
def sentences(n: int) -> list[str]:
    """Up to ``n`` prose paragraphs from the standard library's docstrings, in a fixed order.

    A paragraph counts when it reads as prose: a capital letter first, a full stop last, no
    code (``>>>``, brackets, ``=``, calls, options) and almost only letters and punctuation.
    Every other one is taken, so neighbouring paragraphs of one docstring seldom both appear.
    """
    found: list[str] = []
    for name in MODULES:
        mod = importlib.import_module(name)
        objs = [mod] + [getattr(mod, a) for a in sorted(dir(mod)) if not a.startswith("_")]
        for obj in objs:
            if not (obj is mod or ((inspect.isclass(obj) or inspect.isfunction(obj))
                                   and getattr(obj, "__module__", None) == name)):
                continue
            for para in re.split(r"\n\s*\n", inspect.getdoc(obj) or ""):
                text = " ".join(para.split())
                if (re.match(r"^[A-Z][a-z]", text) and text.endswith(".")
                        and not re.search(r">>>|::|[{}=<>\[\]|]|\w\(\w*|\s-\w", text)
                        and sum(c.isalpha() or c in " ,.;'-" for c in text) >= 0.95 * len(text)
                        and text not in found):
                    found.append(text)
    return found[::2][:n]


def tokenize(tok, texts: list[str]) -> dict[str, list]:
    """Per sentence: natural feeds (1 x its tokens) and padded feeds (1 x 128, truncated)."""
    def feeds(enc, i=None):
        sl = slice(None) if i is None else slice(i, i + 1)
        return {k: np.ascontiguousarray(enc[k][sl]).astype(np.int64)
                for k in ("input_ids", "attention_mask")}

    natural = [feeds(tok([t], return_tensors="np")) for t in texts]
    padded = [feeds(tok([t], padding="max_length", truncation=True, max_length=PAD,
                        return_tensors="np")) for t in texts]
    groups = [texts[i:i + BATCH] for i in range(0, len(texts) - BATCH + 1, BATCH)]
    return {"natural": natural, "padded": padded,
            "natural_batches": [feeds(tok(g, padding=True, return_tensors="np")) for g in groups],
            "padded_batches": [feeds(tok(g, padding="max_length", truncation=True,
                                         max_length=PAD, return_tensors="np")) for g in groups],
            "lengths": [int(f["input_ids"].shape[1]) for f in natural]}


# -- model directories ---------------------------------------------------------------------------
def write_models(work: Path, tok, model) -> dict[str, Path]:
    """One TorchScript file; a KServe model directory per padding mode (``yellowstone.yaml``)."""
    import torch
    import yaml

    from benchmarks.zoo import CALIBRATION_SENTENCES

    enc = tok(CALIBRATION_SENTENCES[:2], padding=True, return_tensors="pt")
    dirs = {}
    for mode, specs, padding in (("natural", DYNAMIC, {"padding": True}),
                                 ("padded", PADDED, {"padding": "max_length", "max_length": PAD})):
        d = work / mode
        d.mkdir(parents=True, exist_ok=True)
        if not dirs:
            torch.jit.trace(model, (enc["input_ids"], enc["attention_mask"])).save(str(d / "model.pt"))
        else:
            (d / "model.pt").write_bytes((dirs["natural"] / "model.pt").read_bytes())
        ex = tok(CALIBRATION_SENTENCES[:8], truncation=True, return_tensors="np", **padding)
        np.savez(d / "examples.npz", input_ids=ex["input_ids"].astype(np.int64),
                 attention_mask=ex["attention_mask"].astype(np.int64))
        (d / "yellowstone.yaml").write_text(yaml.safe_dump(
            {"inputs": specs, "examples": "examples.npz", "task": "embedding"}))
        dirs[mode] = d
    return dirs


def boost_options(args) -> dict:
    opts = {"backends": args.backends, "batch_sizes": (1, BATCH)}
    if args.quick:
        opts.update(time_budget_s=0.05, validation_rounds=1)
    return opts


# -- in-process ----------------------------------------------------------------------------------
def summarise(lat_ms: list[float], wall_s: float, items: int) -> dict:
    lat = np.asarray(lat_ms)
    return {"requests": len(lat), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p90_ms": round(float(np.percentile(lat, 90)), 3),
            "mean_ms": round(float(lat.mean()), 3), "per_s": round(items / wall_s, 2)}


def in_process(dirs: dict[str, Path], data: dict, args) -> dict:
    """Framework vs boost, one sentence per call and batches of 8, natural vs padded."""
    import torch

    import yellowstone
    from yellowstone.serving import parse_specs

    module = torch.jit.load(str(dirs["natural"] / "model.pt")).eval()

    def framework(feeds):
        with torch.inference_mode():
            return module(torch.from_numpy(feeds["input_ids"]),
                          torch.from_numpy(feeds["attention_mask"])).numpy()

    runners, backends = {}, {}
    for mode, specs in (("natural", DYNAMIC), ("padded", PADDED)):
        with np.load(dirs[mode] / "examples.npz") as z:
            ex = {k: z[k] for k in z.files}
        boosted = yellowstone.boost(str(dirs[mode] / "model.pt"), ex, sample_inputs=[ex],
                                    input_specs=parse_specs(specs, where=mode), task="embedding",
                                    **boost_options(args))
        backends[mode] = boosted.backend
        label = "natural" if mode == "natural" else f"pad{PAD}"
        runners[f"framework {label}"] = (framework, mode)
        runners[f"boost {label}"] = ((lambda b: lambda f: b.run(f)[0])(boosted), mode)
    cos = {}
    for name, (run, mode) in runners.items():  # accuracy against the framework at natural length
        got = np.concatenate([run(f) for f in data[mode][:64]])
        want = np.concatenate([framework(f) for f in data["natural"][:64]])
        cos[name] = round(float(np.min(np.sum(got * want, 1) / np.linalg.norm(got, axis=1)
                                       / np.linalg.norm(want, axis=1))), 6)
    single: dict[str, list] = {c: [] for c in CONFIGS}
    batched: dict[str, list] = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        order = CONFIGS if r % 2 == 0 else CONFIGS[::-1]
        for name in order:
            run, mode = runners[name]
            for f in data[mode][:5]:
                run(f)  # warm-up
            lat, t0 = [], time.perf_counter()
            for f in data[mode]:
                t = time.perf_counter()
                run(f)
                lat.append((time.perf_counter() - t) * 1e3)
            single[name].append((lat, time.perf_counter() - t0))
            t0 = time.perf_counter()
            for f in data[f"{mode}_batches"]:
                run(f)
            batched[name].append(time.perf_counter() - t0)
    lengths = np.asarray(data["lengths"])
    buckets = [(1, 16), (17, 32), (33, 64), (65, 128), (129, 256)]
    out = {"backend": backends, "min_cosine_vs_framework_natural": cos, "single": {},
           "batch8": {}, "p50_by_length": {}}
    for name in CONFIGS:
        lat = [x for lat_r, _ in single[name] for x in lat_r]
        out["single"][name] = summarise(lat, sum(w for _, w in single[name]), len(lat))
        n_batched = len(data["natural_batches"]) * BATCH * args.rounds
        out["batch8"][name] = {"sentences_per_s": round(n_batched / sum(batched[name]), 2)}
        per = np.asarray(lat).reshape(args.rounds, -1).mean(0)
        out["p50_by_length"][name] = {
            f"{lo}-{hi}": round(float(np.median(per[(lengths >= lo) & (lengths <= hi)])), 3)
            for lo, hi in buckets if ((lengths >= lo) & (lengths <= hi)).any()}
    return out


# -- KServe REST ---------------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _drive(port: int, name: str, payloads: list[dict], concurrency: int) -> dict:
    """Every payload once, ``concurrency`` requests in flight; REST V2 with binary tensors."""
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=300))
    base = f"http://127.0.0.1:{port}"

    def request(feeds):
        tensors = []
        for k, v in feeds.items():
            inp = InferInput(k, list(v.shape), "INT64")
            inp.set_data_from_numpy(v, binary_data=True)
            tensors.append(inp)
        return InferRequest(name, tensors)

    for f in payloads[:5]:
        await client.infer(base, request(f), model_name=name)
    latencies: list[float] = []

    async def worker(w: int) -> None:
        for f in payloads[w::concurrency]:
            t0 = time.perf_counter()
            await client.infer(base, request(f), model_name=name)
            latencies.append((time.perf_counter() - t0) * 1e3)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall = time.perf_counter() - t0
    await client.close()
    return {"latencies": latencies, "wall_s": wall}


def through_kserve(work: Path, dirs: dict[str, Path], data: dict, args) -> dict:
    """The plain predictor (both modes: it takes any shape) and a boost predictor per mode."""
    from benchmarks.kserve_bench import _wait_ready as wait_ready

    env = dict(os.environ, YELLOWSTONE_CACHE_DIR=str(work / "cache"), PYTHONUNBUFFERED="1")
    env.pop("YELLOWSTONE_BACKEND", None)
    opts = boost_options(args)
    flags = ["--backends", opts["backends"], "--batch_sizes", ",".join(map(str, opts["batch_sizes"]))]
    if args.quick:
        flags += ["--time_budget_s", "0.05", "--validation_rounds", "1"]
    servers = {"plain": ([sys.executable, str(ROOT / "benchmarks" / "kserve_bench.py"),
                          "--serve-plain", "--model_dir", str(dirs["natural"])], None)}
    for mode in ("natural", "padded"):
        servers[f"boost-{mode}"] = ([sys.executable, "-m", "yellowstone.plugins.kserve",
                                     "--model_name", f"boost-{mode}", "--model_dir", str(dirs[mode]),
                                     "--enable_latency_logging", "false", *flags], mode)
    procs, ports = {}, {}
    try:
        for name, (cmd, _) in servers.items():
            ports[name] = _free_port()
            port_flags = ["--http_port", str(ports[name]), "--grpc_port", str(_free_port())]
            with open(work / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(cmd + port_flags, stdout=log,
                                               stderr=subprocess.STDOUT, env=env)
            wait_ready(ports[name], name, procs[name], timeout=900)  # one at a time
        backend = {mode: next((line.split("ready on ")[1].split()[0] for line in
                               (work / f"boost-{mode}.log").read_text().splitlines()
                               if "ready on " in line), "?") for mode in ("natural", "padded")}
        targets = {"framework natural": ("plain", "natural"),
                   "boost natural": ("boost-natural", "natural"),
                   f"framework pad{PAD}": ("plain", "padded"),
                   f"boost pad{PAD}": ("boost-padded", "padded")}
        rows = {}
        for c in args.concurrency:
            parts: dict[str, list] = {k: [] for k in targets}
            for r in range(args.rounds):
                for key in (CONFIGS if r % 2 == 0 else CONFIGS[::-1]):
                    server, mode = targets[key]
                    parts[key].append(asyncio.run(_drive(ports[server], server, data[mode], c)))
            rows[f"c{c}"] = {k: summarise([x for p in v for x in p["latencies"]],
                                          sum(p["wall_s"] for p in v),
                                          sum(len(p["latencies"]) for p in v))
                             for k, v in parts.items()}
        return {"backend": backend, "protocol": "REST V2, binary tensors", "rows": rows}
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)


# -- results -------------------------------------------------------------------------------------
def cpu() -> dict:
    """CPU model, vendor family/model, microarchitecture and ISA of this host."""
    from benchmarks.roofline import identify, read_cpuinfo
    from yellowstone.hardware import detect

    info, hw = read_cpuinfo(), detect()
    arch = identify(info)
    return {"cpu_model": info.model_name, "vendor": info.vendor, "family": info.family,
            "model": info.model, "microarchitecture": arch.name if arch else None,
            "isa": list(hw.isa), "cores": hw.cores}


def _backends(part: dict) -> str:
    return f"{part['backend']['natural']} natural, {part['backend']['padded']} pad{PAD}"


def markdown(res: dict) -> str:
    c, mix = res["cpu"], res["mix"]
    lines = [f"# MiniLM at natural sequence lengths vs padded to {PAD}", "",
             f"CPU: {c['cpu_model']} ({c['vendor']} family {c['family']} model {c['model']} = "
             f"{c['microarchitecture'] or 'unknown'}), {c['cores']} cores, ISA "
             f"{'/'.join(c['isa']) or 'baseline'}. {mix['sentences']} sentences (stdlib docstring "
             f"prose, Python {mix['python']}), tokens p50 {mix['tokens_p50']}, p90 "
             f"{mix['tokens_p90']}, max {mix['tokens_max']}; {mix['truncated_at_pad']} longer than "
             f"{PAD} are truncated in the padded mode. {res['rounds']} interleaved round(s)"
             f"{' (QUICK smoke run: timings mean nothing)' if res['quick'] else ''}.", "",
             f"## In-process (boost on {_backends(res['in_process'])})", "",
             "| config | p50 ms | p90 ms | req/s (1 per call) | sentences/s (batch 8) | "
             "min cosine vs framework |", "|---|---|---|---|---|---|"]
    ip = res["in_process"]
    for k in CONFIGS:
        s = ip["single"][k]
        lines.append(f"| {k} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['per_s']:.1f} | "
                     f"{ip['batch8'][k]['sentences_per_s']:.1f} | "
                     f"{ip['min_cosine_vs_framework_natural'][k]:.6f} |")
    buckets = list(ip["p50_by_length"][CONFIGS[0]])
    lines += ["", "p50 ms by natural token length (one sentence per call):", "",
              "| config | " + " | ".join(buckets) + " |", "|---|" + "---|" * len(buckets)]
    for k in CONFIGS:
        lines.append(f"| {k} | " + " | ".join(f"{ip['p50_by_length'][k][b]:.2f}"
                                              for b in buckets) + " |")
    if res.get("kserve"):
        ks = res["kserve"]
        lines += ["", f"## KServe, {ks['protocol']} (boost on {_backends(ks)}; framework: a plain "
                  "kserve.Model calling TorchScript)", "",
                  "| concurrency | config | p50 ms | p90 ms | req/s |", "|---|---|---|---|---|"]
        for c, row in ks["rows"].items():
            for k in CONFIGS:
                s = row[k]
                lines.append(f"| {c[1:]} | {k} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | "
                             f"{s['per_s']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {"in-process": res["in_process"]["single"]}
    for c, row in (res.get("kserve") or {}).get("rows", {}).items():
        groups[f"KServe {c}"] = row
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = np.arange(len(groups))
    for ax, key, title in zip(axes, ("p50_ms", "per_s"), ("p50 latency, ms", "requests/s")):
        for j, k in enumerate(CONFIGS):
            ax.bar(xs + (j - 1.5) * 0.2, [g[k][key] for g in groups.values()], 0.2, label=k)
        ax.set_xticks(xs, list(groups))
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"MiniLM, natural lengths vs padded to {PAD} ({res['cpu']['cpu_model']}"
                 f"{', QUICK' if res['quick'] else ''})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved passes over the mix")
    ap.add_argument("--concurrency", default="1,4", help="KServe client concurrency levels")
    ap.add_argument("--backends", default="onnxruntime,openvino")
    ap.add_argument("--skip-kserve", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: 40 sentences, one round")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.quick:
        args.sentences, args.rounds = min(args.sentences, 40), 1
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchmarks.zoo import minilm

    model, tok, _ = minilm(seq_len=16, batch=2)
    texts = sentences(args.sentences)
    data = tokenize(tok, texts)
    lengths = np.asarray(data["lengths"])
    work = Path(tempfile.mkdtemp(prefix="ys-varlen-"))
    os.environ["YELLOWSTONE_CACHE_DIR"] = str(work / "cache")
    dirs = write_models(work, tok, model)
    res = {"benchmark": "variable_length", "quick": args.quick, "rounds": args.rounds,
           "cpu": cpu(), "machine": {"platform": platform.platform(),
                                     "python": platform.python_version()},
           "mix": {"source": "stdlib docstring prose", "modules": list(MODULES),
                   "python": platform.python_version(), "sentences": len(texts),
                   "tokens_p50": int(np.median(lengths)),
                   "tokens_p90": int(np.percentile(lengths, 90)), "tokens_max": int(lengths.max()),
                   "truncated_at_pad": int((lengths > PAD).sum())},
           "in_process": in_process(dirs, data, args)}
    print(f"in-process: {json.dumps(res['in_process']['single'])}")
    if not args.skip_kserve:
        res["kserve"] = through_kserve(work, dirs, data, args)
    res["loadavg_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / "variable_length"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1))
    stem.with_suffix(".md").write_text(markdown(res))
    plot(res, stem.with_suffix(".png"))
    print(markdown(res))
    print(f"wrote {stem}.json/.md/.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
