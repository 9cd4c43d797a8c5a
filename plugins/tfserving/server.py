"""The drop-in server: ``tensorflow_model_server``'s flags, gRPC and REST APIs, the shim underneath."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yellowstone.config import kill_switch
from yellowstone.serving import add_boost_flags, boost_config, boost_flags

from .flags import add_tf_serving_flags, add_yellowstone_flags, grpc_threads, refusals, session_config
from .textproto import StartupError

if TYPE_CHECKING:
    from yellowstone import BoostConfig

    from .manager import ModelConfig

logger = logging.getLogger(__name__)

# Boost options the server defaults differently from the core: loading must stay quick.
SERVER_DEFAULTS = {"time_budget_s": 0.2}

PER_MODEL_BATCHING_FILE = "batching_params.pbtxt"


def build_parser() -> argparse.ArgumentParser:
    """tensorflow_model_server's flags (``--flag=value``), ``--yellowstone_*`` ones, boost options."""
    p = argparse.ArgumentParser(
        prog="yellowstone tfserving", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    add_tf_serving_flags(p)
    add_yellowstone_flags(p)
    add_boost_flags(p)
    return p


def server_boost_config(args: argparse.Namespace) -> BoostConfig:
    """The BoostConfig: boost flags > TF Serving's flags and the server's defaults > env > core's.

    The server's defaults (:data:`SERVER_DEFAULTS`), the intra-op thread count and
    ``--mixed_precision=bfloat16`` (precision bf16) form the config section, so ``YELLOWSTONE_*``
    variables still override the defaults.
    """
    section: dict[str, Any] = {
        k: v for k, v in SERVER_DEFAULTS.items() if f"YELLOWSTONE_{k.upper()}" not in os.environ
    }
    session = session_config(args)
    if session is not None and session.intra_op_parallelism_threads:
        section["threads"] = session.intra_op_parallelism_threads
    if args.mixed_precision == "bfloat16":
        section["precision"] = "bf16"
    return boost_config(flags=boost_flags(args), section=section)


def _configs(args: argparse.Namespace) -> list[ModelConfig]:
    from .manager import ModelConfig, parse_model_config_file

    if args.model_config_file:
        return parse_model_config_file(args.model_config_file)
    return [ModelConfig(name=args.model_name, base_path=args.model_base_path)]


def _tag_sets(version_dir: Path) -> list[frozenset[str]]:
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    if (version_dir / "saved_model.pb").exists():
        sm.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    else:
        from google.protobuf import text_format

        text_format.Parse((version_dir / "saved_model.pbtxt").read_text(), sm)
    return [frozenset(mg.meta_info_def.tags) for mg in sm.meta_graphs]


class ModelServer:
    """Both APIs over one model manager; ``start()`` loads the models and opens the ports.

    Construction reads and checks every flag and config file (StartupError / ConfigError) and
    loads nothing.
    """

    def __init__(self, args: argparse.Namespace):
        from . import monitoring, tls
        from .batching import read_parameters
        from .listeners import parse_channel_arguments
        from .manager import ModelManager

        problems = refusals(args)
        if problems:
            raise StartupError("INVALID_ARGUMENT", "; ".join(problems))
        self.args = args
        self.boost_config = server_boost_config(args)
        self.shim_policy = "off" if kill_switch() else args.yellowstone_shim
        self.tags = frozenset(t.strip() for t in args.saved_model_tags.split(",") if t.strip())
        self.metrics = monitoring.ServingMetrics()
        self.prometheus = monitoring.read_monitoring_config(args.monitoring_config_file)
        if self.prometheus.enable and not args.rest_api_port:
            raise StartupError(
                "INVALID_ARGUMENT",
                "--monitoring_config_file enables Prometheus, which is served on the REST port: "
                "set --rest_api_port",
            )
        self.ssl = tls.read_ssl_config(args.ssl_config_file) if args.ssl_config_file else None
        self.channel_arguments = parse_channel_arguments(args.grpc_channel_arguments)
        self.batching = read_parameters(args.batching_parameters_file) if args.enable_batching else None
        self.session_config = session_config(args)
        self.grpc_port = self.rest_port = 0
        self._grpc: Any = None
        self._rest: Any = None
        self._scheduler: Any = None
        self.manager = ModelManager(
            _configs(args),
            self._load,
            args.file_system_poll_wait_seconds,
            load_threads=args.num_load_threads,
            unload_threads=args.num_unload_threads,
            max_load_retries=args.max_num_load_retries,
            retry_interval_s=args.load_retry_interval_micros / 1e6,
            allow_unavailable_labels=args.allow_version_labels_for_unavailable_models,
        )

    # -- loading -----------------------------------------------------------------------------
    def _check_tags(self, path: Path) -> None:
        sets = _tag_sets(path)
        if self.tags not in sets:
            raise RuntimeError(
                f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(self.tags))} }}. "
                "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
                "`saved_model_cli`"
            )

    def _queue_options(self, path: Path) -> Any:
        from .batching import options_from_proto
        from .textproto import message_class, parse_text_file

        per_model = path / PER_MODEL_BATCHING_FILE
        if self.args.enable_per_model_batching_parameters and per_model.exists():
            params = parse_text_file(str(per_model), message_class("BatchingParameters")())
            return options_from_proto(params)[1]
        return self.batching[1]

    def _instrument(self, servable: Any) -> None:
        """runtime_latency for Predict/Classify/Regress (runtime ``shim`` or ``TF1``)."""
        metrics = self.metrics
        for api in ("predict", "classify", "regress"):
            inner = getattr(servable, api)

            def timed(
                key: str, *rest: Any, _inner: Any = inner, _api: str = api.capitalize(), **kw: Any
            ) -> Any:
                start = time.perf_counter()
                out = _inner(key, *rest, **kw)
                runtime = "shim" if (key or "serving_default") in servable.shims else "TF1"
                latency = (time.perf_counter() - start) * 1e6
                metrics.runtime_latency.observe(servable.name, _api, runtime, value=latency)
                return out

            setattr(servable, api, timed)

    def _load(self, cfg: Any, version: int, path: Path) -> Any:
        from .servable import Servable
        from .warmup import run_warmup

        self._check_tags(path)
        signatures = tuple(s.strip() for s in self.args.yellowstone_signatures.split(",") if s.strip())
        start = time.perf_counter()
        try:
            servable = Servable(
                cfg.name,
                version,
                path,
                shim_policy=self.shim_policy,
                boost=signatures,
                artifact_root=self.args.yellowstone_artifact_dir or None,
                config=self.boost_config,
                tags=sorted(self.tags),
                session_config=self.session_config,
                method_name_check=self.args.enable_signature_method_name_check,
            )
        except Exception:
            self.metrics.record_load(str(path), False, 0)
            raise
        self.metrics.record_load(str(path), True, (time.perf_counter() - start) * 1e6)
        try:
            if self._scheduler is not None:
                from .batching import ServableBatching

                ServableBatching(self._scheduler, self._queue_options(path), servable).install()
            self._instrument(servable)
            if self.args.enable_model_warmup:
                run_warmup(
                    servable,
                    path,
                    iterations=self.args.num_request_iterations_for_warmup or 1,
                    metrics=self.metrics,
                )
        except BaseException:
            servable.close()
            raise
        return servable

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Load the wanted versions, open gRPC (and REST), start polling; StartupError on failure."""
        from . import listeners, tls
        from .batching import BatchScheduler
        from .monitoring import grpc_interceptor

        args = self.args
        if self.batching is not None:
            self._scheduler = BatchScheduler(self.batching[0], on_batch=self.metrics.record_batch)
        self.manager.poll_once()
        failed = self.manager.failed()
        if failed:
            listed = "".join(f"{{name: {n} version: {v}}}, " for n, v, _ in failed)
            raise StartupError("UNKNOWN", f"Some models did not become available: {{{listed}}}")
        self.manager.check_labels()
        host = args.yellowstone_host
        self._grpc, self.grpc_port = listeners.start_grpc(
            self.manager,
            host=host,
            port=args.port,
            socket_path=args.grpc_socket_path,
            credentials=tls.server_credentials(self.ssl, args.use_alts_credentials),
            channel_arguments=self.channel_arguments,
            max_threads=grpc_threads(args),
            interceptors=[grpc_interceptor(self.metrics)],
            health=args.enable_grpc_healthcheck_service,
            tensor_content=args.enable_serialization_as_tensor_content,
        )
        if self.grpc_port:
            logger.info("Running gRPC ModelServer at %s:%d ...", host, self.grpc_port)
        if args.grpc_socket_path:
            logger.info("Running gRPC ModelServer at UNIX socket %s ...", args.grpc_socket_path)
        if args.rest_api_port:
            self._rest, self.rest_port = listeners.start_rest(
                self.manager,
                host=host,
                port=args.rest_api_port,
                threads=args.rest_api_num_threads or 0,
                timeout_ms=args.rest_api_timeout_in_ms,
                prometheus=self.prometheus,
                metrics=self.metrics,
                cors=args.rest_api_enable_cors_support,
            )
            logger.info("Exporting HTTP/REST API at:%s:%d ...", host, self.rest_port)
        self.manager.start(args.model_config_file, args.model_config_file_poll_wait_seconds)
        if args.yellowstone_ready_file:
            Path(args.yellowstone_ready_file).write_text(f"{self.grpc_port} {self.rest_port}\n")

    def stop(self) -> None:
        """Close the ports and stop polling and batching."""
        self.manager.stop()
        if self._rest is not None:
            self._rest.shutdown()
        if self._grpc is not None:
            self._grpc.stop(grace=1)
        if self._scheduler is not None:
            self._scheduler.stop()


def compile_main(argv: Sequence[str]) -> int:
    """``compile SAVED_MODEL_DIR [--out DIR] [--signatures a,b] [boost options]``: ship artifacts."""
    from .artifacts import DEFAULT_POLICY, prepare

    p = argparse.ArgumentParser(prog="yellowstone tfserving compile", allow_abbrev=False)
    p.add_argument("saved_model_dir")
    p.add_argument("--out", default="", help="default: <saved_model_dir>/yellowstone")
    p.add_argument("--signatures", default="serving_default")
    p.add_argument("--policy", choices=("always", "auto"), default=DEFAULT_POLICY)
    add_boost_flags(p)
    a = p.parse_args(argv)
    done = prepare(
        a.saved_model_dir,
        a.out or None,
        policy=a.policy,
        signatures=[s for s in a.signatures.split(",") if s],
        config=boost_config(flags=boost_flags(a)),
    )
    for key, path in done.items():
        print(f"{key}: {path}")  # noqa: T201 - CLI output
    return 0 if done else 1


def version_text() -> str:
    """What ``--version`` prints (TF Serving's two lines, naming yellowstone)."""
    from importlib.metadata import PackageNotFoundError, version

    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    return (
        f"TensorFlow ModelServer: {of('tensorflow-serving-api')} (yellowstone {of('yellowstone')})\n"
        f"TensorFlow Library: {of('tensorflow')}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the server until SIGTERM/SIGINT (or ``compile`` artifacts).

    ``python -m yellowstone.plugins.tfserving --port=8500 --rest_api_port=8501 --model_name=m
    --model_base_path=/models/m``, or ``... compile SAVED_MODEL_DIR`` to ship
    ``<dir>/yellowstone/``. Every flag of TF Serving's main.cc is taken (:mod:`.flags` says what
    each does); a value that cannot be honoured stops the server at start, as a malformed config
    file does, with ``Failed to start server. Error: CODE: message`` on stdout and exit status 255.
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=os.environ.get("YELLOWSTONE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if argv and argv[0] == "compile":
        return compile_main(argv[1:])
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(
            f"unknown argument: {' '.join(unknown)} (tensorflow_model_server would ignore it; "
            "yellowstone refuses to start rather than ignore a flag)"
        )
    if args.version:
        sys.stdout.write(version_text())
        return 0
    from yellowstone.errors import ConfigError

    server: ModelServer | None = None
    try:
        server = ModelServer(args)
        server.start()
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    except StartupError as exc:
        logger.error("Failed to start server. Error: %s: %s", exc.code, exc.message)
        sys.stdout.write(f"Failed to start server. Error: {exc.code}: {exc.message}\n")
        sys.stdout.flush()
        if server is not None:
            server.stop()
        return 255
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0
