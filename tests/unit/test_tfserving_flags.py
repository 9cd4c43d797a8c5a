"""TF Serving's flags as yellowstone takes them: the table, refusals, config files, versions, metrics.

No model is loaded: version directories hold an empty ``saved_model.pb`` and the loader is fake.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from yellowstone.plugins.tfserving import flags
from yellowstone.plugins.tfserving.manager import ModelConfig, ModelManager, available_versions, version_dirs
from yellowstone.plugins.tfserving.monitoring import Metric, ServingMetrics, exponential_buckets
from yellowstone.plugins.tfserving.server import ModelServer, build_parser
from yellowstone.plugins.tfserving.textproto import StartupError

HERE = Path(__file__).resolve().parents[2] / "plugins" / "tfserving"

# main.cc's flag list (TF Serving 2.x), in order.
MAIN_CC = """port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms
rest_api_enable_cors_support enable_batching allow_version_labels_for_unavailable_models
batching_parameters_file enable_per_model_batching_parameters model_config_file
model_config_file_poll_wait_seconds model_name model_base_path num_load_threads num_unload_threads
max_num_load_retries load_retry_interval_micros file_system_poll_wait_seconds flush_filesystem_caches
tensorflow_session_parallelism tensorflow_session_config_file tensorflow_intra_op_parallelism
tensorflow_inter_op_parallelism use_alts_credentials ssl_config_file platform_config_file
per_process_gpu_memory_fraction saved_model_tags grpc_channel_arguments grpc_max_threads
enable_model_warmup num_request_iterations_for_warmup version monitoring_config_file
remove_unused_fields_from_bundle_metagraph prefer_tflite_model num_tflite_pools
num_tflite_interpreters_per_pool enable_signature_method_name_check xla_cpu_compilation_enabled
xla_gpu_compilation_enabled enable_profiler thread_pool_factory_config_file mixed_precision
skip_initialize_tpu enable_grpc_healthcheck_service enable_serialization_as_tensor_content""".split()


def _args(*argv: str):
    return build_parser().parse_args(["--model_base_path=/nonexistent", *argv])


# ------------------------------------------------------------------------------------ the table
def test_every_main_cc_flag_is_in_the_table_and_flags_md():
    assert [f.name for f in flags.FLAGS] == MAIN_CC
    for f in flags.FLAGS:
        assert f.does.split(":")[0].split(" ")[0] in ("acts", "refused", "partly", "false"), f.name
    assert flags.markdown_table() in (HERE / "FLAGS.md").read_text()
    readme = (HERE.parents[1] / "README.md").read_text()
    section = readme.split("<!-- tfserving-flags:begin -->")[1].split("<!-- tfserving-flags:end -->")[0]
    assert section.strip() == flags.markdown_table().strip()


def test_tf_serving_spellings_parse():
    a = _args("--enable_batching", "--rest_api_timeout_in_ms=250", "--enable_model_warmup=false",
              "--flush_filesystem_caches=0", "--grpc_socket_path=/tmp/s")
    assert a.enable_batching is True and a.enable_model_warmup is False and a.flush_filesystem_caches is False
    assert a.rest_api_timeout_in_ms == 250 and a.grpc_socket_path == "/tmp/s"
    assert (a.port, a.model_name, a.max_num_load_retries, a.saved_model_tags) == (8500, "default", 5, "serve")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--enable_batching=maybe"])


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--batching_parameters_file=/x"], "batching_parameters_file is set without setting"),
        (["--platform_config_file=/x"], "--platform_config_file is not supported"),
        (["--prefer_tflite_model"], "TensorFlow Lite"),
        (["--thread_pool_factory_config_file=/x"], "ThreadPoolConfig"),
        (["--mixed_precision=fp16"], "only 'bfloat16'"),
        (["--use_alts_credentials", "--ssl_config_file=/x"], "exclusive"),
        (["--rest_api_port=9000", "--port=9000"], "cannot be same as --port"),
        (["--tensorflow_session_parallelism=1", "--tensorflow_intra_op_parallelism=1",
          "--tensorflow_inter_op_parallelism=1"], "You cannot configure all"),
        (["--per_process_gpu_memory_fraction=1.5"], "between 0.0 and 1.0"),
        (["--num_load_threads=-1"], "must not be negative"),
    ],
)
def test_values_that_cannot_be_honoured_stop_the_start(argv, text):
    with pytest.raises(StartupError) as info:
        ModelServer(_args(*argv))
    assert info.value.code == "INVALID_ARGUMENT" and text in info.value.message


def test_cors_and_tensor_content_flags_are_taken():
    args = _args("--rest_api_enable_cors_support", "--enable_serialization_as_tensor_content")
    ModelServer(args)  # no refusal: both act (see test_tfserving_options.py)
    assert args.rest_api_enable_cors_support and args.enable_serialization_as_tensor_content


def test_no_model_is_tf_servings_error():
    with pytest.raises(StartupError, match="model_base_path and server_options.model_config_file are empty"):
        ModelServer(build_parser().parse_args([]))


def test_config_files_are_read_at_construction(tmp_path):
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { name: 'm' base_path: '/x' ")
    with pytest.raises(StartupError) as info:
        ModelServer(build_parser().parse_args([f"--model_config_file={bad}"]))
    assert (info.value.code, info.value.message.split(" -- ")[0]) == (
        "INVALID_ARGUMENT", f"Invalid protobuf file: '{bad}'")
    with pytest.raises(StartupError) as info:
        ModelServer(build_parser().parse_args([f"--model_config_file={tmp_path / 'missing'}"]))
    assert info.value.code == "NOT_FOUND"
    dup = tmp_path / "dup.config"
    dup.write_text("model_config_list { config { name: 'm' base_path: '/x' model_platform: 'tensorflow' }"
                   " config { name: 'm' base_path: '/y' model_platform: 'tensorflow' } }")
    with pytest.raises(StartupError, match="Illegal to list model m multiple times"):
        ModelServer(build_parser().parse_args([f"--model_config_file={dup}"]))
    other = tmp_path / "other.config"
    other.write_text("model_config_list { config { name: 'm' base_path: '/x' model_platform: 'pytorch' } }")
    with pytest.raises(StartupError, match="Model m requests unsupported platform pytorch"):
        ModelServer(build_parser().parse_args([f"--model_config_file={other}"]))
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    with pytest.raises(StartupError, match="set --rest_api_port"):
        ModelServer(_args(f"--monitoring_config_file={monitoring}"))
    server = ModelServer(_args(f"--monitoring_config_file={monitoring}", "--rest_api_port=8501"))
    assert server.prometheus.enable and server.prometheus.path == "/monitoring/prometheus/metrics"
    channel = _args("--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.primary_user_agent=x")
    assert ModelServer(channel).channel_arguments == [("grpc.max_connection_age_ms", 2000),
                                                     ("grpc.primary_user_agent", "x")]
    with pytest.raises(StartupError, match="not of the form key=value"):
        ModelServer(_args("--grpc_channel_arguments=novalue"))


# ----------------------------------------------------------------------------- versions, reload
def _version(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"")
    return d


def test_version_directories_are_int64_names_loaded_from_where_they_are(tmp_path):
    for name in ("00000123", "1700000000", "7", "abc", "12a", "99999999999999999999"):
        _version(tmp_path, name)
    (tmp_path / "8").mkdir()  # no SavedModel yet
    assert available_versions(str(tmp_path)) == [7, 123, 1700000000]
    assert version_dirs(str(tmp_path))[123] == tmp_path / "00000123"
    seen = []
    manager = ModelManager([ModelConfig(name="m", base_path=str(tmp_path), policy="all")],
                           lambda cfg, v, path: seen.append((v, path)) or object(), poll_s=0)
    manager.poll_once()
    assert sorted(seen) == [(7, tmp_path / "7"), (123, tmp_path / "00000123"),
                            (1700000000, tmp_path / "1700000000")]
    assert [v for v, state, _ in manager.status("m")] == [1700000000, 123, 7]


def test_reload_adds_and_removes_models(tmp_path):
    _version(tmp_path / "a", "1")
    _version(tmp_path / "b", "2")
    closed = []

    class Loaded:
        def __init__(self, name):
            self.name = name

        def close(self):
            closed.append(self.name)

    manager = ModelManager([ModelConfig(name="a", base_path=str(tmp_path / "a"))],
                           lambda cfg, v, path: Loaded(cfg.name), poll_s=0)
    manager.poll_once()
    manager.reload([ModelConfig(name="b", base_path=str(tmp_path / "b"))])
    assert manager.get("b").name == "b"
    assert manager.status("a") == [(1, "END", "")] and closed == ["a"]
    with pytest.raises(Exception, match="Servable not found"):
        manager.get("a")


def test_load_retries(tmp_path):
    _version(tmp_path, "1")
    calls = []

    def flaky(cfg, v, path):
        calls.append(v)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return object()

    ok = ModelManager([ModelConfig(name="m", base_path=str(tmp_path))], flaky, poll_s=0, max_load_retries=2)
    ok.poll_once()
    assert ok.status("m")[0][1] == "AVAILABLE" and len(calls) == 3
    calls.clear()
    bad = ModelManager([ModelConfig(name="m", base_path=str(tmp_path))], flaky, poll_s=0, max_load_retries=1)
    bad.poll_once()
    assert bad.status("m")[0][1:] == ("END", "RuntimeError: not yet") and len(calls) == 2


def test_version_labels_need_an_available_version(tmp_path):
    _version(tmp_path, "1")
    cfg = ModelConfig(name="m", base_path=str(tmp_path), labels={"stable": 1, "canary": 2})
    strict = ModelManager([cfg], lambda *a: object(), poll_s=0, allow_unavailable_labels=False)
    strict.poll_once()
    with pytest.raises(StartupError) as info:
        strict.check_labels()
    assert info.value.code == "FAILED_PRECONDITION"
    assert info.value.message == ("Request to assign label to version 2 of model m, which is not currently "
                                  "available for inference")
    lenient = ModelManager([cfg], lambda *a: object(), poll_s=0, allow_unavailable_labels=True)
    lenient.poll_once()
    lenient.check_labels()
    assert lenient.configs["m"].labels == {"stable": 1, "canary": 2}
    assert lenient.get("m", label="stable") is not None


def test_parallel_loads(tmp_path):
    for v in ("1", "2", "3"):
        _version(tmp_path, v)
    running, peak, lock = [0], [0], threading.Lock()

    def slow(cfg, v, path):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.3)
        with lock:
            running[0] -= 1
        return object()

    m = ModelManager([ModelConfig(name="m", base_path=str(tmp_path), policy="all")], slow, poll_s=0,
                     load_threads=3)
    m.poll_once()
    assert peak[0] > 1 and [s for _, s, _ in m.status("m")] == ["AVAILABLE"] * 3


# -------------------------------------------------------------------------------------- metrics
def test_prometheus_page_is_tf_servings_format():
    h = Metric("/test/path/histogram", ("status",), "histogram", exponential_buckets(1, 2, 10))
    for v in (2, 20, 200):
        h.observe("good", value=v)
    assert h.lines() == [
        "# TYPE :test:path:histogram histogram",
        ':test:path:histogram_bucket{status="good",le="1"} 0',
        ':test:path:histogram_bucket{status="good",le="2"} 0',
        ':test:path:histogram_bucket{status="good",le="4"} 1',
        ':test:path:histogram_bucket{status="good",le="8"} 1',
        ':test:path:histogram_bucket{status="good",le="16"} 1',
        ':test:path:histogram_bucket{status="good",le="32"} 2',
        ':test:path:histogram_bucket{status="good",le="64"} 2',
        ':test:path:histogram_bucket{status="good",le="128"} 2',
        ':test:path:histogram_bucket{status="good",le="256"} 3',
        ':test:path:histogram_bucket{status="good",le="512"} 3',
        ':test:path:histogram_bucket{status="good",le="+Inf"} 3',
        ':test:path:histogram_sum{status="good"} 222',
        ':test:path:histogram_count{status="good"} 3',
    ]
    c = Metric("/test/path/total", ("name",), "counter")
    c.inc('"abc\\"', by=2)
    assert c.lines() == ["# TYPE :test:path:total counter", ':test:path:total{name="\\"abc\\\\\\""} 2']
    m = ServingMetrics()
    m.record_request("m", "Predict", "GRPC", "OK", 1234.0)
    m.record_request("m", "Predict", "GRPC", "INVALID_ARGUMENT", 10.0)
    page = m.page()
    assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 1' in page
    assert ':tensorflow:serving:request_count{model_name="m",status="INVALID_ARGUMENT"} 1' in page
    latency = ':tensorflow:serving:request_latency_count{model_name="m",API="Predict",entrypoint="GRPC"} 1'
    assert latency in page
    assert "# TYPE :tensorflow:serving:request_log_count counter" in page  # TYPE even without values


# ---------------------------------------------------------------------------------------- TLS
def _self_signed(cn: str = "localhost"):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def test_ssl_config_is_checked_before_any_port_opens(tmp_path):
    from yellowstone.plugins.tfserving.tls import SSLSettings, read_ssl_config, server_credentials

    key, cert = _self_signed()
    other_key, _ = _self_signed()
    assert server_credentials(SSLSettings(server_key=key, server_cert=cert), use_alts=False) is not None
    assert server_credentials(None, use_alts=False) is None
    cases = [
        (dict(server_key=other_key, server_cert=cert), "does not match"),
        (dict(server_key=key, server_cert=cert, client_verify=True), "custom_ca is empty"),
        (dict(server_key="", server_cert=cert), "server_key is empty"),
        (dict(server_key=key, server_cert="-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"),
         "not a certificate"),
    ]
    for kwargs, text in cases:
        with pytest.raises(StartupError, match=text):
            SSLSettings(**kwargs)
    f = tmp_path / "ssl.config"
    f.write_text(f"server_key: {key!r}\nserver_cert: {cert!r}\ncustom_ca: {cert!r}\nclient_verify: true\n"
                 .replace("'", '"'))
    cfg = read_ssl_config(str(f))
    assert cfg.client_verify and cfg.custom_ca == cert


def test_per_model_batching_parameters(tmp_path):
    params = tmp_path / "global.config"
    params.write_text("max_batch_size { value: 16 }\nnum_batch_threads { value: 3 }\n")
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (version / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 4 }\nnum_batch_threads { value: 9 }\n")
    server = ModelServer(_args("--enable_batching", f"--batching_parameters_file={params}",
                               "--enable_per_model_batching_parameters"))
    assert server.batching[0].num_batch_threads == 3  # threads stay global
    assert server._queue_options(version).max_batch_size == 4
    assert server._queue_options(tmp_path).max_batch_size == 16  # no file: the global parameters
    with pytest.raises(StartupError, match="needs --enable_batching"):
        ModelServer(_args("--enable_per_model_batching_parameters"))
