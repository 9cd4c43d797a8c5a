"""Serve a torchvision classifier through TorchServe's image_classifier, boosted by yellowstone.

    python examples/torchserve/run_example.py [--arch mobilenet_v3_small] [--precompile]

Builds the model (random weights), archives it with ``yellowstone archive`` (the boost handler
wrapping the built-in ``image_classifier``), starts TorchServe, sends a JPEG made with PIL, and
prints the top-5 answer and which backend served it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def make_model(arch: str, out: Path) -> tuple[Path, Path]:
    """Write the model file (``ARCH`` set to ``arch``) and a random-weight state dict."""
    import importlib.util

    import torch

    model_file = out / "classifier.py"
    text = (HERE / "classifier.py").read_text()
    model_file.write_text(text.replace('ARCH = "mobilenet_v3_small"', f"ARCH = {arch!r}"))
    spec = importlib.util.spec_from_file_location("classifier", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    path = out / f"{arch}.pth"
    torch.save(module.Classifier().eval().state_dict(), path)
    return path, model_file


def make_jpeg(seed: int = 0) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:240, 0:320]
    img = np.stack([(x * 255 // 320), (y * 255 // 240), rng.integers(0, 256, (240, 320))], -1)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def build_archive(arch: str, work: Path, *, boost: bool, precompile: bool = False,
                  batch_size: int = 1, name: str | None = None, workers: int | None = None,
                  precision: str = "fp32", pt2: dict | None = None) -> str:
    """Archive the model with the stock image_classifier or the boost handler; return its name.

    ``pt2`` (stock only) is TorchServe's own ``pt2:`` section of model-config.yaml, e.g.
    ``{"compile": {"enable": True, "backend": "inductor"}}``: BaseHandler wraps the model in
    ``torch.compile`` with those options.
    """
    import subprocess

    import yaml

    from yellowstone.plugins.torchserve.archive import archive_main

    weights, model_file = make_model(arch, work)
    name = name or (f"{arch}_boost" if boost else f"{arch}_stock")
    store = work / "store"
    store.mkdir(parents=True, exist_ok=True)
    config = work / f"{name}.yaml"
    settings: dict = {"batchSize": batch_size, "maxBatchDelay": 20}
    if workers:
        settings.update(minWorkers=workers, maxWorkers=workers)
    if pt2:
        if boost:
            raise ValueError("pt2 is TorchServe's own torch.compile: archive it with the stock "
                             "handler")
        settings["pt2"] = pt2
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    if not boost:
        subprocess.run([str(Path(sys.executable).parent / "torch-model-archiver"),
                        "--model-name", name, "--version", "1.0", "--serialized-file",
                        str(weights), "--model-file", str(model_file),
                        "--handler", "image_classifier", "--config-file", str(config),
                        "--export-path", str(store), "--force"], check=True)
        return name
    argv = ["--model-name", name, "--serialized-file", str(weights),
            "--model-file", str(model_file), "--handler", "image_classifier",
            "--config-file", str(config), "--input-shape", "1,3,224,224",
            "--backends", "onnxruntime,openvino", "--export-path", str(store), "--force", "-q",
            "--precision", precision, "--task", "classification"]
    if precompile:
        argv.append("--precompile")
    if archive_main(argv) != 0:
        raise SystemExit("yellowstone archive failed")
    return name


def main() -> None:
    from serve import Server

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mobilenet_v3_small",
                    choices=["mobilenet_v3_small", "resnet18"])
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ys-ts-example-"))
    name = build_archive(args.arch, work, boost=True, precompile=args.precompile)
    server = Server(work / "server", work / "store", f"{name}={name}.mar",
                    env={"YELLOWSTONE_CACHE_DIR": str(work / "cache")})
    try:
        server.wait_model(name)
        r = requests.post(f"{server.url}/predictions/{name}", data=make_jpeg(), timeout=120)
        print("HTTP", r.status_code, json.dumps(r.json(), indent=1))
        info = requests.get(f"{server.management}/models/{name}",
                            params={"customized": "true"}, timeout=60).json()[0]
        meta = info["customizedMetadata"]
        meta = (json.loads(meta) if isinstance(meta, str) else meta)["yellowstone"]
        print(f"served by {meta['backend']} (cache: {meta['cache']}, "
              f"load {meta['load_s']} s)")
        bad = requests.post(f"{server.url}/predictions/{name}", data=b"not an image", timeout=60)
        print("not an image ->", bad.status_code, bad.json()["message"][:120])
    finally:
        server.stop()
    print("logs:", work / "server" / "logs")


if __name__ == "__main__":
    main()
