"""Where one TF Serving request's time goes: TensorFlow's session vs the shim, stage by stage.

One process holds two ``Servable`` s of the same SavedModel behind one model manager, as one
drop-in server would: ``tensorflow`` (``shim_policy="off"``: the TF session, what TF Serving
runs) and ``boost`` (``shim_policy="always"`` with ``--backends``/``--precision``, the config
built from the server's own flags as ``python -m yellowstone.plugins.tfserving`` builds it).
Models and payloads are ``tfserving_bench``'s (``build_model``, ``example_feeds``). For one
request (gRPC: a ``PredictRequest`` built with ``tf.make_tensor_proto`` as the official client
does; REST: the ``{"instances": ...}`` JSON a REST client sends; both encoded once) each stage is
timed on its own, in the order the server runs them:

- decode: wire bytes -> request (``PredictRequest.FromString``; ``codec.parse_json``);
- conversion: request -> the signature's feeds (REST: ``codec.parse_predict_json``; both:
  ``Servable.input_values`` and ``check_dtypes``);
- model: ``Servable.run_tensorflow`` for tensorflow, ``Servable._run_shim`` for boost (the
  shim's fence and misfit check included);
- encode: outputs -> response bytes (``to_tensor_proto`` into a ``PredictResponse`` and its
  serialization; ``codec.predict_json`` and ``framing.json_bytes``);
- framework: the whole request through the plugin in process (gRPC: ``PredictionService.Predict``
  with the parse and the serialization; REST: ``rest.app.make_app`` over ``RestApi``) minus the
  four stages: routing, the servable lookup, the signature checks. No sockets, no HTTP framing.

Medians over ``--requests`` requests per stage, the two servables interleaved, warm-up excluded.
Once both servables are loaded the heap is settled (``yellowstone.serving.settle_heap``, as the
server's model manager does after every load): with TensorFlow's objects in the process a full
collection takes ~0.2 s, and resnet50's REST body (tens of thousands of lists) would set one off
every few requests in whichever stage happens to allocate.
The plugin's own cost is boost's time outside the model minus tensorflow's. Writes
``request_breakdown_tfserving_<model>[_<precision>].{json,md,png}`` (stacked bars) under
benchmarks/results/, with the host's CPU model, family and ISA.

    python benchmarks/request_breakdown_tfserving.py [--model resnet50|minilm|mlp]
        [--precision fp32|bf16|int8] [--batch 1] [--requests 50]
        [--backends openvino,onnxruntime] [--quick]

``--quick`` (the mlp, 10 requests, 3 warm-up) checks that it runs; its numbers are not results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from yellowstone.serving import settle_heap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.plots import stacked_bars, stage_table  # noqa: E402
from benchmarks.roofline import host_info  # noqa: E402
from benchmarks.tfserving_bench import (  # noqa: E402
    build_model,
    example_feeds,
    signature_inputs,
)

RESULTS = Path(__file__).parent / "results"
STAGES = ("decode", "conversion", "model", "encode", "framework")
WHO = ("tensorflow", "boost")
KEY = "serving_default"
LABELS = {"tensorflow/rest": "tensorflow, REST", "boost/rest": "boost, REST",
          "tensorflow/grpc": "tensorflow, gRPC", "boost/grpc": "boost, gRPC"}


def _ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


class _Manager:
    """The part of the model manager ``PredictionService`` and ``RestApi`` read: ``get``."""

    def __init__(self, servables: list[Any]):
        self.servables = {s.name: s for s in servables}

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Any:
        from yellowstone.plugins.tfserving.errors import ServingError

        servable = self.servables.get(name)
        if servable is None or (version is not None and version != servable.version) or label:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        return servable


class _Context:
    """The part of a gRPC ServicerContext the servicer reads: ``abort`` (which must raise)."""

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"gRPC {code}: {details}")


class Breakdown:
    """Both servables behind one manager, the plugin's servicer and REST app, the stage timings."""

    def __init__(self, work: Path, kind: str, backends: str, precision: str, batch: int):
        path = work / "models" / kind / "1"
        if not path.exists():
            print(f"building {kind} ...", flush=True)
            build_model(kind, path)
        self.inputs = signature_inputs(path)
        self.feeds = example_feeds(self.inputs, batch)
        self.servables = {
            "tensorflow": self._servable("tensorflow", path, work, ["--yellowstone_shim=off"]),
            "boost": self._servable("boost", path, work, [
                "--yellowstone_shim=always", f"--backends={backends}", f"--precision={precision}"]),
        }
        boost = self.servables["boost"]
        if KEY not in boost.shims:
            why = boost.shim_errors.get(KEY) or getattr(boost.choices.get(KEY), "reason", "no choice made")
            raise SystemExit(f"the shim did not take {KEY} ({backends}, {precision}): {why}")
        self.backend = boost.shims[KEY].backend
        assert self.backend == boost.choices[KEY].backend, (self.backend, boost.choices[KEY].backend)
        self.served_precision = self._served_precision(boost)
        from yellowstone.plugins.tfserving.grpc_api import PredictionService
        from yellowstone.plugins.tfserving.rest.app import make_app
        from yellowstone.plugins.tfserving.rest.routes import RestApi

        manager = _Manager(list(self.servables.values()))
        self.service = PredictionService(manager)
        self.app = make_app(RestApi(manager), {}, answer_options=False)
        self.grpc_wires = {who: self._grpc_wire(who) for who in WHO}
        self.rest_body = self._rest_body()
        self.max_abs_diff = self._max_abs_diff()

    @staticmethod
    def _servable(name: str, path: Path, work: Path, flags: list[str]) -> Any:
        """A Servable with the config and session config the drop-in server gives these flags."""
        from yellowstone.plugins.tfserving.flags import session_config
        from yellowstone.plugins.tfserving.servable import Servable
        from yellowstone.plugins.tfserving.server import build_parser, server_boost_config

        args = build_parser().parse_args(
            [f"--model_name={name}", f"--model_base_path={path.parent}", *flags])
        return Servable(name, 1, path, shim_policy=args.yellowstone_shim,
                        artifact_root=work / "artifacts", config=server_boost_config(args),
                        session_config=session_config(args))

    @staticmethod
    def _served_precision(servable: Any) -> str:
        from yellowstone.plugins.tfserving.artifacts import read_identity

        return read_identity(servable.shims[KEY].artifact_dir).get("boost_precision", "fp32")

    # -- the wire bytes of one request, as TF Serving's clients send them -------------------
    def _grpc_wire(self, who: str) -> bytes:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = who
        request.model_spec.signature_name = KEY
        for name, value in self.feeds.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        return request.SerializeToString()

    def _rest_body(self) -> bytes:
        names = sorted(self.feeds)
        if len(names) == 1:
            instances: list[Any] = self.feeds[names[0]].tolist()
        else:
            columns = {n: self.feeds[n].tolist() for n in names}
            instances = [{n: columns[n][i] for n in names} for i in range(len(columns[names[0]]))]
        return json.dumps({"instances": instances}).encode()

    def _max_abs_diff(self) -> float:
        """Boost's outputs against TensorFlow's for the payload (every output, the largest gap)."""
        outs = {who: s.predict(KEY, self.feeds) for who, s in self.servables.items()}
        return max(float(np.max(np.abs(np.asarray(outs["boost"][a], np.float64)
                                       - np.asarray(outs["tensorflow"][a], np.float64))))
                   for a in outs["tensorflow"])

    # -- the stages -----------------------------------------------------------------------
    def _model(self, who: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        servable = self.servables[who]
        if who == "tensorflow":
            return servable.run_tensorflow(KEY, feeds)
        out = servable._run_shim(KEY, feeds)
        if not isinstance(out, dict):
            raise RuntimeError(f"boost: the shim did not answer the request, TensorFlow would: {out!r}")
        return out

    def stages(self, who: str, transport: str) -> dict[str, float]:
        """decode, conversion, model and encode of one request, in ms."""
        from tensorflow_serving.apis import predict_pb2

        from yellowstone.plugins.tfserving import codec
        from yellowstone.plugins.tfserving.grpc_api import make_model_spec, to_tensor_proto
        from yellowstone.plugins.tfserving.rest.framing import json_bytes

        servable = self.servables[who]
        sig = servable.signature(KEY)
        aliases = sorted(sig.outputs)
        t: dict[str, float] = {}

        def convert(inputs: dict[str, Any]) -> dict[str, np.ndarray]:
            feeds = servable.input_values(sig, inputs)
            servable.check_dtypes(sig, feeds)
            return feeds

        if transport == "grpc":
            wire = self.grpc_wires[who]
            t["decode"], request = _ms(lambda: predict_pb2.PredictRequest.FromString(wire))
            t["conversion"], feeds = _ms(lambda: convert(dict(request.inputs)))
        else:
            body = self.rest_body
            t["decode"], doc = _ms(lambda: codec.parse_json(body))
            dtypes = {k: v.dtype for k, v in sig.inputs.items()}
            rows = True

            def convert_json() -> dict[str, np.ndarray]:
                nonlocal rows
                inputs, rows = codec.parse_predict_json(doc, dtypes, strict=codec.may_hold_booleans(body))
                return convert(inputs)

            t["conversion"], feeds = _ms(convert_json)
        t["model"], out = _ms(lambda: self._model(who, feeds))
        outputs = {a: out[a] for a in aliases}
        if transport == "grpc":
            def respond() -> bytes:
                resp = predict_pb2.PredictResponse()
                make_model_spec(resp.model_spec, who, KEY, servable.version)
                for name, arr in outputs.items():
                    to_tensor_proto(arr, resp.outputs[name], content=self.service.tensor_content)
                return resp.SerializeToString()

            t["encode"], _ = _ms(respond)
        else:
            t["encode"], _ = _ms(lambda: json_bytes(codec.predict_json(outputs, rows)))
        return t

    def end_to_end(self, who: str, transport: str) -> float:
        """One whole request through the plugin in process, in ms."""
        from tensorflow_serving.apis import predict_pb2

        if transport == "rest":
            body = self.rest_body
            t0 = time.perf_counter()
            status, _, answer = self.app("POST", f"/v1/models/{who}:predict", {}, body)
            ms = (time.perf_counter() - t0) * 1e3
            if status != 200:
                raise RuntimeError(f"{who} over REST: {status} {answer[:300]!r}")
            return ms
        wire = self.grpc_wires[who]
        t0 = time.perf_counter()
        response = self.service.Predict(predict_pb2.PredictRequest.FromString(wire), _Context())
        response.SerializeToString()
        return (time.perf_counter() - t0) * 1e3

    def run(self, requests: int, warmup: int) -> dict[str, dict[str, float]]:
        samples: dict[str, dict[str, list[float]]] = {}
        settle_heap()  # as the server's model manager does once versions have loaded
        for i in range(warmup + requests):
            for who in (WHO if i % 2 == 0 else WHO[::-1]):
                for proto in ("rest", "grpc"):
                    t = self.stages(who, proto)
                    t["total"] = self.end_to_end(who, proto)
                    if i >= warmup:
                        for stage, ms in t.items():
                            samples.setdefault(f"{who}/{proto}", {}).setdefault(stage, []).append(ms)
        result = {}
        for key in LABELS:
            med = {stage: statistics.median(v) for stage, v in samples[key].items()}
            med["framework"] = max(0.0, med["total"] - sum(med[s] for s in STAGES[:-1]))
            result[key] = med
        return result

    def close(self) -> None:
        for servable in self.servables.values():
            servable.close()


def overheads(rows: dict[str, dict[str, float]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Each row's time outside the model as % of its model time; the plugin's own cost per transport.

    The plugin's own cost is boost's (total - model) minus tensorflow's, in ms and as % of boost's
    model time.
    """
    outside = {k: 100.0 * (r["total"] - r["model"]) / r["model"] for k, r in rows.items()}
    cost = {}
    for proto in ("rest", "grpc"):
        b, tf = rows[f"boost/{proto}"], rows[f"tensorflow/{proto}"]
        ms = (b["total"] - b["model"]) - (tf["total"] - tf["model"])
        cost[proto] = {"ms": ms, "pct_of_boost_model": 100.0 * ms / b["model"]}
    return outside, cost


def _write(result: dict, stem: Path) -> None:
    rows, cost, outside = result["rows"], result["plugin_cost"], result["outside_model_pct"]
    served = result["boost_backend"] + ("" if result["boost_precision"] == result["precision"]
                                        else f", at {result['boost_precision']}")
    md = [f"# One TF Serving request, stage by stage ({result['model']}, {result['precision']}, "
          f"batch {result['batch']})", "",
          f"Host: {result['host']['line']}.", "",
          f"TensorFlow's session (`shim_policy=off`, what TF Serving runs) vs the shim (served on "
          f"**{served}**), one process, no sockets; medians of {result['requests']} requests, ms. "
          f"gRPC: `PredictRequest` from `tf.make_tensor_proto`; REST: `{{\"instances\": ...}}` JSON. "
          f"*framework* = the whole request through the plugin's `PredictionService` or REST app "
          f"minus the four stages. The loaded heap is settled (as the server does) before the first request. "
          f"Max abs diff boost vs tensorflow: {result['max_abs_diff']:.2e}."
          + (" **Quick mode: not a result.**" if result["quick"] else ""), "",
          *stage_table(rows, LABELS, STAGES, "servable, transport")]
    md += ["",
           f"REST / gRPC total: tensorflow "
           f"{rows['tensorflow/rest']['total'] / rows['tensorflow/grpc']['total']:.2f}, "
           f"boost {rows['boost/rest']['total'] / rows['boost/grpc']['total']:.2f}.", "",
           f"Boost share outside the model (total - model, % of model): REST {outside['boost/rest']:.1f}%, "
           f"gRPC {outside['boost/grpc']:.1f}% (tensorflow: REST {outside['tensorflow/rest']:.1f}%, "
           f"gRPC {outside['tensorflow/grpc']:.1f}%).", "",
           f"Plugin's own cost (boost's total - model, minus tensorflow's): "
           f"REST {cost['rest']['ms']:+.3f} ms "
           f"({cost['rest']['pct_of_boost_model']:+.1f}% of boost's model time), gRPC "
           f"{cost['grpc']['ms']:+.3f} ms ({cost['grpc']['pct_of_boost_model']:+.1f}%)."]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    stacked_bars(stem.with_suffix(".png"), rows, LABELS, STAGES,
                 f"One TF Serving request: {result['model']} {result['precision']} batch "
                 f"{result['batch']}, boost on {served}" + (" (quick)" if result["quick"] else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50", choices=("resnet50", "minilm", "mlp"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"))
    ap.add_argument("--backends", default="openvino,onnxruntime")
    ap.add_argument("--batch", type=int, default=1, help="rows per request")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workdir", default="", help="reuse models and the compile cache from an earlier run")
    ap.add_argument("--quick", action="store_true", help="the mlp, 10 requests, 3 warm-up: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.model, args.requests, args.warmup = "mlp", 10, 3
    import logging

    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for var in ("YELLOWSTONE_BACKEND", "YELLOWSTONE_BACKENDS", "YELLOWSTONE_PRECISION"):
        os.environ.pop(var, None)  # the flags say what boost runs, as tfserving_bench's servers
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tfserving-breakdown-"))
    os.environ.setdefault("YELLOWSTONE_CACHE_DIR", str(work / "cache"))
    host = host_info()
    bench = Breakdown(work, args.model, args.backends, args.precision, args.batch)
    try:
        rows = bench.run(args.requests, args.warmup)
    finally:
        bench.close()
    host["loadavg_at_end"] = os.getloadavg()
    outside, cost = overheads(rows)
    result = {"benchmark": "request_breakdown_tfserving", "model": args.model,
              "precision": args.precision, "batch": args.batch, "boost_backend": bench.backend,
              "boost_precision": bench.served_precision, "backends_tried": args.backends,
              "requests": args.requests, "warmup": args.warmup, "quick": args.quick,
              "inputs": [{"name": n, "shape": s, "dtype": d} for n, s, d in bench.inputs],
              "max_abs_diff": bench.max_abs_diff, "host": host, "rows": rows,
              "outside_model_pct": outside, "plugin_cost": cost}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (f"request_breakdown_tfserving_{args.model}"
                      + ("" if args.precision == "fp32" else f"_{args.precision}")
                      + ("_quick" if args.quick else ""))
    _write(result, stem)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print(host["line"])
    print(f"boost on {bench.backend} ({bench.served_precision}); max abs diff vs tensorflow "
          f"{bench.max_abs_diff:.2e}")
    for key, r in rows.items():
        print(f"{key:16s} " + "  ".join(f"{s} {r[s]:7.3f}" for s in (*STAGES, "total")))
    for proto, c in cost.items():
        print(f"plugin's own cost, {proto}: {c['ms']:+.3f} ms "
              f"({c['pct_of_boost_model']:+.1f}% of boost's model)")
    print(f"wrote {stem}.json/.md/.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
