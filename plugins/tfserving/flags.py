"""Every ``tensorflow_model_server`` flag (main.cc's list), how yellowstone honours it, and the parser."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from yellowstone.serving import host_cores

from .artifacts import DEFAULT_POLICY, POLICIES


@dataclasses.dataclass(frozen=True)
class Flag:
    """One tensorflow_model_server flag: its type and default there, and what yellowstone does."""

    name: str
    kind: type
    default: Any
    does: str


# :data:`FLAGS` is the one table: upstream name, type, default, and what this server does with the
# flag. The parser takes TF Serving's spellings (``--flag=value``; a bare ``--bool_flag`` is true),
# :func:`refusals` lists every value that cannot be honoured so the server stops at start rather
# than ignoring it, and :func:`markdown_table` renders the table that FLAGS.md carries.
# In main.cc's order. ``does`` is the FLAGS.md column: "acts", "refused" or "partly" first.
# fmt: off
FLAGS: tuple[Flag, ...] = (
    Flag("port", int, 8500,
         "acts: gRPC TCP port. 0 with `--grpc_socket_path`: the socket only; 0 without: a free port "
         "(yellowstone extension; logged and written to the ready file)"),
    Flag("grpc_socket_path", str, "",
         "acts: gRPC also listens on `unix:PATH`, with the same credentials as the TCP port"),
    Flag("rest_api_port", int, 0,
         "acts: REST API port (0: no REST). Equal to `--port`: refused at start (TF Serving logs and "
         "skips REST)"),
    Flag("rest_api_num_threads", int, None,
         "acts: REST worker threads (default 4 x CPUs)"),
    Flag("rest_api_timeout_in_ms", int, 30000,
         "acts: a REST inference running longer is answered 504 `Timed out waiting for notification` "
         "(DEADLINE_EXCEEDED); <= 0: no deadline"),
    Flag("rest_api_enable_cors_support", bool, False,
         "acts: every REST response carries `Access-Control-Allow-Origin: *` (and the allowed methods "
         "and headers); OPTIONS preflight requests are answered 200"),
    Flag("enable_batching", bool, False,
         "acts: concurrent runs of a signature (shim or TensorFlow) are merged along dim 0 into one "
         "call and split back (BatchingSession semantics, one shared scheduler)"),
    Flag("allow_version_labels_for_unavailable_models", bool, False,
         "acts: false: a label must name an AVAILABLE version (FAILED_PRECONDITION at start, reload "
         "error later); true: a new label may name any version"),
    Flag("batching_parameters_file", str, "",
         "acts: text BatchingParameters: max_batch_size, batch_timeout_micros, max_enqueued_batches "
         "(full queue: UNAVAILABLE), num_batch_threads, thread_pool_name, allowed_batch_sizes, "
         "pad_variable_length_inputs, enable_large_batch_splitting, max_execution_batch_size; any "
         "other field: refused at start. Without `--enable_batching`: refused (TF Serving's message)"),
    Flag("enable_per_model_batching_parameters", bool, False,
         "acts: `<version>/batching_params.pbtxt` replaces the queue parameters of that model (threads "
         "stay global); without `--enable_batching`: refused"),
    Flag("model_config_file", str, "",
         "acts: text ModelServerConfig (model_config_list: name, base_path, model_platform "
         "`tensorflow`, version policy, version_labels). Unparsable: exit 255 with `Failed to start "
         "server. Error: INVALID_ARGUMENT: Invalid protobuf file: '<path>'`; duplicate names, other "
         "platforms, custom_model_config, logging_config: refused"),
    Flag("model_config_file_poll_wait_seconds", float, 0,
         "acts: the config file is re-read every N s: models added load, models removed unload (END); "
         "an unreadable file is logged and the running config kept"),
    Flag("model_name", str, "default",
         "acts: the single model's name (ignored with `--model_config_file`)"),
    Flag("model_base_path", str, "",
         "acts: the single model's base path. Versions are all-digit directories parsed as int64 "
         "(`00000123` is 123), loaded from the directory found"),
    Flag("num_load_threads", int, 0,
         "acts: versions load on a pool of N threads (0: one at a time)"),
    Flag("num_unload_threads", int, 0,
         "acts: versions unload on a pool of N threads (0: one at a time)"),
    Flag("max_num_load_retries", int, 5,
         "acts: a failed load is retried N times (state LOADING meanwhile), then END with the error"),
    Flag("load_retry_interval_micros", int, 60_000_000,
         "acts: the wait between load retries (< 0: none)"),
    Flag("file_system_poll_wait_seconds", float, 1,
         "acts: base paths polled every N s for versions; <= 0: once (fractions accepted, a "
         "yellowstone extension)"),
    Flag("flush_filesystem_caches", bool, True,
         "acts trivially: yellowstone keeps no file-system cache to flush"),
    Flag("tensorflow_session_parallelism", int, 0,
         "acts: the session's intra- and inter-op threads when the two below are unset"),
    Flag("tensorflow_session_config_file", str, "",
         "acts: text ConfigProto used for every TensorFlow session (the parallelism flags override its "
         "thread counts)"),
    Flag("tensorflow_intra_op_parallelism", int, 0,
         "acts: the session's intra-op threads and the shim's threads. All three parallelism flags > 0: "
         "refused with TF Serving's message"),
    Flag("tensorflow_inter_op_parallelism", int, 0,
         "acts: the session's inter-op threads"),
    Flag("use_alts_credentials", bool, False,
         "acts: every gRPC port uses ALTS credentials (handshakes need Google Cloud, as in TF Serving); "
         "with `--ssl_config_file`: refused"),
    Flag("ssl_config_file", str, "",
         "acts: text SSLConfig (PEM text): TLS on every gRPC port; client_verify requires and verifies "
         "client certificates against custom_ca. An unusable key, cert or CA, a key not matching the "
         "cert, or client_verify without custom_ca: refused at start (never plaintext)"),
    Flag("platform_config_file", str, "",
         "refused: PlatformConfigMap is not read; the TensorFlow platform is configured by these flags"),
    Flag("per_process_gpu_memory_fraction", float, 0.0,
         "acts: the sessions' gpu_options.per_process_gpu_memory_fraction; outside [0, 1]: refused"),
    Flag("saved_model_tags", str, "serve",
         "acts: the MetaGraphDef loaded; a version without exactly these tags fails to load with TF "
         "Serving's `Could not find meta graph def matching supplied tags`"),
    Flag("grpc_channel_arguments", str, "",
         "acts: `k=v,...` passed to the gRPC server (int32 values as ints); an item without `=`: refused"),
    Flag("grpc_max_threads", int, None,
         "acts: gRPC handler threads (default 4 x CPUs)"),
    Flag("enable_model_warmup", bool, True,
         "acts: `assets.extra/tf_serving_warmup_requests` (TFRecord of PredictionLog) is replayed "
         "before the version is AVAILABLE; a failing record fails the load"),
    Flag("num_request_iterations_for_warmup", int, 0,
         "acts: each warmup record is replayed N times (> 0)"),
    Flag("version", bool, False,
         "acts: prints `TensorFlow ModelServer: ...` and `TensorFlow Library: ...`, exits 0"),
    Flag("monitoring_config_file", str, "",
         "acts: text MonitoringConfig; prometheus_config {enable, path} serves TF Serving's metrics "
         "(`:tensorflow:serving:request_count`, `:tensorflow:serving:request_latency`, ...) and "
         "yellowstone's on the REST port (default path `/monitoring/prometheus/metrics`). Enabled "
         "without `--rest_api_port`: refused"),
    Flag("remove_unused_fields_from_bundle_metagraph", bool, True,
         "acts trivially: only the MetaGraphDef's signature_defs are kept in use"),
    Flag("prefer_tflite_model", bool, False,
         "refused when true: TensorFlow Lite models are not served"),
    Flag("num_tflite_pools", int, None,
         "acts trivially: sizes TFLite interpreter pools, which exist only with `--prefer_tflite_model`"),
    Flag("num_tflite_interpreters_per_pool", int, 1,
         "acts trivially: as `--num_tflite_pools`"),
    Flag("enable_signature_method_name_check", bool, False,
         "acts: true checks the method_name of Predict, Classify and Regress signatures (TF Serving's "
         "errors); false accepts any signature whose tensors fit"),
    Flag("xla_cpu_compilation_enabled", bool, False,
         "partly: true holds (XLA JIT works); false does not stop `jit_compile` functions from running"),
    Flag("xla_gpu_compilation_enabled", bool, False,
         "partly: as `--xla_cpu_compilation_enabled`"),
    Flag("enable_profiler", bool, True,
         "partly: no ProfilerService is registered on the gRPC port"),
    Flag("thread_pool_factory_config_file", str, "",
         "refused: ThreadPoolConfig is not read"),
    Flag("mixed_precision", str, "",
         "acts: `bfloat16` boosts signatures with precision bf16 (kept only where it validates); "
         "TensorFlow-served signatures stay fp32. Other values: refused"),
    Flag("skip_initialize_tpu", bool, False,
         "acts trivially: there is no TPU to initialise"),
    Flag("enable_grpc_healthcheck_service", bool, False,
         "acts: grpc.health.v1.Health (Check, Watch) answers SERVING for the server and its services"),
    Flag("enable_serialization_as_tensor_content", bool, False,
         "acts: gRPC Predict answers numeric outputs in `tensor_content` (raw bytes) instead of typed "
         "`*_val` fields; strings stay in `string_val`"),
)
# fmt: on

BY_NAME = {f.name: f for f in FLAGS}


def _bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    low = text.strip().lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"Couldn't interpret value {text} for a boolean flag")


def add_tf_serving_flags(parser: argparse.ArgumentParser) -> None:
    """Add every flag of :data:`FLAGS` with TF Serving's type and default."""
    for f in FLAGS:
        if f.kind is bool:
            parser.add_argument(
                f"--{f.name}", type=_bool, nargs="?", const=True, default=f.default, help=f.does
            )
        else:
            parser.add_argument(f"--{f.name}", type=f.kind, default=f.default, help=f.does)


def add_yellowstone_flags(parser: argparse.ArgumentParser) -> None:
    """Add the server's own ``--yellowstone_*`` flags."""
    parser.add_argument(
        "--yellowstone_host",
        default=os.environ.get("YELLOWSTONE_TFSERVING_HOST", "0.0.0.0"),
        help="address to bind (TF Serving binds every interface)",
    )
    parser.add_argument(
        "--yellowstone_shim",
        choices=POLICIES,
        default=os.environ.get("YELLOWSTONE_TFSERVING_SHIM", DEFAULT_POLICY),
        help="auto: the fastest valid C path (OpenVINO or ONNX Runtime, timed through the shim) serves "
        "a signature when it beats TensorFlow; always: the fastest valid C path serves; off: TensorFlow only",
    )
    parser.add_argument(
        "--yellowstone_signatures",
        default="serving_default",
        help="comma-separated signature keys to boost, or 'all'",
    )
    parser.add_argument(
        "--yellowstone_artifact_dir",
        default=os.environ.get("YELLOWSTONE_TFSERVING_ARTIFACTS", ""),
        help="where shim directories built at start go (default: the compile cache; a shipped "
        "<version>/yellowstone/<signature>/ built here for this model serves as it is)",
    )
    parser.add_argument("--yellowstone_ready_file", default="", help="touched once the ports are open")


def rest_threads(args: argparse.Namespace) -> int:
    """``--rest_api_num_threads`` or TF Serving's default, 4 x the usable cores."""
    return args.rest_api_num_threads or 4 * host_cores()


def grpc_threads(args: argparse.Namespace) -> int:
    """``--grpc_max_threads`` or TF Serving's default, 4 x the usable cores."""
    return args.grpc_max_threads or 4 * host_cores()


def tensorflow_threads(args: argparse.Namespace) -> tuple[int, int]:
    """(intra, inter) TensorFlow threads as server.cc picks them (0: TensorFlow's choice)."""
    if args.tensorflow_intra_op_parallelism > 0 or args.tensorflow_inter_op_parallelism > 0:
        return args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism
    return args.tensorflow_session_parallelism, args.tensorflow_session_parallelism


_NON_NEGATIVE = (
    "num_load_threads", "num_unload_threads", "max_num_load_retries", "rest_api_num_threads",
    "grpc_max_threads", "num_request_iterations_for_warmup", "tensorflow_session_parallelism",
    "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism", "num_tflite_pools",
    "num_tflite_interpreters_per_pool", "port", "rest_api_port",
)


def _conflicts(args: argparse.Namespace) -> list[str]:
    """Flags that cannot go together, in TF Serving's words where it has them."""
    out: list[str] = []
    if not args.model_base_path and not args.model_config_file:
        out.append("Both server_options.model_base_path and server_options.model_config_file are empty!")
    if args.batching_parameters_file and not args.enable_batching:
        out.append(
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true."
        )
    if args.enable_per_model_batching_parameters and not args.enable_batching:
        out.append("--enable_per_model_batching_parameters needs --enable_batching")
    if min(args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism,
           args.tensorflow_session_parallelism) > 0:
        out.append(
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all."
        )
    if args.rest_api_port and args.rest_api_port == args.port:
        out.append("--rest_api_port cannot be same as --port. Please use a different port for HTTP/REST API.")
    if args.use_alts_credentials and args.ssl_config_file:
        out.append("--use_alts_credentials and --ssl_config_file are exclusive; pick one")
    return out


def _unsupported(args: argparse.Namespace) -> list[str]:
    """Values this server does not serve (files it does not read, models it does not run)."""
    out: list[str] = []
    if args.platform_config_file:
        out.append(
            "--platform_config_file is not supported: yellowstone configures the TensorFlow "
            "platform from the flags and does not read a PlatformConfigMap"
        )
    if args.thread_pool_factory_config_file:
        out.append("--thread_pool_factory_config_file is not supported (ThreadPoolConfig is not read)")
    if args.prefer_tflite_model:
        out.append("--prefer_tflite_model is not supported: TensorFlow Lite models are not served")
    if args.mixed_precision not in ("", "bfloat16"):
        out.append(f"--mixed_precision={args.mixed_precision}: only 'bfloat16' is supported")
    return out


def _out_of_range(args: argparse.Namespace) -> list[str]:
    """Values outside what the flag takes."""
    out: list[str] = []
    if not 0.0 <= args.per_process_gpu_memory_fraction <= 1.0:
        out.append("--per_process_gpu_memory_fraction must be between 0.0 and 1.0")
    if not [t for t in args.saved_model_tags.split(",") if t.strip()]:
        out.append("--saved_model_tags is empty")
    for name in _NON_NEGATIVE:
        value = getattr(args, name)
        if value is not None and value < 0:
            out.append(f"--{name} must not be negative; was {value}")
    return out


def refusals(args: argparse.Namespace) -> list[str]:
    """Every flag value this server cannot honour, as messages (empty: start)."""
    return _conflicts(args) + _unsupported(args) + _out_of_range(args)


def session_config(args: argparse.Namespace) -> Any:
    """The sessions' ConfigProto: ``--tensorflow_session_config_file`` with the flags over it.

    None when no flag touches the session (the servable then uses its default).
    """
    intra, inter = tensorflow_threads(args)
    fraction = args.per_process_gpu_memory_fraction
    if not (args.tensorflow_session_config_file or intra or inter or fraction):
        return None
    from tensorflow.core.protobuf import config_pb2

    from .textproto import parse_text_file

    cfg = config_pb2.ConfigProto()
    if args.tensorflow_session_config_file:
        parse_text_file(args.tensorflow_session_config_file, cfg)
    if intra:
        cfg.intra_op_parallelism_threads = intra
    if inter:
        cfg.inter_op_parallelism_threads = inter
    if fraction:
        cfg.gpu_options.per_process_gpu_memory_fraction = fraction
    return cfg


def _show(value: Any) -> str:
    if value is None:
        return "(auto)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`" if value else '""'
    return str(value)


def markdown_table() -> str:
    """The FLAGS.md table: every main.cc flag, its TF Serving default, what yellowstone does."""
    rows = ["| flag | TF Serving default | what yellowstone tfserving does |", "| --- | --- | --- |"]
    rows += [f"| `--{f.name}` | {_show(f.default)} | {f.does} |" for f in FLAGS]
    return "\n".join(rows) + "\n"
