"""Serve a model directory with the yellowstone KServe predictor on this machine, then call it.

    python examples/kserve/serve_local.py            # TorchScript MLP, REST V2 + gRPC
    python examples/kserve/serve_local.py --precompile

It lays out ./kserve-demo/models as KServe's storage initializer would (/mnt/models): the model,
a yellowstone.yaml naming its input, and with --precompile the artifact directory that
``yellowstone compile --out`` writes, so the predictor loads instead of compiling. On a cluster
the same directory goes to object storage, and

    yellowstone kserve manifests --model-name mlp --storage-uri s3://bucket/mlp --accelerator cpu

writes the ClusterServingRuntime, InferenceService and NFD NodeFeatureRule to apply.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--precompile", action="store_true")
    ap.add_argument("--dir", default="kserve-demo")
    args = ap.parse_args()
    import torch

    models = Path(args.dir) / "models"
    models.mkdir(parents=True, exist_ok=True)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    torch.jit.trace(mlp.eval(), torch.randn(2, 16)).save(str(models / "model.pt"))
    (models / "yellowstone.yaml").write_text(
        "inputs: ['input:1x16:float32']\nbackends: onnxruntime,openvino\ntime_budget_s: 0.2\n")
    if args.precompile and not (models / "yellowstone").exists():
        import yellowstone

        yellowstone.compile(str(models / "model.pt"), torch.randn(2, 16),
                            out=str(models / "yellowstone"), backends="onnxruntime,openvino")

    http, grpc = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "yellowstone.plugins.kserve",
                               "--model_name", "mlp", "--model_dir", str(models),
                               "--http_port", str(http), "--grpc_port", str(grpc)])
    try:
        from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

        async def call():
            rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
            for _ in range(600):
                try:
                    if await rest.is_model_ready(f"http://127.0.0.1:{http}", "mlp"):
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                await asyncio.sleep(0.5)
            x = np.random.default_rng().standard_normal((2, 16)).astype(np.float32)
            inp = InferInput("input", [2, 16], "FP32")
            inp.set_data_from_numpy(x)
            r1 = await rest.infer(f"http://127.0.0.1:{http}", InferRequest("mlp", [inp]),
                                  model_name="mlp")
            grpc_client = InferenceGRPCClient(f"127.0.0.1:{grpc}", retries=0)
            r2 = await grpc_client.infer(InferRequest("mlp", [inp]))
            await rest.close()
            await grpc_client.close()
            return x, r1, r2

        x, r1, r2 = asyncio.run(call())
        with torch.inference_mode():
            want = mlp(torch.from_numpy(x)).numpy()
        print("backend:", r1.parameters["yellowstone_backend"])
        print("REST V2:", r1.outputs[0].as_numpy().round(4).tolist())
        print("gRPC V2:", r2.outputs[0].as_numpy().round(4).tolist())
        print("max |diff| vs torch:", float(np.abs(r1.outputs[0].as_numpy() - want).max()))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
