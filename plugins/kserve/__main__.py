"""``python -m yellowstone.plugins.kserve``: the boost predictor's entry point, in KServe's convention.

    python -m yellowstone.plugins.kserve --model_name NAME --model_dir /mnt/models
        [--backends onnxruntime,openvino] [--precision fp32] [--http_port 8080 --grpc_port 8081 ...]

KServe's own server flags come from its parent parser (``kserve.model_server.parser``); the
boost flags are the serving layer's, one per ``BoostConfig`` field and spelled as it
(``--time_budget_s``, ``--batch_sizes``, ...). KServe's ``--workers`` (uvicorn workers) feeds
``workers``, so the workers share this pod's cores.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from yellowstone.serving import add_boost_flags, boost_flags, parse_specs

logger = logging.getLogger("yellowstone.plugins.kserve")


def build_parser() -> argparse.ArgumentParser:
    """KServe's server flags plus the model directory and the boost flags."""
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
    add_boost_flags(parser, exclude=("workers",))  # KServe's own --workers feeds it
    return parser


def boost_options(args: argparse.Namespace) -> dict[str, Any]:
    """The BoostConfig fields given on the command line."""
    opts = boost_flags(args, exclude=("workers",))
    # KServe's --workers (default 1) is not ours: it feeds ``workers`` only when it says more.
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

    from .model import BoostModel

    server = kserve.ModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers,
        max_threads=args.max_threads, max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc, enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format, event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive)
    from .errors import install_log_filter

    install_log_filter()  # KServe's own 400s (gRPC raw contents that do not match): one line
    try:
        model = BoostModel(args.model_name, args.model_dir, options=boost_options(args),
                           inputs=parse_specs(args.inputs, where="--input"),
                           model_file=args.model_file, artifact_dir=args.artifact_dir)
        model.load()
    except YellowstoneError as exc:
        logger.error("%s: cannot serve: %s", args.model_name, exc)
        return 2
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
