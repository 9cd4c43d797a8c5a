"""``python -m yellowstone.plugins.kserve``: the boost predictor's entry point, in KServe's convention.

    python -m yellowstone.plugins.kserve --model_name NAME --model_dir /mnt/models
        [--backends onnxruntime,openvino] [--precision fp32] [--http_port 8080 --grpc_port 8081 ...]

KServe's own server flags come from its parent parser (``kserve.model_server.parser``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("yellowstone.plugins.kserve")

# Our flags that map 1:1 onto BoostConfig fields (None = not given: yaml/env/default decide).
_BOOST_FLAGS = ("backends", "precision", "task", "calibration", "batch_sizes", "time_budget_s",
                "validation_rounds", "threads", "cache_dir")


def build_parser() -> argparse.ArgumentParser:
    """KServe's server flags plus the model directory and boost options."""
    from kserve import model_server

    parser = argparse.ArgumentParser(
        prog="python -m yellowstone.plugins.kserve", parents=[model_server.parser],
        description="Serve a model directory with KServe's ModelServer, boosted by yellowstone.")
    parser.add_argument("--model_dir", required=True,
                        help="directory (or file) holding the model, as KServe's storage "
                             "initializer lays it out (/mnt/models)")
    parser.add_argument("--model_file", default=None,
                        help="the model inside --model_dir when it holds several")
    parser.add_argument("--artifact_dir", default=None,
                        help="precompiled yellowstone artifact directory (default: the one "
                             "found in --model_dir)")
    parser.add_argument("--input", dest="inputs", action="append", default=[],
                        metavar="NAME:SHAPE[:DTYPE]",
                        help="an input spec, e.g. x:1x16:float32 (repeat per input); "
                             "TorchScript models need them")
    parser.add_argument("--backends", default=None,
                        help="candidate backends, comma-separated (default: auto)")
    parser.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16", "int8"))
    parser.add_argument("--task", default=None,
                        choices=("auto", "classification", "embedding", "regression"),
                        help="what the outputs mean: the accuracy measure for bf16/fp16/int8")
    parser.add_argument("--calibration", default=None, metavar="FILE.npz",
                        help="real inputs to calibrate int8 on (one array per input name)")
    parser.add_argument("--batch_sizes", default=None, help="served batch sizes, e.g. 1,8")
    parser.add_argument("--time_budget_s", default=None, type=float,
                        help="benchmark time per candidate and batch size")
    parser.add_argument("--validation_rounds", default=None, type=int)
    parser.add_argument("--threads", default=None, type=int, help="intra-op threads per backend")
    parser.add_argument("--cache_dir", default=None, help="compile cache (YELLOWSTONE_CACHE_DIR)")
    return parser


def boost_options(args: argparse.Namespace) -> dict[str, Any]:
    """The BoostConfig fields given on the command line."""
    opts = {k: getattr(args, k) for k in _BOOST_FLAGS if getattr(args, k) is not None}
    if getattr(args, "workers", 1) > 1:  # uvicorn workers share this pod's cores
        opts["workers"] = args.workers
    return opts


def _configure_logging() -> None:
    ys = logging.getLogger("yellowstone")
    if not ys.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ys.addHandler(handler)
        ys.setLevel(logging.INFO)
        ys.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, boost the model, serve it until stopped; non-zero when it cannot serve."""
    args = build_parser().parse_args(argv)
    _configure_logging()
    import kserve

    from yellowstone.errors import YellowstoneError

    from .layout import parse_inputs
    from .model import BoostModel

    server = kserve.ModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers,
        max_threads=args.max_threads, max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc, enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format, event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive)
    try:
        model = BoostModel(args.model_name, args.model_dir, options=boost_options(args),
                           inputs=parse_inputs(args.inputs, "--input"),
                           model_file=args.model_file, artifact_dir=args.artifact_dir)
        model.load()
    except YellowstoneError as exc:
        logger.error("%s: cannot serve: %s", args.model_name, exc)
        return 2
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
