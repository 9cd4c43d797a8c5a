"""TF Serving's text-format config protos that tensorflow-serving-api does not ship, and their parser."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


class StartupError(Exception):
    """The server cannot start as asked; ``main`` prints ``Failed to start server. Error: ...``.

    Attributes:
        code: a canonical status code name (``INVALID_ARGUMENT``, ``NOT_FOUND``, ...).
        message: TF Serving's message where it has one, else ours.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# (message name, [(field name, number, type, label, type_name)]) in package tensorflow.serving.
_I64, _STR, _BOOL, _MSG, _ENUM = 3, 9, 8, 11, 14
_OPT, _REP = 1, 3
_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    # session_bundle_config.proto. Each wrapper field is "unset -> the scheduler's default".
    "BatchingParameters": [
        ("max_batch_size", 1, _MSG, _OPT, ".google.protobuf.Int64Value"),
        ("batch_timeout_micros", 2, _MSG, _OPT, ".google.protobuf.Int64Value"),
        ("max_enqueued_batches", 3, _MSG, _OPT, ".google.protobuf.Int64Value"),
        ("num_batch_threads", 4, _MSG, _OPT, ".google.protobuf.Int64Value"),
        ("thread_pool_name", 5, _MSG, _OPT, ".google.protobuf.StringValue"),
        ("allowed_batch_sizes", 6, _I64, _REP, ""),
        ("pad_variable_length_inputs", 7, _BOOL, _OPT, ""),
        ("enable_large_batch_splitting", 9, _MSG, _OPT, ".google.protobuf.BoolValue"),
        ("max_execution_batch_size", 10, _MSG, _OPT, ".google.protobuf.Int64Value"),
    ],
    # monitoring_config.proto
    "PrometheusConfig": [("enable", 1, _BOOL, _OPT, ""), ("path", 2, _STR, _OPT, "")],
    "MonitoringConfig": [("prometheus_config", 1, _MSG, _OPT, ".tensorflow.serving.PrometheusConfig")],
    # ssl_config.proto
    "SSLConfig": [
        ("server_key", 1, _STR, _OPT, ""),
        ("server_cert", 2, _STR, _OPT, ""),
        ("custom_ca", 3, _STR, _OPT, ""),
        ("client_verify", 4, _BOOL, _OPT, ""),
    ],
}


@functools.cache
def _classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    fdp = descriptor_pb2.FileDescriptorProto(
        name="yellowstone/tfserving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[wrappers.name],
    )
    for name, fields in _MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name

    health = descriptor_pb2.FileDescriptorProto(
        name="yellowstone/grpc_health_v1.proto", package="grpc.health.v1", syntax="proto3"
    )
    req = health.message_type.add(name="HealthCheckRequest")
    req.field.add(name="service", number=1, type=_STR, label=_OPT)
    resp = health.message_type.add(name="HealthCheckResponse")
    status = resp.enum_type.add(name="ServingStatus")
    for i, v in enumerate(("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")):
        status.value.add(name=v, number=i)
    resp.field.add(
        name="status",
        number=1,
        type=_ENUM,
        label=_OPT,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
    )
    pool.Add(fdp)
    pool.Add(health)
    out = {}
    for full in [f"tensorflow.serving.{n}" for n in _MESSAGES] + [
        "grpc.health.v1.HealthCheckRequest",
        "grpc.health.v1.HealthCheckResponse",
    ]:
        out[full.rsplit(".", 1)[1]] = message_factory.GetMessageClass(pool.FindMessageTypeByName(full))
    return out


def message_class(name: str) -> Any:
    """The generated class of one declared message (``BatchingParameters``, ``SSLConfig``, ...)."""
    return _classes()[name]


def parse_text(text: str, message: Any) -> Any:
    """Parse text format into ``message``; protobuf's ParseError on failure."""
    from google.protobuf import text_format

    text_format.Parse(text, message)
    return message


def parse_text_file(path: str, message: Any) -> Any:
    """Read ``path`` as a text-format ``message`` as TF Serving's ParseProtoTextFile does.

    ``BatchingParameters`` (session_bundle_config.proto), ``MonitoringConfig`` / ``PrometheusConfig``
    (monitoring_config.proto), ``SSLConfig`` (ssl_config.proto) and grpc.health.v1's two messages are
    declared here from their .proto definitions (field names and numbers as upstream), in a private
    descriptor pool. :func:`parse_text_file` reads any of them, or a shipped message such as
    ``ModelServerConfig``, the way ``tensorflow_model_server`` does: a file it cannot read or parse
    is a :class:`StartupError` with TF Serving's wording (``Invalid protobuf file: '<path>'``).

    Raises:
        StartupError: NOT_FOUND when the file cannot be read, INVALID_ARGUMENT
            ``Invalid protobuf file: '<path>'`` when it does not parse (the parser's reason
            is appended after `` -- ``, which TF Serving leaves in its log).
    """
    from google.protobuf import text_format

    try:
        text = Path(path).read_text()
    except FileNotFoundError as exc:
        raise StartupError("NOT_FOUND", f"{path}; No such file or directory") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}' -- {exc}") from exc
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise StartupError("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}' -- {exc}") from exc
    return message
