"""The benchmark suite: every model, backend, precision and batch size, through ``yellowstone.boost``.

    .venv/bin/python benchmarks/core_bench.py [--models resnet50,mobilenet_v3,minilm,keras_cnn]
        [--precisions fp32,int8,bf16] [--batch-sizes 1,8] [--tvm] [--time-budget 2]
        [--peers inductor,openvino_torch,onnxruntime,tf_xla,...|none] [--h2h-rounds 8]
        [--roofline FILE] [--out benchmarks/results]

First the roofline (``roofline.py``, its own process): the CPU's theoretical roof per precision
(cores x measured clock x FLOP/cycle of its microarchitecture and ISA) beside one OpenVINO MatMul.
Then one boost per (model, precision), each in its own process, one after the other, so backends
never compete for the cores and one crash cannot take down the rest. ``--tvm`` adds a TVM run
per model at fp32, batch 1 (TVM is left out of ``auto``; this shows why). Then the peers
(``peers.py``: the tools a user would pick instead, each in its own process); where yellowstone's
choice, timed alone in a fresh process, is behind the best peer or less than 25% ahead, the two
are timed again head to head, in one process, in alternating blocks (``--h2h-rounds``;
:func:`settle`, :func:`head_to_head`), and the table gives that run's medians. Writes
``roofline.json``, ``core_bench.json`` (every report, the peers, FLOPs, the roofline, the machine,
wall time), ``core_bench.md`` (the README tables: speed, accuracy, share of each precision's own
roof, peers, yellowstone against the best peer) and ``core_bench_<model>.png`` (speedup over
native per backend, precision and batch size). Every file names the CPU model, family/model,
microarchitecture, ISA, measured clock and cores. MiniLM calibrates int8 on real sentences
(``zoo.calibration``); the others on yellowstone's synthetic set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _boost(name: str, precision: str, backends: str, sizes: str, budget: float, cache: str):
    """The suite's one ``yellowstone.boost`` call (model, example, boosted)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.peers import KERAS_MODELS

    if name not in KERAS_MODELS:
        import torchvision  # noqa: F401 - before TensorFlow, which crashes it when imported first
    import yellowstone
    from benchmarks.zoo import MODELS, TASKS, calibration

    model, example = MODELS[name]()
    boosted = yellowstone.boost(model, example, backends=backends, batch_sizes=sizes,
                                precision=precision, task=TASKS[name],
                                calibration_inputs=calibration(name) if precision == "int8" else (),
                                time_budget_s=budget, cache_dir=cache,
                                progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    return model, example, boosted


def one_run(name: str, precision: str, backends: str, sizes: str, budget: float, cache: str,
            out: Path) -> None:
    """Child process: boost one model at one precision with a fresh cache; write its report."""
    t0 = time.perf_counter()
    model, example, boosted = _boost(name, precision, backends, sizes, budget, cache)
    rep = boosted.report.to_dict()
    reduced = rep.pop("precision_fallback", None)
    if reduced:  # no candidate at this precision beat native: fp32 serves; show both
        rep = {**reduced, "fp32_fallback": {k: rep[k] for k in ("chosen", "candidates",
                                                                  "dispatch")}}
    rep["model"] = name
    rep["wall_s"] = round(time.perf_counter() - t0, 1)
    rep["gflop"] = model_gflop(model, example)
    out.write_text(json.dumps(rep, indent=1))


def isolated_run(name: str, precision: str, backends: str, sizes: str, budget: float, cache: str,
                 out: Path) -> None:
    """Child process: what a user gets, alone. The same ``boost`` call as :func:`one_run` finds
    its decision in ``cache`` and loads only what serves; the boosted model is then timed at each
    batch size exactly as the peers are (``peers.one_peer``: same inputs, same ``measure``), in a
    process that holds no other backend. This is the number set against the best peer."""
    from benchmarks.peers import batch_inputs
    from yellowstone.bench import measure

    _, example, boosted = _boost(name, precision, backends, sizes, budget, cache)
    timings = {}
    for b in (int(s) for s in sizes.split(",")):
        inputs = example if b == 1 else batch_inputs(example, b, seed=b)
        boosted(*inputs)
        timings[str(b)] = measure(lambda inputs=inputs: boosted(*inputs), budget_s=budget).to_dict()
    out.write_text(json.dumps({"latency_ms": timings, "cache": boosted.report.cache}, indent=1))


def head_to_head(name: str, precision: str, backends: str, sizes: str, budget: float,
                 cache: str, peer: str, rounds: int, out: Path) -> None:
    """Child process: yellowstone's boosted model and one peer, in turns, in this one process.

    The boosted model comes from ``cache`` (the suite's own run, loaded without compiling); the
    peer is built as ``peers.one_peer`` builds it. At each batch size the two take ``rounds``
    turns (ABBA order), each a block of ``measure`` (5 warm-up calls, then ``budget`` / 2
    seconds), so a slow spell of the host falls on both alike. Per round the ratio is the peer's
    p50 over yellowstone's in the adjacent blocks; the result gives each side's median p50 and
    the median and range of those paired ratios.
    """
    from benchmarks.peers import BUILDERS, batch_inputs
    from yellowstone.bench import measure

    model, example, boosted = _boost(name, precision, backends, sizes, budget, cache)
    result: dict = {"peer": peer, "rounds": rounds, "latency_ms": {}, "peer_latency_ms": {},
                    "ratio": {}, "ratio_range": {}}
    with tempfile.TemporaryDirectory() as tmp:
        peer_run = BUILDERS[peer](model, example, precision, Path(tmp))
        for b in (int(s) for s in sizes.split(",")):
            inputs = example if b == 1 else batch_inputs(example, b, seed=b)
            sides = {"yellowstone": lambda inputs=inputs: boosted(*inputs),
                     "peer": lambda inputs=inputs: peer_run(inputs)}
            for fn in sides.values():
                fn()  # the peer compiles this batch size
            p50s: dict[str, list[float]] = {k: [] for k in sides}
            for r in range(rounds):
                order = ("yellowstone", "peer") if r % 4 in (0, 3) else ("peer", "yellowstone")
                for side in order:
                    p50s[side].append(measure(sides[side], budget_s=budget / 2).p50_ms)
            ratios = [theirs / mine for theirs, mine in zip(p50s["peer"], p50s["yellowstone"])]
            result["latency_ms"][str(b)] = {"p50_ms": statistics.median(p50s["yellowstone"]),
                                            "rounds_p50_ms": p50s["yellowstone"]}
            result["peer_latency_ms"][str(b)] = {"p50_ms": statistics.median(p50s["peer"]),
                                                 "rounds_p50_ms": p50s["peer"]}
            result["ratio"][str(b)] = statistics.median(ratios)
            result["ratio_range"][str(b)] = [min(ratios), max(ratios)]
    out.write_text(json.dumps(result, indent=1))


def suite_child(name: str, precision: str, backends: str, sizes: str, budget: float, cache: str,
                out: Path, *, isolated: bool = False,
                against: tuple[str, int] | None = None) -> dict | None:
    """Run :func:`one_run` (:func:`isolated_run`; :func:`head_to_head` with ``against`` = (peer,
    rounds)) in a child process; its JSON, or None."""
    mode = "-alone" if isolated else f"-vs-{against[0]}" if against else ""
    tmp = out / f".{name}-{precision}{mode}.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, __file__, "--child", name, precision, backends, cache,
                           "--batch-sizes", sizes, "--time-budget", str(budget),
                           "--child-out", str(tmp)] + (["--isolated"] if isolated else [])
                          + (["--head-to-head", against[0], "--h2h-rounds", str(against[1])]
                             if against else []), env=env)
    if proc.returncode != 0 or not tmp.exists():
        print(f"{name} {precision}: benchmark process failed (exit {proc.returncode})",
              file=sys.stderr)
        return None
    data = json.loads(tmp.read_text())
    tmp.unlink()
    return data


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


# Rows left out of the tables: not installed here, not a candidate for the model, or a precision
# the backend never offers (the table's header says which backends take which precision).
_NOT_APPLICABLE = ("not installed", "left out of auto", "compiles torch models only",
                   "serves fp32 only", "serves fp32 and int8")


def _cell(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def run_roofline(out: Path, reuse: str | None) -> dict:
    """The roofline: read from ``reuse``, else measured by roofline.py in its own process."""
    path = out / "roofline.json"
    if reuse:
        data = json.loads(Path(reuse).read_text())
    else:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "roofline.py"), "--out",
                        str(path)], env=env, check=True)
        data = json.loads(path.read_text())
    if reuse:
        path.write_text(json.dumps(data, indent=1))
    return data


def roof_gflops(roofline: dict | None, precision: str) -> float | None:
    """The theoretical roof of ``precision`` (GFLOP/s; int8: GOP/s), None when unknown."""
    if not roofline:
        return None
    return roofline.get("precisions", {}).get(precision, {}).get("theoretical_gflops")


def row_roof(gflop: float | None, latency: dict[int, float], sizes: list[int],
             roofline: dict | None, precision: str, label: str,
             violations: list[str]) -> tuple[list[str], list[str]]:
    """GFLOP/s and % of ``precision``'s own roof per batch size; appends any roof violation."""
    from benchmarks.roofline import roof_cell, roof_violation, share_of_roof

    rates, shares = [], []
    for b in sizes:
        rate = gflop * b / (latency[b] / 1e3) if gflop and latency.get(b) else None
        share = share_of_roof(rate, roof_gflops(roofline, precision))
        msg = roof_violation(share, f"{label} at batch {b}")
        if msg:
            violations.append(msg)
        rates.append(_cell(rate, ".0f"))
        shares.append(roof_cell(share))
    return rates, shares


def _latency(c: dict) -> dict[int, float]:
    return {int(k): v["p50_ms"] for k, v in c.get("latency_ms", {}).items()}


def _p50s(row: dict) -> dict[int, float]:
    """p50 per batch size of one measured row (a peer, or yellowstone alone)."""
    return _latency(row)


CLOSE = 1.25  # a row behind the best peer, or ahead by less than this, is settled head to head


def settle(reports: list[dict], peers: list[dict],
           head_to_head: Callable[[dict, dict], dict | None], log: Callable[[str], None]) -> None:
    """Time yellowstone's choice against the best peer in turns, in one process, where close.

    One fresh process each is a single draw of this host's spread (10% typically; in a slow
    spell one process runs 1.6x slower than the next, for seconds at a time). Where yellowstone,
    timed alone, is behind the best peer at some batch size or ahead by less than ``CLOSE``,
    ``head_to_head(rep, peer_row)`` runs both in one process, in alternating blocks
    (:func:`head_to_head`); its result is kept as ``rep["head_to_head"][peer]`` and the
    "against the best peer" table takes that row's times and paired ratio from it.
    """
    for rep in reports:
        alone = rep.get("isolated")
        if rep.get("run_backends", "auto") != "auto" or not alone:
            continue
        close = set()
        for b, t in _p50s(alone).items():
            best = best_peers(peers, rep["model"], rep["precision"], b)
            if best and best[1] / t < CLOSE:
                close.add(best[0])
        for peer_name in sorted(close):
            row = next(r for r in peers if r["model"] == rep["model"] and r["peer"] == peer_name
                       and r["precision"] == rep["precision"])
            log(f"== head to head {rep['model']} {rep['precision']}: yellowstone vs {peer_name}")
            got = head_to_head(rep, row)
            if got is not None:
                rep.setdefault("head_to_head", {})[peer_name] = got


def roof_header(roofline: dict | None) -> str:
    """The sentence that says what "% of roof" is measured against."""
    if not roofline or not roofline.get("precisions"):
        return "No roofline in this file: the % of roof columns are empty."
    parts = []
    for prec, row in roofline["precisions"].items():
        theo, meas = row.get("theoretical_gflops"), row.get("measured_gflops")
        share = row.get("measured_share")
        parts.append(f"{prec} {_cell(theo, '.0f')} ({row.get('flop_per_cycle')} FLOP/cycle/core, "
                     f"{row.get('isa')}; OpenVINO MatMul {_cell(meas, '.0f')}"
                     f"{'' if share is None else f' = {100 * share:.0f}%'})")
    return (f"Roofline: GFLOP/s (int8: GOP/s) = model FLOPs x batch / p50, as a share of the "
            f"theoretical roof of the row's own precision, {roofline.get('cores')} cores x "
            f"{roofline.get('clock_ghz')} GHz (measured) x FLOP/cycle: " + "; ".join(parts)
            + ". See benchmarks/ROOFLINE.md.")


def markdown(reports: list[dict], machine: str, roofline: dict | None, wall_s: float,
             peers: list[dict] | None = None, auto_table: bool = True) -> str:
    """The README tables: one row per model, precision and backend that ran; then the peers."""
    sizes = reports[0]["batch_sizes"] if reports else [1]
    violations: list[str] = list((roofline or {}).get("violations", []))  # the MatMul's own
    lines = [f"Machine: {machine}. Suite wall time {wall_s / 60:.1f} min. p50 over a time budget "
             "per backend and batch size after 5 warm-up runs; speedup = native fp32 p50 / "
             "backend p50, measured in the same process. Accuracy against the framework's fp32 "
             "output on fresh random inputs (reduced precision also on 64 more samples): max abs "
             "error, top-1 agreement (classifiers), mean cosine similarity. "
             + roof_header(roofline) + " `auto/best`: p50 of what serves each batch size (the "
             "chosen backend, or the one per-batch dispatch gives that size) over the fastest "
             "valid one's, per batch size. int8 runs on onnxruntime and openvino; bf16 on openvino, "
             "inductor (autocast) and TensorRT where the CPU has it; TVM serves fp32.", ""]
    head = (["model", "precision", "backend", "status", "max abs err", "top-1", "cosine"]
            + [f"p50 ms b{b}" for b in sizes] + [f"speedup b{b}" for b in sizes]
            + [f"GFLOP/s b{b}" for b in sizes] + [f"% of roof b{b}" for b in sizes])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rep in reports:
        native = next(c for c in rep["candidates"] if c["backend"] == "native")
        nat = _latency(native)
        for c in rep["candidates"]:
            if c["backend"] == "native" and rep["precision"] != "fp32":
                continue  # the fp32 reference: its row is in the fp32 run
            if c["status"] == "unavailable" and any(
                    why in c["reason"] for why in _NOT_APPLICABLE):
                continue  # not installed here, or not a candidate for this model at all
            lat = _latency(c)
            status = f"**{c['status']}**" if c["status"] == "chosen" else c["status"]
            if c["status"] in ("failed", "rejected", "unavailable"):
                status += f" ({c['reason'][:90]})"
            prec = "fp32" if c["backend"] == "native" else rep["precision"]
            rates, shares = row_roof(rep.get("gflop"), lat, sizes, roofline, prec,
                                     f"{rep['model']} {prec} {c['backend']}", violations)
            row = [rep["model"], rep["precision"], c["backend"], status,
                   _cell(c.get("max_abs_err"), ".1e"), _cell(c.get("top1_agreement"), ".3f"),
                   _cell(c.get("mean_cosine"), ".4f")]
            row += [_cell(lat.get(b), ".2f") for b in sizes]
            row += [f"{nat[b] / lat[b]:.2f}x" if lat.get(b) and nat.get(b) else "-" for b in sizes]
            lines.append("| " + " | ".join(row + rates + shares) + " |")
    if auto_table:
        lines += auto_vs_best(reports, sizes)
    if peers:
        lines += peer_tables(reports, peers, sizes, roofline, violations)
    if violations:
        lines += ["", "**ROOFLINE VIOLATIONS** (a rate above its theoretical roof: the "
                  "derivation or the FLOP count is wrong, not the measurement):", ""]
        lines += [f"- {v}" for v in dict.fromkeys(violations)]
        for v in dict.fromkeys(violations):
            print(f"!!! {v}", file=sys.stderr)
    return "\n".join(lines) + "\n"


def served_at(rep: dict, b: int) -> dict | None:
    """The candidate serving batch size ``b``: the one ``dispatch`` names (per-batch dispatch),
    else the chosen one; the fp32 search's when a reduced precision fell back to it."""
    rep = rep.get("fp32_fallback") or rep
    chosen = next((c for c in rep["candidates"] if c["status"] == "chosen"), None)
    name = (rep.get("dispatch") or {}).get(str(b))
    if name is None or chosen is None or name == chosen["backend"]:
        return chosen
    return next((c for c in rep["candidates"] if c["backend"] == name), chosen)


def serves_label(rep: dict, sizes: list[int]) -> str:
    """What serves: the chosen backend, with the sizes another backend serves in brackets."""
    fallback = " (fp32: no candidate beat native)" if rep.get("fp32_fallback") else ""
    rep = rep.get("fp32_fallback") or rep
    chosen = next(c for c in rep["candidates"] if c["status"] == "chosen")
    others = [f"b{b}: {served_at(rep, b)['backend']}" for b in sizes
              if served_at(rep, b)["backend"] != chosen["backend"]]
    return chosen["backend"] + (f" ({', '.join(others)})" if others else "") + fallback


def auto_vs_best(reports: list[dict], sizes: list[int]) -> list[str]:
    """What auto serves at each batch size (per-batch dispatch included) over the fastest valid
    backend's p50, per model, precision and batch."""
    lines = ["", "Auto choice against the best single backend (same run):", "",
             "| model | precision | serves | " + " | ".join(f"auto/best b{b}" for b in sizes) + " |",
             "|---|---|---|" + "---|" * len(sizes)]
    for rep in reports:
        valid = [c for c in rep["candidates"] if c["status"] in ("chosen", "ok")
                 and (c["backend"] != "native" or rep["precision"] == "fp32" or
                      all(x["status"] not in ("chosen", "ok") for x in rep["candidates"]
                          if x["backend"] != "native"))]
        valid += [c for c in (rep.get("fp32_fallback") or {}).get("candidates", [])
                  if c["status"] in ("chosen", "ok")]
        chosen = next((c for c in rep["candidates"] if c["status"] == "chosen"), None)
        if chosen is None:
            continue
        cells = []
        for b in sizes:
            best = min((c["latency_ms"][str(b)]["p50_ms"] for c in valid
                        if str(b) in c.get("latency_ms", {})), default=None)
            mine = served_at(rep, b).get("latency_ms", {}).get(str(b), {}).get("p50_ms")
            cells.append(f"{mine / best:.2f}" if mine and best else "-")
        lines.append(f"| {rep['model']} | {rep['precision']} | {serves_label(rep, sizes)} | "
                     + " | ".join(cells) + " |")
    return lines


def best_peers(peers: list[dict], model: str, precision: str, b: int) -> tuple[str, float] | None:
    """The fastest valid peer (name, p50 ms) of ``model`` at ``precision`` and batch ``b``."""
    times = [(r["peer"], _p50s(r)[b]) for r in peers
             if r["model"] == model and r["precision"] == precision and r["status"] == "ok"
             and str(b) in r.get("latency_ms", {})]
    return min(times, key=lambda t: t[1]) if times else None


def faster_rejected(peers: list[dict], model: str, precision: str, b: int,
                    best: tuple[str, float] | None) -> tuple[str, float] | None:
    """The fastest peer that failed yellowstone's check, where it beats the best valid one."""
    times = [(r["peer"], _p50s(r)[b]) for r in peers
             if r["model"] == model and r["precision"] == precision
             and r["status"] == "rejected" and str(b) in r.get("latency_ms", {})]
    fast = min(times, key=lambda t: t[1]) if times else None
    return fast if fast and (best is None or fast[1] < best[1]) else None


def peer_tables(reports: list[dict], peers: list[dict], sizes: list[int],
                roofline: dict | None, violations: list[str]) -> list[str]:
    """The peers' rows, then yellowstone's chosen backend against the fastest peer."""
    gflop = {r["model"]: r.get("gflop") for r in reports}
    setups = dict.fromkeys(f"`{r['peer']}`: {r['setup']}" for r in peers)
    lines = ["", "Peers: what a user would pick instead, set up as their docs advise, each in its "
             "own process, timed like the suite, then held to the check yellowstone's own "
             "candidates must pass (the same tolerances, fresh random inputs and, under reduced "
             "precision, the same 64 extra samples; accuracy against eager fp32): max abs error, "
             "top-1 agreement (classifiers), mean and worst row's cosine. A peer that fails it "
             "is `rejected`: its times are shown, but it is not a best peer. "
             + "; ".join(setups) + ".", ""]
    head = (["model", "precision", "peer", "status", "max abs err", "top-1", "mean cosine",
             "cosine (worst row)"]
            + [f"p50 ms b{b}" for b in sizes] + [f"GFLOP/s b{b}" for b in sizes]
            + [f"% of roof b{b}" for b in sizes])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in peers:
        lat = _p50s(r)
        status = r["status"] if r["status"] == "ok" else f"{r['status']} ({r['reason'][:120]})"
        rates, shares = row_roof(gflop.get(r["model"]), lat, sizes, roofline, r["precision"],
                                 f"peer {r['peer']} {r['model']} {r['precision']}", violations)
        row = [r["model"], r["precision"], r["peer"], status, _cell(r.get("max_abs_err"), ".1e"),
               _cell(r.get("top1_agreement"), ".3f"), _cell(r.get("mean_cosine"), ".4f"),
               _cell(r.get("min_cosine"), ".4f")] + [_cell(lat.get(b), ".2f") for b in sizes]
        lines.append("| " + " | ".join(row + rates + shares) + " |")
    lines += ["", "Yellowstone against the best peer (the fastest peer that passes the check; "
              "a faster one that failed it is named in brackets), as best peer p50 / "
              "yellowstone p50: above 1 yellowstone is faster. Yellowstone's p50 is the boosted "
              "model as a user calls it (`boosted(*inputs)`, loaded from the run's cache), "
              "first timed alone in a fresh process, as each peer is (`*`: that run failed and "
              "the in-suite time stands in). Where that put yellowstone behind or less than "
              f"{round((CLOSE - 1) * 100)}% ahead, the two were timed again head to head: in one "
              "process, in alternating blocks (`in turns xN`: N rounds each), so the host's slow "
              "spells, which last seconds and move one process 1.6x, fall on both; the row then "
              "gives each side's median and the median of the paired per-round ratios, with "
              "their range. No peer here offers int8 without a quantisation step of its own, "
              "so int8 rows have none.", "",
              "| model | precision | yellowstone serves | timed | "
              + " | ".join(f"yellowstone b{b} | best peer b{b} | yellowstone vs best peer b{b}"
                           for b in sizes) + " |",
              "|---|---|---|---|" + "---|---|---|" * len(sizes)]
    for rep in reports:
        if rep.get("run_backends", "auto") != "auto":
            continue
        chosen = next((c for c in rep["candidates"] if c["status"] == "chosen"), None)
        if chosen is None:
            continue
        serves = serves_label(rep, sizes)
        if serves == "native" and rep["precision"] != "fp32":
            serves += " (fp32 fallback)"
        lines.append(f"| {rep['model']} | {rep['precision']} | {serves} | "
                     + " | ".join(against_best_cells(rep, peers, sizes)) + " |")
    return lines


def against_best_cells(rep: dict, peers: list[dict], sizes: list[int]) -> list[str]:
    """The "timed" cell, then per batch size: yellowstone, the best peer, their ratio."""
    alone = _p50s(rep["isolated"]) if rep.get("isolated") else {}
    h2h = rep.get("head_to_head") or {}
    cells = []
    for b in sizes:
        mine, mark = alone.get(b), ""
        if mine is None:
            mine, mark = _latency(served_at(rep, b)).get(b), "*"
        best = best_peers(peers, rep["model"], rep["precision"], b)
        fast = faster_rejected(peers, rep["model"], rep["precision"], b, best)
        rejected = f" ({fast[0]} {fast[1]:.2f} ms rejected)" if fast else ""
        pair = h2h.get(best[0]) if best else None
        if pair and str(b) in pair["ratio"]:
            lo, hi = pair["ratio_range"][str(b)]
            cells += [f"{pair['latency_ms'][str(b)]['p50_ms']:.2f} ms",
                      f"{best[0]} {pair['peer_latency_ms'][str(b)]['p50_ms']:.2f} ms{rejected}",
                      f"{pair['ratio'][str(b)]:.2f}x ({lo:.2f}-{hi:.2f})"]
            continue
        cells += [f"{_cell(mine, '.2f')} ms{mark}",
                  ("-" if best is None else f"{best[0]} {best[1]:.2f} ms") + rejected,
                  f"{best[1] / mine:.2f}x" if best and mine else "-"]
    rounds = sorted({f"in turns x{v['rounds']}" for v in h2h.values()})
    return [", ".join(rounds) if rounds else "alone"] + cells


def plot_model(name: str, reports: list[dict], out: Path, machine: str = "") -> None:
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
    if machine:  # every results file names the machine it was measured on
        fig.text(0.01, 0.005, machine, fontsize=6, color="grey", ha="left", va="bottom")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def render(out: Path) -> str:
    """Write core_bench.md and the per-model plots from core_bench.json; return the tables."""
    data = json.loads((out / "core_bench.json").read_text())
    reports, machine, wall = data["reports"], data["machine"], data["wall_s"]
    roofline, peers = data.get("roofline"), data.get("peers") or []
    if roofline is None and "peak_gflops" in data:  # a file from before the roofline
        print("core_bench.json has only the old torch GEMM 'peak': % of roof left empty",
              file=sys.stderr)
    for name in dict.fromkeys(r["model"] for r in reports):
        plot_model(name, [r for r in reports if r["model"] == name and r["run_backends"] != "tvm"],
                   out / f"core_bench_{name}.png", machine)
    table = markdown([r for r in reports if r["run_backends"] != "tvm"], machine, roofline, wall,
                     peers=peers)
    tvm_reports = [r for r in reports if r["run_backends"] == "tvm"]
    if tvm_reports:
        table += "\nTVM (untuned, fp32, batch 1; not in `auto`):\n\n" + "\n".join(
            markdown(tvm_reports, machine, roofline, wall, auto_table=False).split("\n")[2:])
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
    p.add_argument("--peers", default="all",
                   help="comma-separated peers from peers.PEERS, 'all', or 'none'")
    p.add_argument("--h2h-rounds", type=int, default=8,
                   help="rounds of the head-to-head run (yellowstone and the best peer in turns, "
                        "in one process) where yellowstone is behind or less than 25%% ahead "
                        "(0: none)")
    p.add_argument("--head-to-head", default=None, help=argparse.SUPPRESS)
    p.add_argument("--roofline", default=None,
                   help="reuse this roofline.json instead of measuring the roofline again")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--isolated", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--render", action="store_true",
                   help="only redraw the tables and plots from the saved core_bench.json")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.render:
        render(Path(args.out))
        return 0
    if args.child:
        name, precision, backends, cache = args.child
        if args.head_to_head:
            head_to_head(name, precision, backends, args.batch_sizes, args.time_budget, cache,
                         args.head_to_head, args.h2h_rounds, Path(args.child_out))
            return 0
        step = isolated_run if args.isolated else one_run
        step(name, precision, backends, args.batch_sizes, args.time_budget, cache,
             Path(args.child_out))
        return 0
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from benchmarks.peers import KERAS_MODELS, PEERS, run_peers
    from benchmarks.roofline import machine_line, table

    def log(msg: str) -> None:
        print(f"{msg} ({(time.perf_counter() - started) / 60:.1f} min)", file=sys.stderr,
              flush=True)

    log("== roofline")
    roofline = run_roofline(out, args.roofline)
    print(table(roofline), file=sys.stderr, flush=True)
    machine = f"{machine_line(roofline)}, Python {platform.python_version()}"
    models = args.models.split(",")
    runs = [(m, prec, args.backends, args.batch_sizes) for m in models
            for prec in args.precisions.split(",")]
    if args.tvm:
        runs += [(m, "fp32", "tvm", "1") for m in models if m not in KERAS_MODELS]
    reports = []
    caches: dict[tuple[str, str], tempfile.TemporaryDirectory[str]] = {}  # kept for head-to-head runs
    try:
        for name, precision, backends, sizes in runs:
            log(f"== {name} {precision} [{backends}] batch {sizes}")
            cache = tempfile.TemporaryDirectory()
            rep = suite_child(name, precision, backends, sizes, args.time_budget, cache.name, out)
            if rep is not None and backends == "auto":
                caches[(name, precision)] = cache
                log(f"== {name} {precision}: what serves, alone in a fresh process")
                alone = suite_child(name, precision, backends, sizes, args.time_budget,
                                    cache.name, out, isolated=True)
                rep["isolated"] = alone
            else:
                cache.cleanup()
            if rep is not None:
                rep["run_backends"] = backends
                reports.append(rep)
        peers: list[dict] = []
        if args.peers != "none":
            chosen = list(PEERS) if args.peers == "all" else args.peers.split(",")
            peers = run_peers(models, [p for p in args.precisions.split(",") if p != "int8"],
                              args.batch_sizes, args.time_budget, chosen, log=log)

            def pair(rep: dict, row: dict) -> dict | None:
                return suite_child(rep["model"], rep["precision"], "auto", args.batch_sizes,
                                   args.time_budget, caches[(rep["model"], rep["precision"])].name,
                                   out, against=(row["peer"], args.h2h_rounds))

            if args.h2h_rounds > 0:
                settle(reports, peers, pair, log)
    finally:
        for cache in caches.values():
            cache.cleanup()
    wall = time.perf_counter() - started
    (out / "core_bench.json").write_text(json.dumps(
        {"machine": machine, "cpu": {k: roofline.get(k) for k in (
            "cpu_model", "vendor", "family", "model", "microarchitecture", "isa", "cores",
            "logical_cpus", "threads_per_core", "clock_ghz")},
         "roofline": roofline, "wall_s": round(wall, 1), "loadavg_at_end": os.getloadavg(),
         "reports": reports, "peers": peers}, indent=1))
    table_md = render(out)
    print(table_md)
    if "ROOFLINE VIOLATIONS" in table_md:  # written, but not to be published as it stands
        print("core_bench: a rate exceeds its theoretical roof (see ROOFLINE VIOLATIONS); "
              "fix the derivation before quoting these tables", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
