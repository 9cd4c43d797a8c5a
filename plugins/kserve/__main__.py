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
import re
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


GRPC_AIO_LOGGER = "grpc._cython.cygrpc"  # where grpc's asyncio server logs a failed call


class UnparsedRequestLogFilter(logging.Filter):
    """On grpc's asyncio server logger: a request whose bytes do not parse becomes one WARNING line.

    KServe builds its gRPC server itself (``kserve.protocol.grpc.server.GRPCServer``: its own
    interceptors over its generated handlers), so the predictor cannot wrap the request
    deserializer without forking KServe. grpc then answers such a request UNKNOWN
    ("Unexpected <class 'DecodeError'>: ...") and logs the deserializer's traceback at ERROR for
    each one. The answer stays KServe's; the record becomes
    ``<method>: UNKNOWN: cannot parse the request: <error>`` without its traceback, in the
    manner of ``errors.ClientErrorLogFilter`` for KServe's own 400s.
    """

    _METHOD = re.compile(r"\[(/[^\]]+)\]")

    def filter(self, record: logging.LogRecord) -> bool:
        from google.protobuf.message import DecodeError

        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if not isinstance(exc, DecodeError):
            return True
        found = self._METHOD.search(record.getMessage())
        record.msg = "%s: UNKNOWN: cannot parse the request: %s"
        record.args = (found.group(1) if found else "gRPC", " ".join(str(exc).split())[:500])
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _configure_logging() -> None:
    """Yellowstone's records at INFO and grpc's asyncio server's at WARNING, on stderr.

    KServe's log config gives neither the root logger nor grpc's a handler (grpc's has a
    ``NullHandler``), so without one here a failed gRPC call would leave no trace at all.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name, level in (("yellowstone", logging.INFO), (GRPC_AIO_LOGGER, logging.WARNING)):
        target = logging.getLogger(name)
        if not target.handlers:
            target.addHandler(handler)
            target.setLevel(level)
            target.propagate = False
    grpc_aio = logging.getLogger(GRPC_AIO_LOGGER)
    if not any(isinstance(f, UnparsedRequestLogFilter) for f in grpc_aio.filters):
        grpc_aio.addFilter(UnparsedRequestLogFilter())


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
