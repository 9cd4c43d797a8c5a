"""Where one KServe request's time goes: the plain ``kserve.Model`` vs the yellowstone predictor.

One process holds both predictors over one DataPlane, as one ModelServer would: the plain one
(``kserve_bench.plain_model``: TorchScript called with torch) and ``BoostModel`` (built from
the same flags as ``python -m yellowstone.plugins.kserve``). For one request (KServe's own
client's bytes: REST V2 with binary tensors, gRPC V2 with raw contents) each stage is timed on
its own, in the order the server runs them:

- decode: wire bytes -> ``InferRequest`` (REST: KServe's ``InferRequest.from_bytes`` for the
  plain predictor, ``v2rest.decode_request`` for the boost one; gRPC: protobuf parse and
  ``InferRequest.from_grpc`` for both);
- conversion: ``InferRequest`` -> the model's inputs (``as_numpy`` + ``torch.from_numpy``;
  ``codec.decode_v2``);
- model: the forward pass (torch; ``boosted.run``);
- encode: outputs -> response bytes (``InferResponse``, ``DataPlane.encode``/``to_rest`` and the
  JSON rendering; ``to_grpc`` and protobuf serialization);
- framework: the whole request through the server in process (REST: KServe's FastAPI app over
  an in-process ASGI transport; gRPC: KServe's servicer) minus the four stages: routing,
  middleware, readiness checks, the executor hop. No network.

Medians over ``--requests`` requests per stage, the two predictors interleaved. Writes
``request_breakdown_kserve_<model>.{json,md,png}`` (stacked bars) under benchmarks/results/.

    python benchmarks/request_breakdown_kserve.py [--model resnet50|mobilenet|mlp|...]
        [--requests 50] [--backends onnxruntime,openvino] [--quick]

``--quick`` (10 requests, 3 warm-up) checks that it runs; its numbers are not results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kserve_bench import _requests, _write_model, plain_model  # noqa: E402
from benchmarks.plots import stacked_bars, stage_table  # noqa: E402
from benchmarks.roofline import host_info  # noqa: E402

RESULTS = Path(__file__).parent / "results"
STAGES = ("decode", "conversion", "model", "encode", "framework")
HEADER = "inference-header-content-length"


def _ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


class Breakdown:
    """Both predictors in one DataPlane, their apps, and the timing of each stage."""

    def __init__(self, work: Path, kind: str, backends: str, precision: str):
        self.inputs = _write_model(kind, work / "models", precision)
        self.payloads = _requests(kind, self.inputs)
        self.plain = plain_model(str(work / "models"), "plain")
        self.boost = self._boost_model(work / "models", kind, backends, precision)
        self.backend = self.boost.backend
        from kserve.model_repository import ModelRepository
        from kserve.protocol.dataplane import DataPlane
        from kserve.protocol.grpc.servicer import InferenceServicer
        from kserve.protocol.model_repository_extension import ModelRepositoryExtension

        registry = ModelRepository()
        registry.update(self.plain)
        registry.update(self.boost)
        self.dataplane = DataPlane(model_registry=registry)
        extension = ModelRepositoryExtension(model_registry=registry)
        self.app = self._app(extension)
        self.servicer = InferenceServicer(self.dataplane, extension)

    def _boost_model(self, model_dir: Path, kind: str, backends: str, precision: str) -> Any:
        from yellowstone.plugins.kserve.__main__ import boost_options, build_parser
        from yellowstone.plugins.kserve.model import BoostModel
        from yellowstone.serving import parse_specs

        argv = ["--model_name", "boost", "--model_dir", str(model_dir), "--backends", backends,
                "--precision", precision]
        if kind != "minilm":  # minilm's inputs are in its yellowstone.yaml
            argv += [f"--input={n}:{'x'.join(map(str, s))}:{d.lower().replace('fp', 'float')}"
                     for n, s, d in self.inputs]
        args = build_parser().parse_args(argv)
        model = BoostModel("boost", model_dir, options=boost_options(args),
                           inputs=parse_specs(args.inputs, where="--input"))
        model.load()
        return model

    def _app(self, extension: Any) -> Any:
        """KServe's FastAPI app as ``RESTServer.create_application`` builds it, plus ours."""
        from fastapi import FastAPI
        from fastapi.responses import ORJSONResponse
        from kserve.protocol.rest.server import RESTServer

        from yellowstone.plugins.kserve import errors, routes

        app = FastAPI(default_response_class=ORJSONResponse)
        errors.install(app)
        routes.install(app)
        server = RESTServer("kserve.model_server:app", self.dataplane, extension, http_port=0)
        server._add_middlewares(app)
        server._register_endpoints(app)
        server._add_exception_handlers(app)
        return app

    # -- the wire bytes of one request, as KServe's clients send them ------------------------
    def _request(self, name: str, i: int) -> Any:
        from kserve import InferInput, InferRequest

        tensors = []
        for (input_name, shape, dtype), x in zip(self.inputs, self.payloads[i % len(self.payloads)]):
            inp = InferInput(input_name, shape, dtype)
            inp.set_data_from_numpy(x)
            tensors.append(inp)
        return InferRequest(name, tensors, request_id=f"req-{i}")

    def rest_wire(self, name: str, i: int) -> tuple[bytes, dict[str, str]]:
        body, json_length = self._request(name, i).to_rest()
        return body, {HEADER: str(json_length), "content-type": "application/octet-stream"}

    def grpc_wire(self, name: str, i: int) -> bytes:
        return self._request(name, i).to_grpc().SerializeToString()

    # -- the stages -----------------------------------------------------------------------
    def _rest_render(self, name: str, response: Any, headers: dict[str, str]) -> bytes:
        """``DataPlane.encode`` and ``V2Endpoints.infer``'s rendering of the response."""
        import orjson
        from fastapi.encoders import jsonable_encoder
        from kserve.protocol.rest.v2_datamodels import InferenceResponse

        body, _ = self.dataplane.encode(model_name=name, response=response, headers=headers,
                                        req_attributes={})
        if isinstance(body, bytes):
            return body
        return orjson.dumps(jsonable_encoder(InferenceResponse.model_validate(body)))

    def stages(self, who: str, transport: str, i: int) -> dict[str, float]:
        """decode, conversion, model and encode of request ``i``, in ms."""
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.protocol.infer_type import InferRequest

        from yellowstone.plugins.kserve import codec, v2rest

        t: dict[str, float] = {}
        if transport == "rest":
            body, headers = self.rest_wire(who, i)
            decode = (lambda: InferRequest.from_bytes(body, int(headers[HEADER]), who)) \
                if who == "plain" else (lambda: v2rest.decode_request(body, headers, who))
        else:
            wire, headers = self.grpc_wire(who, i), {}
            decode = lambda: InferRequest.from_grpc(pb.ModelInferRequest.FromString(wire))  # noqa: E731
        t["decode"], request = _ms(decode)
        if who == "plain":
            model = self.plain
            t["conversion"], xs = _ms(lambda: model.to_tensors(request))
            t["model"], y = _ms(lambda: model.run(xs))
            respond = lambda: model.to_response(request, y)  # noqa: E731
        else:
            boosted = self.boost.boosted
            t["conversion"], feeds = _ms(lambda: codec.decode_v2(request, boosted.inputs))
            t["model"], outs = _ms(lambda: boosted.run(feeds))
            respond = lambda: codec.encode_v2(  # noqa: E731
                request, who, outs, boosted.output_names,
                parameters={"yellowstone_backend": boosted.backend})
        if transport == "rest":
            t["encode"], _ = _ms(lambda: self._rest_render(who, respond(), headers))
        else:
            t["encode"], _ = _ms(lambda: respond().to_grpc().SerializeToString())
        return t

    async def end_to_end(self, who: str, transport: str, i: int, client: Any) -> float:
        """One whole request through the server in process, in ms."""
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

        if transport == "rest":
            body, headers = self.rest_wire(who, i)
            t0 = time.perf_counter()
            resp = await client.post(f"/v2/models/{who}/infer", content=body, headers=headers)
            ms = (time.perf_counter() - t0) * 1e3
            if resp.status_code != 200:
                raise RuntimeError(f"{who} over REST: {resp.status_code} {resp.text[:300]}")
            return ms
        wire = self.grpc_wire(who, i)
        t0 = time.perf_counter()
        response = await self.servicer.ModelInfer(pb.ModelInferRequest.FromString(wire),
                                                  _Context())
        response.SerializeToString()
        return (time.perf_counter() - t0) * 1e3

    async def run(self, requests: int, warmup: int) -> dict[str, dict[str, float]]:
        import httpx

        samples: dict[str, dict[str, list[float]]] = {}
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ys") as client:
            for i in range(warmup + requests):
                for who in (("plain", "boost") if i % 2 == 0 else ("boost", "plain")):
                    for proto in ("rest", "grpc"):
                        key = f"{who}/{proto}"
                        t = self.stages(who, proto, i)
                        t["total"] = await self.end_to_end(who, proto, i, client)
                        if i >= warmup:
                            for stage, ms in t.items():
                                samples.setdefault(key, {}).setdefault(stage, []).append(ms)
        result = {}
        for key, by_stage in samples.items():
            med = {stage: statistics.median(v) for stage, v in by_stage.items()}
            med["framework"] = max(0.0, med["total"] - sum(med[s] for s in STAGES[:-1]))
            result[key] = med
        return result


class _Context:
    """The part of a gRPC ServicerContext KServe's servicer reads (no metadata)."""

    def invocation_metadata(self) -> tuple:
        return ()


def _write(result: dict, stem: Path) -> None:
    rows = result["rows"]
    labels = {"plain/rest": "plain, REST", "boost/rest": "boost, REST",
              "plain/grpc": "plain, gRPC", "boost/grpc": "boost, gRPC"}
    md = [f"# One KServe request, stage by stage ({result['model']}, {result['precision']})", "",
          f"CPU: {result['host']['line']}.", "",
          f"Plain `kserve.Model` (TorchScript on torch) vs the yellowstone predictor (served on "
          f"**{result['boost_backend']}**), one process, no network; medians of "
          f"{result['requests']} requests, ms. REST: V2 with binary tensors (KServe's client); "
          f"gRPC: V2 with raw contents. *framework* = the whole request through KServe's app or "
          f"servicer minus the four stages."
          + (" **Quick mode: not a result.**" if result["quick"] else ""), "",
          *stage_table(rows, labels, STAGES, "predictor, transport")]
    md += ["", f"REST / gRPC total: plain {rows['plain/rest']['total'] / rows['plain/grpc']['total']:.2f}, "
           f"boost {rows['boost/rest']['total'] / rows['boost/grpc']['total']:.2f}."]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stacked_bars(stem.with_suffix(".png"), rows, labels, STAGES,
                 f"One KServe request: {result['model']} {result['precision']}, boost on "
                 f"{result['boost_backend']}" + (" (quick)" if result["quick"] else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50",
                    choices=("mobilenet", "mobilenet_v3", "resnet50", "minilm", "mlp"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"))
    ap.add_argument("--backends", default="onnxruntime,openvino")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="10 requests, 3 warm-up: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.warmup = 10, 3
    import logging

    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="kserve-breakdown-"))
    os.environ.setdefault("YELLOWSTONE_CACHE_DIR", str(work / "cache"))
    bench = Breakdown(work, args.model, args.backends, args.precision)
    rows = asyncio.run(bench.run(args.requests, args.warmup))
    result = {"benchmark": "request_breakdown_kserve", "model": args.model,
              "precision": args.precision, "boost_backend": bench.backend,
              "backends_tried": args.backends, "requests": args.requests, "quick": args.quick,
              "inputs": [{"name": n, "shape": s, "datatype": d} for n, s, d in bench.inputs],
              "host": host_info(), "loadavg_at_end": os.getloadavg(),
              "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (f"request_breakdown_kserve_{args.model}"
                      + ("" if args.precision == "fp32" else f"_{args.precision}")
                      + ("_quick" if args.quick else ""))
    _write(result, stem)
    for key, r in rows.items():
        print(f"{key:11s} " + "  ".join(f"{s} {r[s]:7.2f}" for s in (*STAGES, "total")))
    print(f"wrote {stem}.json/.md/.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
