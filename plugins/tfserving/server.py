"""The drop-in server: ``tensorflow_model_server``'s flags, gRPC and REST APIs, the shim underneath.

python -m yellowstone.plugins.tfserving --port=8500 --rest_api_port=8501 \
        --model_name=m --model_base_path=/models/m
python -m yellowstone.plugins.tfserving compile SAVED_MODEL_DIR   # ship <dir>/yellowstone/
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# tensorflow_model_server flags we take without acting on them (they tune TF Serving internals).
_ACCEPTED = (
    "grpc_socket_path",
    "rest_api_timeout_in_ms",
    "rest_api_num_threads",
    "enable_batching",
    "batching_parameters_file",
    "monitoring_config_file",
    "model_config_file_poll_wait_seconds",
    "tensorflow_session_parallelism",
    "tensorflow_inter_op_parallelism",
    "platform_config_file",
    "ssl_config_file",
    "enable_model_warmup",
    "saved_model_tags",
    "grpc_channel_arguments",
    "max_num_load_retries",
    "num_load_threads",
    "num_unload_threads",
)


def build_parser() -> argparse.ArgumentParser:
    """tensorflow_model_server's flags (``--flag=value``) plus ``--yellowstone_*`` ones."""
    p = argparse.ArgumentParser(
        prog="yellowstone tfserving", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: pick a free one)")
    p.add_argument("--rest_api_port", type=int, default=0, help="REST port (0: no REST API)")
    p.add_argument("--model_name", default="default")
    p.add_argument("--model_base_path", default="")
    p.add_argument("--model_config_file", default="")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0)
    for flag in _ACCEPTED:
        p.add_argument(f"--{flag}", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--yellowstone_host",
        default=os.environ.get("YELLOWSTONE_TFSERVING_HOST", "0.0.0.0"),
        help="address to bind (TF Serving binds every interface)",
    )
    p.add_argument(
        "--yellowstone_shim",
        choices=("always", "auto", "off"),
        default=os.environ.get("YELLOWSTONE_TFSERVING_SHIM", "always"),
        help="always: the shim serves every signature OpenVINO converts and validates; "
        "auto: only where the core's benchmark chose OpenVINO; off: TensorFlow only",
    )
    p.add_argument(
        "--yellowstone_signatures",
        default="serving_default",
        help="comma-separated signature keys to boost, or 'all'",
    )
    p.add_argument(
        "--yellowstone_artifact_dir",
        default=os.environ.get("YELLOWSTONE_TFSERVING_ARTIFACTS", ""),
        help="where artifacts compiled at start go (shipped <version>/yellowstone/ wins)",
    )
    p.add_argument("--yellowstone_time_budget_s", type=float, default=0.2)
    p.add_argument("--yellowstone_ready_file", default="", help="touched once the ports are open")
    return p


def _configs(args: argparse.Namespace) -> list[Any]:
    from .manager import ModelConfig, parse_model_config_file

    if args.model_config_file:
        return parse_model_config_file(args.model_config_file)
    if not args.model_base_path:
        raise SystemExit("either --model_base_path or --model_config_file is required")
    return [ModelConfig(name=args.model_name, base_path=args.model_base_path)]


class ModelServer:
    """Both APIs over one model manager; ``start()`` loads the models and opens the ports."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        killed = os.environ.get("YELLOWSTONE_BACKEND", "").strip().lower() == "native"
        self.shim_policy = "off" if killed else args.yellowstone_shim
        self.grpc_port = self.rest_port = 0
        self._grpc: Any = None
        self._rest: Any = None
        from .manager import ModelManager

        self.manager = ModelManager(_configs(args), self._load, args.file_system_poll_wait_seconds)

    def _load(self, cfg: Any, version: int, path: Path) -> Any:
        from .servable import Servable

        signatures = tuple(s.strip() for s in self.args.yellowstone_signatures.split(",") if s.strip())
        options: dict[str, Any] = {"time_budget_s": self.args.yellowstone_time_budget_s}
        if self.args.tensorflow_intra_op_parallelism:
            options["threads"] = self.args.tensorflow_intra_op_parallelism
        return Servable(
            cfg.name,
            version,
            path,
            shim_policy=self.shim_policy,
            boost=signatures,
            artifact_root=self.args.yellowstone_artifact_dir or None,
            threads=self.args.tensorflow_intra_op_parallelism,
            boost_options=options,
        )

    def start(self) -> None:
        """Load the wanted versions, open gRPC (and REST), start polling."""
        from . import grpc_api, rest_api

        self.manager.poll_once()
        host = self.args.yellowstone_host
        self._grpc, self.grpc_port = grpc_api.make_server(self.manager, host, self.args.port)
        logger.info("Running gRPC ModelServer at %s:%d ...", host, self.grpc_port)
        if self.args.rest_api_port:
            self._rest, self.rest_port = rest_api.make_server(self.manager, host, self.args.rest_api_port)
            logger.info("Exporting HTTP/REST API at:%s:%d ...", host, self.rest_port)
        self.manager.start()
        if self.args.yellowstone_ready_file:
            Path(self.args.yellowstone_ready_file).write_text(f"{self.grpc_port} {self.rest_port}\n")

    def stop(self) -> None:
        """Close the ports and stop polling."""
        self.manager.stop()
        if self._rest is not None:
            self._rest.shutdown()
        if self._grpc is not None:
            self._grpc.stop(grace=1)


def compile_main(argv: Sequence[str]) -> int:
    """``compile SAVED_MODEL_DIR [--out DIR] [--signatures a,b]``: write shippable artifacts."""
    from .artifacts import prepare

    p = argparse.ArgumentParser(prog="yellowstone tfserving compile")
    p.add_argument("saved_model_dir")
    p.add_argument("--out", default="", help="default: <saved_model_dir>/yellowstone")
    p.add_argument("--signatures", default="serving_default")
    p.add_argument("--policy", choices=("always", "auto"), default="always")
    a = p.parse_args(argv)
    done = prepare(
        a.saved_model_dir,
        a.out or None,
        policy=a.policy,
        signatures=[s for s in a.signatures.split(",") if s],
    )
    for key, path in done.items():
        print(f"{key}: {path}")  # noqa: T201 - CLI output
    return 0 if done else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the server until SIGTERM/SIGINT (or ``compile`` artifacts)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=os.environ.get("YELLOWSTONE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if argv and argv[0] == "compile":
        return compile_main(argv[1:])
    args, unknown = build_parser().parse_known_args(argv)
    for flag in unknown:
        logger.warning("ignoring unsupported flag %s", flag)
    server = ModelServer(args)
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0
